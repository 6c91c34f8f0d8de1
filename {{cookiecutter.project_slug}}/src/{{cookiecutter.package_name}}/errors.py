"""Errors a user can fix: stages print them as one clear line, not a stack trace."""


class PipelineError(Exception):
    """Base of every expected, user-fixable failure."""
