"""Error types shared by every part of the project."""


class UserError(Exception):
    """A mistake the user can fix (bad input, bad config, unknown name).

    The CLI prints its message as one line and exits non-zero, without a traceback.
    """


class DataError(UserError):
    """Input data that cannot be loaded; the message names the file and the field or value."""


class ConflictError(Exception):
    """A conditional write lost: the object exists, or changed since it was read."""
