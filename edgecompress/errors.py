"""The one exception type for mistakes a user can fix."""


class EdgeCompressError(ValueError):
    """A problem with the user's input: a bad path, file, argument or model.

    The message always names the argument or file, what was received and
    what to do. Tasks turn it into a one-line message and a non-zero exit
    code instead of a traceback.
    """
