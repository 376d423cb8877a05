"""User-facing errors. The CLI prints one line for each and exits non-zero."""


class CinecubeError(Exception):
    """A problem with the user's input or files, explained in one line."""


class InvalidRequestError(CinecubeError, ValueError):
    """A generation or training request outside what the model allows (size, frames, prompt)."""


class CheckpointError(CinecubeError):
    """A checkpoint folder that is missing, incomplete or corrupt."""


class VideoIOError(CinecubeError):
    """A video or image that cannot be read or written."""
