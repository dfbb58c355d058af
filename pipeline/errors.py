"""User-facing errors: the CLI prints their message (which names the file and the fix), no traceback."""


class EmoganError(Exception):
    """Bad input or arguments; the message says what is wrong and what to do."""


class SequenceError(EmoganError):
    """A bad input that skips one sequence: the file and the reason go to the stage's errors report."""

    def __init__(self, file: object, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file, self.reason = str(file), reason
