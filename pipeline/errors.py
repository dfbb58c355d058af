"""User-facing errors: the CLI prints their message (which names the file and the fix), no traceback."""


class EmoganError(Exception):
    """Bad input or arguments; the message says what is wrong and what to do."""
