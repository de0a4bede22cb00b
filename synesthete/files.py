"""Files on disk, without torch: input and output checks, atomic writes, the songs of a batch render.

Everything here is cheap to import (the standard library and ``synesthete.errors``), so a command checks its
files before it imports torch: ``synesthete render nope.wav -o x.mp4`` prints its one line in a fraction of
a second. ``synesthete.locks`` builds its locks on the helpers here; ``synesthete.media`` decodes and encodes.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

from synesthete.errors import InputError, OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locks
    fcntl = None  # type: ignore[assignment]

# --------------------------------------------------------------------------------------------- atomic files
TEMP_RANDOM = 8  # random characters between the prefix and the suffix
TEMP_TAG = ".tmp"
_TEMP_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"
_TEMP_CHARS = "[a-z0-9_]"  # _TEMP_ALPHABET, for the pattern of stale temporary files
_PENDING: dict[Path, int] = {}  # temporary files being written -> the pid of their writer


def _name_max(folder: Path) -> int:
    """Longest file name (in bytes) the file system of ``folder`` accepts (255 where it cannot be asked)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _cut(text: str, max_bytes: int) -> str:
    """``text`` shortened to at most ``max_bytes`` bytes of its file-system encoding, never mid-character."""
    raw = os.fsencode(text)
    if len(raw) <= max_bytes:
        return text
    return raw[: max(0, max_bytes)].decode("utf-8", errors="ignore")


def temp_affixes(path: str | Path) -> tuple[str, str]:
    """(prefix, suffix) of the temporary files beside ``path``: ``.STEM.`` and ``.tmpSUFFIX``.

    8 random characters go between them. STEM (and an unusually long SUFFIX) is shortened
    so the temporary name fits wherever the final name fits (file names are limited to NAME_MAX bytes).
    """
    path = Path(path)
    folder = path.parent if path.parent.exists() else Path(".")
    budget = _name_max(folder)
    suffix = TEMP_TAG + _cut(path.suffix, 16)
    room = budget - 2 - TEMP_RANDOM - len(os.fsencode(suffix))  # the two dots around STEM
    stem = _cut(path.stem, room) or "_"
    return f".{stem}.", suffix


def _temp_pattern(path: Path) -> re.Pattern[str]:
    prefix, suffix = temp_affixes(path)
    return re.compile(re.escape(prefix) + _TEMP_CHARS + f"{{{TEMP_RANDOM}}}" + re.escape(suffix) + r"\Z")


