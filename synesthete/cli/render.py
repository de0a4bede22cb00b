"""`synesthete render` (one song to one mp4; several songs or folders go to ``batch``) and `synesthete styles`."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from synesthete.cli.app import Quiet, Verbose, print_summary
from synesthete.cli.batch import render_many
from synesthete.cli.options import CheckpointDir, Device, Overwrite, Preset, RenderSeed, Steps, with_default
from synesthete.cli.settings_merge import build_settings
from synesthete.console import console
from synesthete.files import check_input, check_mp4, check_output, new_folders
from synesthete.locks import output_lock
from synesthete.settings import Settings


class OnOff(StrEnum):
    """A switch option's two values."""

    on = "on"
    off = "off"


def render(
    songs: Annotated[
        list[Path],
        typer.Argument(help="Songs: any audio FFmpeg decodes (wav, mp3, ogg, flac, m4a, a video), or folders of "
                            "audio files.", metavar="SONG", show_default=False),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output mp4 for one song; a folder (created if missing) for several songs "
                                         "or a folder of songs: each becomes <song name>.mp4 in it."),
    ],
    fps: Annotated[
        int | None, typer.Option("--fps", help=with_default("Output frame rate (the model's own only).", "video.fps"))
    ] = None,
    seed: RenderSeed = None,
    guidance: Annotated[
        float | None,
        typer.Option("--guidance", help=with_default("Classifier-free guidance scale on the audio.",
                                                     "sampling.guidance")),
    ] = None,
    style: Annotated[
        str | None,
        typer.Option("--style", help=with_default("Visualizer family, '+'-joined families, 'auto' (from the seed: "
                                                  "a family per kind of section) or 'list'.", "render.style")),
    ] = None,
    sections: Annotated[
        OnOff | None,
        typer.Option("--sections", case_sensitive=False,
                     help=with_default("Follow the song's form: a new look on the downbeat that starts each section, "
                                       "a repeated section in its earlier look (see `synesthete analyze`); off: one "
                                       "look for the whole song.", shown="on")),
    ] = None,
    style_guidance: Annotated[
        float | None,
        typer.Option("--style-guidance", help=with_default("Classifier-free guidance scale on the style.",
                                                           "sampling.style_guidance")),
    ] = None,
    steps: Steps = None,
    sampler: Annotated[
        str | None,
        typer.Option("--sampler", help=with_default("ddpm (ancestral), ddim or dpm++ (DPM-Solver++(2M)).",
                                                    shown="the Brain's own: ddim for a step-distilled Brain, "
                                                    "else dpm++")),
    ] = None,
    lanes: Annotated[
        int | None,
        typer.Option("--lanes", min=1, help=with_default("Stretches of the song generated side by side (faster; 1 = "
                                                         "one window after another).", "render.lanes")),
    ] = None,
    start: Annotated[float, typer.Option("--start", help="Start of the excerpt (s).")] = 0.0,
    duration: Annotated[
        float | None, typer.Option("--duration", help=with_default("Length of the excerpt (s).", shown="to the end"))
    ] = None,
    size: Annotated[
        int | None,
        typer.Option("--size", help=with_default("Upscale output to SIZExSIZE (e.g. 512); 0 keeps the model's size.",
                                                 "render.size")),
    ] = None,
    checkpoint_dir: CheckpointDir = None,
    device: Device = None,
    overwrite: Overwrite = False,
    preset: Preset = None,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Turn songs into videos, with each song muxed in. Several songs load the models once."""
    if style is not None:  # synesthete.styles imports torch: without --style, the checks below come before it
        from synesthete.styles import LIST

        if style.strip().lower() == LIST:
            styles()
            return
    settings = build_settings(
        preset, device=device,
        video={"fps": fps},
        sampling={"guidance": guidance, "steps": steps, "sampler": sampler, "style_guidance": style_guidance},
        render={"seed": seed, "size": size, "style": style, "lanes": lanes,
                "sections": None if sections is None else sections == OnOff.on},
        paths={"checkpoints": checkpoint_dir},
    )
    if len(songs) == 1 and not songs[0].is_dir() and not out.is_dir():
        _render_one(settings, songs[0], out, start, duration, overwrite)
    else:
        render_many(settings, songs, out, start, duration, overwrite)


def _render_one(settings: Settings, song: Path, out: Path, start: float, duration: float | None,
                overwrite: bool) -> None:
    """One song to one mp4: every check before the models load, then the render and its summary."""
    with new_folders(out.parent), output_lock(out):  # a second render to the same file is refused meanwhile
        t_start = time.perf_counter()
        _check_render_files(song, out, overwrite)
        # torch: after the file checks, so that a missing song or a taken output is one line at once
        from synesthete.cli import tables
        from synesthete.pipeline import Synesthete

        pipe = Synesthete(settings)
        job = pipe.plan(song, out, start=start, duration=duration, overwrite=overwrite, overwrite_flag="--overwrite")
        result = pipe.run(job, progress=True, since=t_start)  # loads the models
    print_summary("render", tables.render_summary(result))


def _check_render_files(song: Path, out: Path, overwrite: bool) -> None:
    """The file checks of ``plan_render`` that need no decoding, run before torch is imported: a missing song,
    an existing output (without --overwrite) or an output that is not an .mp4 is one line in a fraction of a
    second. The same functions (``synesthete.files``) make the same checks again in ``plan_render``."""
    check_mp4(out)
    check_input(song)
    check_output(out, overwrite, inputs=(song,))


def styles(verbose: Verbose = False, quiet: Quiet = False) -> None:
    """List the styles `render --style` takes: each visualizer family, joinable with '+'."""
    from synesthete.styles import describe  # torch: styles imports it

    table = Table(title="styles (join families with '+', e.g. spectrum+kaleido; 'auto' draws one from the seed)",
                  title_justify="left")
    table.add_column("style", style="bold")
    table.add_column("what it draws")
    for name, text in describe().items():
        table.add_row(name, text)
    console.print(table)
