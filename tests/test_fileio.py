"""Atomic writes: whole files, with ordinary permissions."""

from __future__ import annotations

import os
import stat

from transferbench import fileio


def test_atomic_writes_follow_the_umask(tmp_path):
    fileio.atomic_write_text(tmp_path / "result.csv", "a,b\n")
    mode = stat.S_IMODE(os.stat(tmp_path / "result.csv").st_mode)
    assert mode == 0o666 & ~fileio.UMASK  # not mkstemp's 0600
    if not fileio.UMASK & 0o044:
        assert mode & 0o044  # colleagues on a shared filesystem can read it
    assert [p.name for p in tmp_path.iterdir()] == ["result.csv"]  # no temporary file left behind
