"""`synesthete analyze`: what synesthete hears in a song (tempo, beats, downbeats, sections)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from synesthete.cli.app import Quiet, Verbose, wrote
from synesthete.cli.options import Overwrite
from synesthete.console import is_quiet
from synesthete.errors import OutputError
from synesthete.files import check_input, check_output


def analyze(
    song: Annotated[
        Path, typer.Argument(help="A song: any audio FFmpeg decodes.", metavar="SONG", show_default=False)
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON on stdout: tempo, sections, and every beat and downbeat time.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write a PNG of the novelty curve with the section boundaries.")
    ] = None,
    overwrite: Overwrite = False,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Tell what synesthete hears in a song: tempo, beats, downbeats and sections (repeats share a letter)."""
    check_input(song)  # before torch is imported: a missing file is one line at once
    if plot is not None:
        if plot.suffix.lower() != ".png":
            raise OutputError(f"--plot {plot}: the plot must be a .png file")
        check_output(plot, overwrite, inputs=(song,))
    # torch: after the file checks
    from synesthete.audio.analysis import analyse_song
    from synesthete.cli import tables
    from synesthete.metrics.plot import plot_analysis

    result = analyse_song(song, progress=not as_json)
    if plot is not None:
        plot_analysis(plot, result, title=song.name)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(times=True), indent=2) + "\n")
    elif not is_quiet():
        tables.print_analysis(song, result)
    wrote([plot] if plot is not None else [], as_json)
