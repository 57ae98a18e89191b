"""The one exception type users see: the CLI prints its message on one line and exits non-zero."""


class FewshotError(Exception):
    """A user-facing error: bad input, a refused operation. The message names the file or value and the fix."""

    exit_code = 2


# The environment failing (disk full, read-only or forbidden folders, a file where a folder should be):
# errno -> (what happened, the fix). Any other OSError is a bug or a device fault and keeps its traceback.
ENVIRONMENT_ERRORS = {
    "ENOSPC": ("no space left on the device", "free some space"),
    "EDQUOT": ("the disk quota is exhausted", "free some space"),
    "EROFS": ("the file system is read-only", "choose a writable output folder"),
    "EACCES": ("permission denied", "choose a folder you may write, or change its permissions"),
    "EPERM": ("operation not permitted", "choose a folder you may write, or change its permissions"),
    "ENOTDIR": ("a part of this path is a file, not a folder", "choose another output path"),
    "EISDIR": ("this is a folder, where a file was expected", "choose another output path"),
    "EEXIST": ("this already exists", "choose another output path"),
    "ENAMETOOLONG": ("the file name is too long for the file system", "choose a shorter name"),
}


class EnvironmentFailure(FewshotError):
    """The environment failed (disk full, read-only folder, ...); `problem` is the message without the
    "then ..." advice, so a caller that continues differently (bench, ablate) can say its own."""

    def __init__(self, message: str, problem: str = "") -> None:
        super().__init__(message)
        self.problem = problem or message

    def __reduce__(self):  # crosses process pools with its problem
        return type(self), (str(self), self.problem)


def environment_error(exc: OSError, then: str = "run the same command again") -> EnvironmentFailure | None:
    """A one-line error for an OSError caused by the environment (see ENVIRONMENT_ERRORS), else None.

    `then` says how to continue once the cause is fixed (e.g. "run the same command with --resume").
    """
    import errno

    name = errno.errorcode.get(exc.errno or 0, "")
    if name not in ENVIRONMENT_ERRORS:
        return None
    what, fix = ENVIRONMENT_ERRORS[name]
    where = f"{exc.filename}: " if exc.filename else ""
    return EnvironmentFailure(f"{where}{what}; {fix}, then {then}", f"{where}{what}; {fix}")
