"""The one exception type that reaches the user as a one-line message."""


class UserError(Exception):
    """A bad input the user can fix. The CLI prints ``error: <message>`` and exits 2.

    The message must say what is wrong *and* what to do about it, on one line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
