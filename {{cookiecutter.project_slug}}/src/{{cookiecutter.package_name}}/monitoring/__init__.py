"""Closing the loop: the served model's prediction log, and drift of that traffic against its training data."""