def _lock_fd(fd: int, blocking: bool = True) -> bool:
    """flock ``fd`` exclusively; False when ``blocking`` is off and another process holds it."""
    if fcntl is None:  # pragma: no cover - not POSIX
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Remove temporary files of ``path`` left by a writer that was killed (``kill -9``, power loss).

    A live writer holds an exclusive flock on its temporary file for as long as it exists, and the kernel
    drops that lock when the process dies: a temporary file that can be locked has no writer any more.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    pattern = _temp_pattern(path)
    removed = []
    for entry in entries:
        if not pattern.match(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if _lock_fd(fd, blocking=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def _new_temp(path: Path) -> tuple[Path, int]:
    """Create an empty temporary file beside ``path`` (``temp_affixes``), flocked; return it and its fd.

    Its name is in ``_PENDING`` before the file exists, so an interruption on any bytecode in between leaves
    nothing that ``discard_pending_temps`` does not find.
    """
    prefix, suffix = temp_affixes(path)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = path.parent / (prefix + "".join(secrets.choice(_TEMP_ALPHABET) for _ in range(TEMP_RANDOM)) + suffix)
        _PENDING[tmp] = os.getpid()
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileExistsError:  # another writer's name: not ours to remove
            del _PENDING[tmp]
            continue
        try:
            _lock_fd(fd)
        except BaseException:
            os.close(fd)
            _forget(tmp)
            raise
        return tmp, fd


def _forget(tmp: Path) -> None:
    """Remove the temporary file ``tmp`` if it is still there, and its entry in ``_PENDING``."""
    tmp.unlink(missing_ok=True)
    _PENDING.pop(tmp, None)


def discard_pending_temps() -> list[Path]:
    """Remove this process's temporary files whose writer never reached its clean-up; return them.

    ``atomic_path`` removes its temporary file when its block fails, but Ctrl-C or SIGTERM can land on a
    bytecode outside any ``try`` (between a file's creation and the ``with`` that guards it, or on entering the
    clean-up itself). Registered with ``atexit``: the CLI's exits 130 and 143 go through it. Forked workers
    (they leave through ``os._exit``) and other processes' files are left alone.
    """
    mine = [tmp for tmp, pid in list(_PENDING.items()) if pid == os.getpid()]
    for tmp in mine:
        _forget(tmp)
    return mine


atexit.register(discard_pending_temps)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Any exception (including KeyboardInterrupt and SIGTERM) removes the temporary file, so a reader never
    sees a half-written output and an existing file is left untouched; one that lands where no ``try`` covers
    it is caught at exit (``discard_pending_temps``). The temporary file is flocked while it lives; temporary
    files of ``path`` that nobody locks (their writer was killed) are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp, fd = _new_temp(path)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # the temporary file is 0600; give the final file normal permissions
        os.replace(tmp, path)
    finally:
        _forget(tmp)  # after the rename its name is free: nothing is removed
        os.close(fd)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically; a failed write (a full disk) is an OutputError naming the file."""
    try:
        with atomic_path(path) as tmp:
            Path(tmp).write_text(text)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


# --------------------------------------------------------------------------------------------- checks
def check_input(path: str | Path, what: str = "an audio file") -> Path:
    """Fail when the input ``path`` does not exist or is a folder (``what`` names the file it should be)."""
    path = Path(path)
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{path} is a symbolic link loop (it leads back to itself), not {what}") from None
        if path.is_symlink():
            target = os.readlink(path)
            raise InputError(f"{path} is a broken symbolic link (to {target}, which does not exist)") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise InputError(f"{path} does not exist") from None
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise InputError(f"{path} is a directory, not {what}")
    return path


def check_mp4(path: str | Path) -> Path:
    """Fail when a rendered video's output ``path`` is not an .mp4 file (the only container written)."""
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise OutputError(f"{path}: the output must be an .mp4 file")
    return path


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when both paths exist and name the same file (through symlinks and hard links too)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def check_not_input(path: str | Path, inputs: tuple[str | Path, ...]) -> None:
    """Refuse an output that is one of the ``inputs``: the same file, through symlinks and hard links."""
    for source in inputs:
        if source is not None and same_file(path, source):
            raise OutputError(
                f"{path} is the input {source} (the same file): refusing to overwrite it; pick another output name"
            )


def check_writable(folder: str | Path) -> None:
    """Fail when a file cannot be created in the existing ``folder`` (permissions, read-only, /proc ...).

    A probe file is created and removed: ``os.access`` says yes to root on folders that refuse files, and no
    on a read-only file system as if it were a matter of permissions; the probe's error names the cause.
    """
    folder = Path(folder)
    try:
        fd, name = tempfile.mkstemp(prefix=".synesthete-probe.", suffix=TEMP_TAG, dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write to {folder}: {(exc.strerror or str(exc)).lower()}") from exc
    os.close(fd)
    os.unlink(name)


def check_folder(path: str | Path, what: str) -> Path:
    """Fail early when files cannot be written into folder ``path`` (created later if it does not exist).

    Nothing is created: the nearest existing ancestor must be a writable folder.
    """
    path = Path(path)
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise OutputError(f"{what} {path}: {existing} is a file, not a folder")
    check_writable(existing)
    return path


def check_output(path: Path, overwrite: bool, inputs: tuple[str | Path, ...] = (),
                 flag: str = "--overwrite") -> Path:
    """Fail early when ``path`` is one of ``inputs``, exists (without ``overwrite``) or cannot be written.

    ``flag`` is how the caller says "overwrite" (the CLI's ``--overwrite``, the API's ``overwrite=True``)."""
    path = Path(path)
    check_not_input(path, inputs)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists (use {flag} to replace it)")
    if path.exists() and path.is_dir():
        raise OutputError(f"{path} is a directory, not a file")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {parent}: {exc.strerror or exc}") from exc
    check_writable(parent)
    return path


@contextlib.contextmanager
def new_folders(folder: str | Path) -> Iterator[None]:
    """Around a job that writes into ``folder``: the folders it creates (``folder`` and missing parents) are
    removed again at the end if they are still empty, so a job that wrote nothing leaves no empty folder."""
    missing = []
    path = Path(folder)
    while str(path) not in ("", ".") and not path.exists() and path.parent != path:
        missing.append(path)
        path = path.parent
    try:
        yield
    finally:
        for path in missing:  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()  # only an empty folder goes


# --------------------------------------------------------------------------------------------- messages
_LONG = 60  # characters of a user's text (a style name, a file name) that a one-line message repeats


def one_line(text: str) -> str:
    """``text`` with control characters (a newline in a file name) written as escapes, so that a message or a
    table row stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shorten(text: str, limit: int = _LONG) -> str:
    """``text`` as a message repeats it: one line, and cut to ``limit`` characters (saying how long it was)."""
    text = one_line(str(text))
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


# --------------------------------------------------------------------------------------------- songs
# What a folder given to `render` contributes: audio files by extension (a video's soundtrack renders too,
# but only when named: an output folder of mp4s inside the input folder must not become input).
# Tracker modules (xm, mod, it, s3m) decode through FFmpeg's libopenmpt, as game soundtracks often ship them.
AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".ogg", ".oga", ".opus", ".flac", ".m4a", ".aac", ".aif", ".aiff",
                              ".wma", ".xm", ".mod", ".it", ".s3m"})


def expand_songs(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The songs of a batch render, in order, and the folders that gave none (with why).

    A file (or a path that does not exist: rendering it reports it) stands for itself; a folder for the
    audio files directly in it (``AUDIO_EXTENSIONS``, any case; hidden files skipped), sorted by name. A file
    given twice (also through a folder) renders once.
    """
    songs: list[Path] = []
    empty: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if _is_audio(p))
            if not found:
                kinds = ", ".join(sorted(e.lstrip(".") for e in AUDIO_EXTENSIONS))
                message = f"{path} holds no audio files ({kinds}); subfolders are not searched"
                deeper = _first_audio_folder(path)
                if deeper is not None:
                    message += f": name the subfolders with songs, e.g. {deeper}"
                empty.append((path, message))
        else:
            found = [path]
        for song in found:
            key = song.resolve()
            if key not in seen:
                seen.add(key)
                songs.append(song)
    return songs, empty


def _is_audio(path: Path) -> bool:
    """A song a folder contributes: a visible file with one of ``AUDIO_EXTENSIONS`` (any case)."""
    return not path.name.startswith(".") and path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file()


def _first_audio_folder(folder: Path, limit: int = 2000) -> Path | None:
    """The first subfolder of ``folder`` (by name, any depth, hidden ones skipped) that holds audio files, looking
    at no more than ``limit`` entries; None if there is none."""
    seen = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if Path(root) != folder and any(_is_audio(Path(root) / f) for f in sorted(files)):
            return Path(root)
        seen += len(dirs) + len(files)
        if seen > limit:
            return None
    return None


def _in_folder(path: Path, folder: Path) -> bool:
    """True when ``path`` is an entry of ``folder`` (the same folder, also through symlinks)."""
    return same_file(path.parent if str(path.parent) else Path("."), folder)


def output_names(songs: list[Path], folder: str | Path | None = None) -> list[str]:
    """Stable mp4 names for the songs of a batch, in order: ``<stem>.mp4``.

    Songs that share a stem but not an extension (``a.mp3``, ``a.wav``) are told apart by it (``a_mp3.mp4``,
    ``a_wav.mp4``); a name that is still taken (the same file name in two folders) gets ``-2``, ``-3``, ...
    in input order. Names are compared without case, as some file systems do. An input of the batch that
    lies in the output ``folder`` takes its name: no output is ever named after an input, so no output
    replaces a song that the batch has yet to read (``a.wav``, ``b/a.wav`` and ``a-2.mp4`` into ``./`` give
    ``a.mp4``, ``a-3.mp4`` and ``a-2-2.mp4``).
    """
    extensions: dict[str, set[str]] = {}
    for song in songs:
        extensions.setdefault(song.stem.casefold(), set()).add(song.suffix.lower())
    names: list[str] = []
    taken: set[str] = set()
    if folder is not None:
        taken = {song.name.casefold() for song in songs if _in_folder(song, Path(folder))}
    for song in songs:
        base = song.stem
        if len(extensions[base.casefold()]) > 1 and song.suffix:
            base = f"{base}_{song.suffix.lstrip('.').lower()}"
        name, k = f"{base}.mp4", 1
        while name.casefold() in taken:
            k += 1
            name = f"{base}-{k}.mp4"
        taken.add(name.casefold())
        names.append(name)
    return names


def find_music(folder: str | Path) -> list[Path]:
    """The audio files of a music library folder (``--music``): subfolders too (a library is Artist/Album/...),
    hidden files and folders skipped, sorted by path. A missing or empty folder is an InputError."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"music folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"music folder {folder} is a file, not a folder")
    found = []
    for path in folder.rglob("*"):
        parts = path.relative_to(folder).parts
        if any(p.startswith(".") for p in parts) or path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        if path.is_file():
            found.append(path)
    if not found:
        kinds = ", ".join(sorted(e.lstrip(".") for e in AUDIO_EXTENSIONS))
        raise InputError(f"music folder {folder} holds no audio files ({kinds}), subfolders included")
    return sorted(found)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (hex): what the held-out split of a music folder and the cache of a checkpoint's
    exported graph follow (the content, not the name)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
