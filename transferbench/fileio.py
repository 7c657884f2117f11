"""Atomic writes: a result either exists whole or not at all."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from transferbench.errors import UserError


def ensure_writable_dir(directory: Path) -> None:
    """Create ``directory`` if needed and fail with a UserError unless we can write into it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {directory}: {exc.strerror}; choose a writable folder") from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserError(f"output folder {directory} is not writable; choose a writable folder or fix its permissions")


def _read_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it: done once, at import, before any thread starts
    os.umask(mask)
    return mask


UMASK = _read_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename. The
    file gets the permissions of any ordinary new file (0666 less the umask), not mkstemp's 0600,
    so colleagues on a shared filesystem can read results, figures and checkpoints."""
    path = Path(path)
    ensure_writable_dir(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~UMASK)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: Path) -> str:
    """The sha256 of a file (hex), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()
