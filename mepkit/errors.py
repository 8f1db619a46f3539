"""Exceptions that carry a message meant for the user."""

__all__ = ["MepkitError", "FileFormatError", "StreamNotFoundError", "UsageError"]


class MepkitError(Exception):
    """Base class: an error whose message is a complete one-line explanation."""


class FileFormatError(MepkitError):
    """A file that cannot be read as what it claims to be (damaged, wrong type, too new)."""


class StreamNotFoundError(MepkitError):
    """A requested stream (in a file or on the network) is not there."""


class UsageError(MepkitError):
    """A mistake in how mepkit was called (an option, a parameter value)."""
