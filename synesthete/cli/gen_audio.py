"""`synesthete gen-audio`: a sample dataset of procedural clips (audio, the visualizer's video, a manifest)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from synesthete.cli.app import Quiet, Verbose, print_summary
from synesthete.cli.options import Preset, with_default
from synesthete.cli.settings_merge import build_settings
from synesthete.gen import generate_dataset


def gen_audio(
    num: Annotated[int, typer.Option("--num", "-n", help="Number of clips.")] = 16,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("data/sample"),
    seed: Annotated[
        int | None,
        typer.Option("--seed", help=with_default("Seed of the stream: clip i gets its own seed from it (see the "
                                                 "manifest).", "data.seed")),
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help=with_default("Clip length in seconds.", "audio.clip_seconds"))
    ] = None,
    width: Annotated[
        int | None, typer.Option("--width", help=with_default("Frame width (even).", "video.width"))
    ] = None,
    height: Annotated[
        int | None, typer.Option("--height", help=with_default("Frame height (even).", "video.height"))
    ] = None,
    fps: Annotated[int | None, typer.Option("--fps", help=with_default("Frames per second.", "video.fps"))] = None,
    audio_only: Annotated[bool, typer.Option("--audio-only", help="Write only .wav files and the manifest.")] = False,
    form: Annotated[
        bool,
        typer.Option("--form", help="Whole songs of sections (parts of 4 or 8 bars with their own instruments, "
                                    "some repeated), as long as their form unless --duration says; the manifest "
                                    "adds downbeats and sections."),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into a non-empty folder.")] = False,
    preset: Preset = None,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Write a sample dataset: .wav + .mp4 (H.264 + AAC) per clip and a manifest.jsonl."""
    settings = build_settings(preset, data={"seed": seed}, audio={"clip_seconds": None if form else duration})
    summary = generate_dataset(
        settings, num=num, out=out, audio_only=audio_only, overwrite=overwrite,
        width=width, height=height, fps=fps, form=form, duration=duration if form else None,
    )
    print_summary("gen-audio", summary)
