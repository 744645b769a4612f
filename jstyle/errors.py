"""The one exception type jstyle shows users: a single line naming the problem and the fix."""


class JStyleError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""
