"""Errors a user can fix: stages print them as one clear line, not a stack trace."""


class PipelineError(Exception):
    """Base of every expected, user-fixable failure."""


class TrainingError(PipelineError):
    """The train stage cannot run what was asked (config, data, hardware, resume)."""


class TrackingError(PipelineError):
    """The MLflow store holds another project's entries under this project's names."""


class ProjectIdentityError(PipelineError):
    """The project's identity file (.project-id) is missing or is not one."""
