"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class UserError(RuntimeError):
    """Bad input the user can fix: the message names the cause and the fix."""
