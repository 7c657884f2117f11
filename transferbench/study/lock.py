"""One writer per study: ``plan`` and ``submit`` hold ``jobs/<study>/.lock`` while they change it.

Two ``submit`` started at the same moment would otherwise both read the manifest before
either saved it and both submit every job. The lock is an ``flock`` on the file, so it is
released by the kernel when its holder exits, however it exits (kill -9 included): a lock
is never stale, and the file that stays behind only names the last holder. On NFS, Linux
maps ``flock`` to NFS byte-range locks (NFSv4, or v3 with lockd), which every node sees.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from transferbench.errors import UserError

LOCK_NAME = ".lock"


@contextmanager
def study_lock(study_dir: Path, what: str, wait_s: float = 0.0, echo=print) -> Iterator[None]:
    """Hold the study's lock for ``what`` (e.g. "submit"); wait up to ``wait_s`` seconds for another
    holder, then fail with a UserError naming it."""
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    path = study_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline, told = time.monotonic() + wait_s, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = path.read_text(encoding="utf-8", errors="replace").strip() or "another transferbench process"
                if time.monotonic() >= deadline:
                    raise UserError(f"{holder} is changing {study_dir}; wait for it to end and run `{what}` again") from None
                if not told:
                    echo(f"waiting for {holder} to finish with {study_dir} ...")
                    told = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"transferbench {what} (pid {os.getpid()} on {socket.gethostname()}, since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode())
        yield
    finally:
        os.close(fd)  # releases the flock
