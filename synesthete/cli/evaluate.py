"""`synesthete eval`: score the model on held-out clips, any video file (--video), or every visualizer family
(--families, --music)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from synesthete.cli.app import Quiet, Verbose, wrote
from synesthete.cli.options import (
    CheckpointDir,
    Device,
    Overwrite,
    Preset,
    RenderSeed,
    Steps,
    model_file,
    music_dirs,
    refuse_inputs,
    with_default,
)
from synesthete.cli.settings_merge import build_settings
from synesthete.console import err_console
from synesthete.errors import InputError
from synesthete.files import check_input
from synesthete.settings import Settings


def eval_cmd(
    video: Annotated[Path | None, typer.Option("--video", help="Score this video file instead of the model.")] = None,
    audio: Annotated[Path | None, typer.Option("--audio", help="Audio for --video (default: its own track).")] = None,
    manifest: Annotated[
        Path | None,
        typer.Option("--manifest", help="A gen-audio manifest.jsonl: --video is scored against the exact beats of "
                                        "its clip (found by the --audio or --video file name) instead of a tempo "
                                        "estimate."),
    ] = None,
    clips: Annotated[
        int | None, typer.Option("--clips", "-k", help=with_default("Held-out clips to score.", "eval.clips"))
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON on stdout instead of tables.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the results as JSON to this file.")
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of onsets vs motion.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Published AV-Align peak rule, no noise floor.")] = False,
    checkpoint_dir: CheckpointDir = None,
    steps: Steps = None,
    seed: RenderSeed = None,
    sheet: Annotated[
        Path | None, typer.Option("--sheet", help="Write a contact sheet PNG (model above oracle per clip).")
    ] = None,
    critic: Annotated[
        Path | None,
        typer.Option("--critic", help=with_default("Style critic checkpoint (or a folder with critic.pt).",
                                                   shown="critic.pt in --checkpoint-dir")),
    ] = None,
    long_seconds: Annotated[
        float | None,
        typer.Option("--long-seconds", help=with_default("Long render for style stability (0 skips).",
                                                         "eval.long_seconds")),
    ] = None,
    probe_seconds: Annotated[
        float | None,
        typer.Option("--probe-seconds", help=with_default("Aperiodic probe render for the seam score (0 skips).",
                                                          "eval.probe_seconds")),
    ] = None,
    family_table: Annotated[
        bool, typer.Option("--families", help="Judge every visualizer family on its own: renders of held-out "
                                              "excerpts in each family's look beside the visualizers' drawing "
                                              "of the same audio (procedural songs, and real ones with --music).")
    ] = False,
    music: Annotated[
        list[Path] | None,
        typer.Option("--music", help="A folder of real songs (subfolders too): --families also scores its "
                                     "held-out files (data.music_heldout of them, chosen by a hash of their "
                                     "bytes); repeat for more folders."),
    ] = None,
    device: Device = None,
    overwrite: Overwrite = False,
    preset: Preset = None,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Score audio-visual sync and the picture of the model (default) or of any video file (--video)."""
    critic = model_file(critic, "critic.pt", "--critic")
    settings = build_settings(
        preset, device=device,
        eval={"clips": clips, "strict": strict or None, "long_seconds": long_seconds, "probe_seconds": probe_seconds},
        sampling={"steps": steps},
        render={"seed": seed},
        paths={"checkpoints": checkpoint_dir, "critic": critic},
        data={"music_dirs": music_dirs(music)},
    )
    refuse_inputs((out, plot, sheet), (video, audio, manifest))
    if music or family_table:
        if video is not None or plot is not None:
            raise InputError("--families and --music score the checkpoints per family: leave out --video and --plot")
        _family_eval(settings, out, sheet, overwrite, as_json)
    else:
        _eval(settings, video, audio, manifest, out, plot, sheet, overwrite, as_json)


def _family_eval(settings: Settings, out: Path | None, sheet: Path | None, overwrite: bool, as_json: bool) -> None:
    """``--families`` (and ``--music``): every visualizer family judged on its own."""
    # torch: after the option checks
    from synesthete.cli import tables
    from synesthete.eval import json_safe, run_family_eval

    result, written = run_family_eval(settings, json_out=out, sheet=sheet, overwrite=overwrite)
    if as_json:
        sys.stdout.write(json.dumps(json_safe(result), indent=2) + "\n")
    else:
        tables.print_families(result)
    wrote(written, as_json)


def _eval(settings: Settings, video: Path | None, audio: Path | None, manifest: Path | None, out: Path | None,
          plot: Path | None, sheet: Path | None, overwrite: bool, as_json: bool) -> None:
    """The model on held-out clips, or ``video`` (with ``audio`` and the beats of ``manifest``)."""
    if video is not None:  # before torch is imported: a missing file is one line at once
        check_input(video, "a video file")
        if audio is not None:
            check_input(audio)
    # torch: after the file checks
    from synesthete.cli import tables
    from synesthete.eval import json_safe, run_eval

    result, written = run_eval(settings, video=video, audio=audio, json_out=out, plot=plot, overwrite=overwrite,
                               sheet=sheet, manifest=manifest)
    for note in result.get("notes", []):
        err_console.print(f"[yellow]note:[/yellow] {note}")
    if as_json:  # the JSON alone on stdout; "wrote ..." lines go to stderr
        sys.stdout.write(json.dumps(json_safe(result), indent=2) + "\n")
    elif result["kind"] == "video":
        tables.print_video(result)
    else:
        tables.print_heldout(result)
        tables.print_picture(result["picture"])
    wrote(written, as_json)
