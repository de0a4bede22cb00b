"""`synesthete eval`: score a video file (``--video``) or the checkpoints on held-out clips, and write the
results as JSON, a sync plot and a contact sheet. Printing them is the CLI's job (``synesthete.cli.tables``)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from synesthete.checkpoint import load_critic, load_models
from synesthete.device import resolve_device
from synesthete.errors import InputError, OutputError
from synesthete.eval.common import write_json
from synesthete.eval.files import score_file
from synesthete.eval.heldout import MODEL, ORACLE, evaluate_heldout
from synesthete.eval.picture import long_picture
from synesthete.eval.sheets import write_heldout_sheet, write_video_sheet
from synesthete.files import check_output
from synesthete.metrics.plot import plot_sync
from synesthete.metrics.sync import SyncAnalysis
from synesthete.models.critic import Critic
from synesthete.settings import Settings

Panels = list[tuple[str, SyncAnalysis]]  # (title, analysis) of each panel of the sync plot


def _check_arguments(json_out: Path | None, plot: Path | None, sheet: Path | None, overwrite: bool,
                     video: Path | None, audio: Path | None, manifest: Path | None) -> None:
    """The outputs and option combinations, checked before any heavy work."""
    if sheet is not None and Path(sheet).suffix.lower() != ".png":
        raise OutputError(f"{sheet}: the contact sheet must be a .png file")
    for out in (json_out, plot, sheet):
        if out is not None:
            check_output(Path(out), overwrite)
    if video is None and audio is not None:
        raise InputError("--audio only applies to --video: pass the video to score with --video")
    if video is None and manifest is not None:
        raise InputError("--manifest only applies to --video: held-out clips know their beats already")


def _eval_video(settings: Settings, critic: Critic, video: Path, audio: Path | None, manifest: Path | None,
                sheet: Path | None) -> tuple[dict, Panels]:
    """`eval --video`: the figures of one file, and its contact sheet."""
    score, frames, analysis = score_file(settings, Path(video), audio, manifest, critic)
    if sheet is not None:
        write_video_sheet(Path(sheet), frames, settings)
    return score.to_dict(), [(Path(video).name, analysis)]


def _eval_heldout(settings: Settings, critic: Critic, device: torch.device, sheet: Path | None) -> tuple[dict, Panels]:
    """`eval` of the checkpoints: the held-out benchmark, the long renders, and the contact sheet."""
    models = load_models(settings, settings.paths.checkpoints, device)
    settings = models.fitted(settings)
    videos: dict[str, list[torch.Tensor]] = {}
    result, found = evaluate_heldout(settings, models=models, device=device, critic=critic, videos=videos)
    result["kind"] = "heldout"
    t_long = time.perf_counter()
    long = long_picture(models, critic, settings)
    long.pop("_long_video", None)
    result["picture"].update(long)
    result["picture"]["seconds"] += time.perf_counter() - t_long
    result["checkpoints"] = str(settings.paths.checkpoints)
    result["critic"] = str(settings.critic_path)
    if sheet is not None:
        write_heldout_sheet(Path(sheet), videos, settings)
    return result, [(f"{name} (held-out clip 0)", found[name]) for name in (MODEL, ORACLE) if name in found]


def run_eval(
    settings: Settings,
    video: Path | None = None,
    audio: Path | None = None,
    json_out: Path | None = None,
    plot: Path | None = None,
    overwrite: bool = False,
    sheet: Path | None = None,
    manifest: Path | None = None,
) -> tuple[dict, list[Path]]:
    """`synesthete eval`: score ``video`` (with its own track or ``audio``), or the checkpoints on held-out clips.

    Sync and picture metrics both; ``sheet`` writes a contact sheet PNG (model above oracle per held-out
    clip, or frames of ``video``); ``json_out`` writes the results as JSON; ``manifest`` gives ``video`` the
    exact beats of its gen-audio clip. Returns the results (``result["kind"]`` is "video" or "heldout") and
    the files written; printing them is the CLI's job (``synesthete.cli.tables``).
    """
    _check_arguments(json_out, plot, sheet, overwrite, video, audio, manifest)
    device = resolve_device(settings.device)
    critic = load_critic(settings.critic_path, device)  # checked before any heavy work
    if video is not None:
        result, panels = _eval_video(settings, critic, video, audio, manifest, sheet)
    else:
        result, panels = _eval_heldout(settings, critic, device, sheet)

    written = []
    if json_out is not None:
        write_json(Path(json_out), result)
        written.append(Path(json_out))
    if plot is not None:
        plot_sync(Path(plot), panels)
        written.append(Path(plot))
    if sheet is not None:
        written.append(Path(sheet))
    return result, written
