"""`synesthete render` of several songs (or folders of songs) into a folder, the models loaded once.

A song that cannot be rendered is one red line and is skipped; the others still render. A batch stopped by
Ctrl-C or SIGTERM leaves in ``state["stopped"]`` what it did, for the entry's last line (``entry._stopped``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from synesthete.cli.app import error_line, shown, state
from synesthete.console import err_console, is_quiet
from synesthete.errors import OutputError, SynestheteError, Terminated
from synesthete.files import check_folder, check_output, expand_songs, new_folders, output_names
from synesthete.locks import output_lock
from synesthete.settings import Settings

Row = tuple[Path, Path | None, Any]  # (song, the video written or None, its RenderResult or error message)


def render_many(settings: Settings, songs: list[Path], folder: Path, start: float, duration: float | None,
                overwrite: bool) -> None:
    """Songs (and folders of songs) into ``folder``, the models loaded once. A song that cannot be rendered is
    one red line and is skipped; the others still render. Exit 1 if any failed, after a summary table.

    No output is named after an input of the batch (``files.output_names``), nor written onto one (the same
    file through a link): a song is never replaced before the batch has read it. A batch that writes nothing
    leaves no new folder; one stopped by Ctrl-C or SIGTERM says which songs it rendered and which not.
    """
    if folder.suffix.lower() == ".mp4" or (folder.exists() and not folder.is_dir()):
        what = "several songs" if len(songs) > 1 else f"a folder of songs ({songs[0]})"
        raise OutputError(f"-o {folder}: with {what}, -o must be a folder (each song becomes <song name>.mp4 in it)")
    check_folder(folder, "-o")
    found, empty = expand_songs(songs)
    names = output_names(found, folder)  # before the folder exists: no input can be in a folder not yet made
    with new_folders(folder):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create folder {folder}: {exc.strerror or exc}") from exc
        from synesthete.cli import tables  # torch: after the checks of -o

        rows: list[Row] = [(path, None, message) for path, message in empty]
        for _, message in empty:
            error_line(message)
        rows += _render_songs(settings, found, [folder / name for name in names], start, duration, overwrite)
    order = {path: k for k, path in enumerate([p for p, _ in empty] + found)}
    rows.sort(key=lambda row: order.get(row[0], len(order)))
    if not is_quiet():
        tables.print_batch(rows)
    if any(isinstance(result, str) for *_, result in rows):
        raise typer.Exit(1)


def _render_songs(settings: Settings, found: list[Path], outs: list[Path], start: float, duration: float | None,
                  overwrite: bool) -> list[Row]:
    """Plan every song (every check first, before the models load), then load the models once and render the
    songs that passed, one after another; a row per song."""
    from synesthete.pipeline import Synesthete  # torch: after the checks of -o

    rows: list[Row] = []
    pipe = Synesthete(settings)
    jobs = []
    for song, out in zip(found, outs, strict=True):
        try:
            jobs.append(pipe.plan(song, out, start=start, duration=duration, overwrite=overwrite,
                                  overwrite_flag="--overwrite"))
        except SynestheteError as exc:
            rows.append((song, None, _song_error(song, exc)))
    if jobs:
        pipe.load()  # a checkpoint error stops the whole batch (one red line, exit 1)
    pending = [job.song for job in jobs]
    try:
        for i, job in enumerate(jobs, 1):
            try:
                with output_lock(job.out):
                    # Written meanwhile by someone else? A link to a song of the batch?
                    check_output(job.out, overwrite, inputs=tuple(found))
                    result = pipe.run(job, progress=True, label=f"{i}/{len(jobs)} {shown(job.song.name)}")
                rows.append((job.song, job.out, result))
            except SynestheteError as exc:
                rows.append((job.song, None, _song_error(job.song, exc)))
            pending.remove(job.song)
    except (KeyboardInterrupt, Terminated):
        state["stopped"] = _batch_stopped(rows, pending, len(found))
        raise
    return rows


def _batch_stopped(rows: list[Row], pending: list[Path], total: int) -> str:
    """What a batch stopped by a signal did: the videos it wrote, and the songs it did not render."""
    def listed(paths: list[Path], most: int = 5) -> str:
        text = ", ".join(str(p) for p in paths[:most])
        return text + (f" and {len(paths) - most} more" if len(paths) > most else "")

    made = [out for _, out, result in rows if out is not None and not isinstance(result, str)]
    text = f"{len(made)} of {total} songs rendered"
    if made:
        text += f" ({listed(made)})"
    if pending:
        text += f"; not rendered: {listed(pending)}"
    return text


def _song_error(song: Path, exc: SynestheteError) -> str:
    """Report a song that cannot be rendered in one red line (a traceback too under -v); returns the message."""
    message = str(exc)
    if str(song) not in message:
        message = f"{song}: {message}"
    if state.get("verbose"):
        err_console.print_exception()
    error_line(message)
    return message
