"""The one exception type a user can cause. The CLI prints its message on one line and exits non-zero."""


class HarnessError(Exception):
    """A problem with the user's input or environment, with a message that says what and where."""
