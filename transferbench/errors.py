"""The one exception type that reaches the user as a one-line message."""


class UserError(Exception):
    """A bad input the user can fix. The CLI prints ``error: <message>`` and exits 2.

    The message must say what is wrong *and* what to do about it, on one line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def file_error(exc: OSError) -> UserError:
    """An error of the file system (a full disk, a quota, a read-only folder, a permission, a path
    that is not there) as one line naming the path and what to do."""
    import errno

    path = exc.filename if exc.filename is not None else "a file"
    what = exc.strerror or str(exc)
    advice = {
        errno.ENOSPC: "free space on that disk and run the command again",
        errno.EDQUOT: "free space under your quota (or raise it) and run the command again",
        errno.EROFS: "the filesystem is read-only: choose a writable folder",
        errno.EACCES: "choose a folder you can write to, or fix its permissions",
        errno.EPERM: "choose a folder you can write to, or fix its permissions",
        errno.ENOENT: "check the path",
        errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
        errno.EISDIR: "the path is a folder: give a file",
    }.get(exc.errno, "check the path and the disk")
    done = " (what was finished is kept: results are written whole or not at all)" if exc.errno in (
        errno.ENOSPC, errno.EDQUOT) else ""
    return UserError(f"{what}: {path}; {advice}{done}")
