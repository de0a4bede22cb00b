"""Exclusive locks that keep two synesthete jobs from writing the same output file or run folder.

A lock is an ``fcntl.flock`` on a small hidden file (``.NAME.lock`` beside an output, ``.lock`` inside a
run folder) holding the owner's pid. The kernel drops the lock when its process dies, even by ``kill -9``,
so a lock file left behind never blocks the next job. The holder removes the file when it is done; a job
that locked a file just unlinked by the previous holder notices (the path no longer names its inode) and
locks the new one instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from synesthete.errors import BusyError, OutputError
from synesthete.files import _cut, _lock_fd, _name_max

LOCK_SUFFIX = ".lock"


class FileLock:
    """An exclusive, non-blocking lock on ``path`` for ``what`` (named in the error of a second job).

    Use ``with FileLock(...)`` or ``acquire()`` / ``release()``. ``acquire`` raises BusyError with one
    clear line when another process holds the lock.
    """

    def __init__(self, path: str | Path, what: str, hint: str = "") -> None:
        self.path = Path(path)
        self.what = what
        self.hint = hint
        self._fd: int | None = None

    def acquire(self) -> FileLock:
        folder = self.path.parent
        while True:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except OSError as exc:
                raise OutputError(f"cannot write to {folder}: {exc.strerror or exc}") from exc
            if not _lock_fd(fd, blocking=False):
                holder = _read_pid(fd)
                os.close(fd)
                who = f" (pid {holder})" if holder else ""
                hint = f": {self.hint}" if self.hint else ""
                raise BusyError(f"{self.what} is in use by another synesthete job{who}{hint}")
            try:
                same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the previous holder removed this file after we opened it: lock the new one
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:  # a full disk: the flock holds all the same; the job's first real write says why it fails
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        """True between acquire() and release()."""
        return self._fd is not None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="ignore").strip()
    except OSError:
        return ""


def output_lock(path: str | Path) -> FileLock:
    """The lock of an output file: ``.NAME.lock`` beside it (NAME shortened to fit the file system)."""
    path = Path(path)
    folder = path.parent if path.parent.exists() else Path(".")
    name = _cut(path.name, _name_max(folder) - 1 - len(LOCK_SUFFIX))
    return FileLock(
        path.parent / f".{name}{LOCK_SUFFIX}", f"{path}",
        hint="wait for it to finish, or write to another file",
    )


def run_folder_lock(folder: str | Path) -> FileLock:
    """The lock of a training run folder: ``FOLDER/.lock``."""
    folder = Path(folder)
    return FileLock(
        folder / LOCK_SUFFIX, f"run folder {folder}",
        hint="wait for it to finish, or pick another --run-name",
    )
