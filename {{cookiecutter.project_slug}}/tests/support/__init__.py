"""Test scaffolding: stand-in bentos for the deploy tests."""
