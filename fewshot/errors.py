"""The one exception type users see: the CLI prints its message on one line and exits non-zero."""


class FewshotError(Exception):
    """A user-facing error: bad input, a refused operation. The message names the file or value and the fix."""

    exit_code = 2
