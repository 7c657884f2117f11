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


def test_a_write_that_fails_midway_leaves_the_old_file_whole(tmp_path, monkeypatch):
    """Atomic: the new bytes go to a temporary file that replaces the old one only once it is
    whole on disk, so a write that fails (a full disk, a kill) never leaves half a file."""
    path = tmp_path / "result.json"
    fileio.atomic_write_text(path, "old and whole\n")

    def disk_full(_fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    try:
        fileio.atomic_write_text(path, "new" * 1000)
    except OSError:
        pass
    assert path.read_text() == "old and whole\n"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
