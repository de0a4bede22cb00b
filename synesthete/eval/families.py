"""Every visualizer family judged on its own: ``synesthete eval --families`` and ``eval --music DIR``.

For each of the families (``styles.families()``), ``eval.family_clips`` excerpts are rendered in a look of
that family drawn anew per excerpt (``render.seed_look``), and the visualizers draw the same audio in the
same look: the ground truth of that render. The excerpts are procedural held-out songs and, with a music
library, excerpts of its held-out files (``MusicLibrary``, split by a hash of each file's bytes, so no
training song is ever scored). Per family and source it reports what ``eval`` reports for the default clips:

* on style and cut rate of the render, beside the visualizers' on the same audio;
* the critic-feature Fréchet distance (FSD) of the render to the visualizers, as a ratio to the visualizers'
  own floor (first halves against second halves, as ``eval.picture.heldout_picture`` does);
* AV-Align of the render and of the visualizers (their ratio is the sync bar), and motion in settled
  silence over motion in sound;
* with ``eval.long_seconds`` > 0, the style stability, on style and cut rate of one long render per family
  (a real excerpt when a library is given, else a procedural song), beside the visualizers' on the same
  audio, and the render's share on style over the frames where the visualizers read as the family.

The excerpts are a pure function of the family, the clip number and the file list, so two checkpoints are
scored on the same audio.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from synesthete.checkpoint import Models, load_critic, load_models
from synesthete.console import make_progress
from synesthete.data import make_clip, music_library
from synesthete.device import resolve_device
from synesthete.errors import InputError
from synesthete.eval.common import visualizers, write_json
from synesthete.eval.picture import fsd_by_halves, fsd_floor, ratio_to_floor, video_picture
from synesthete.eval.sheets import family_sheet_path, pair_rows, write_family_sheets
from synesthete.files import check_output
from synesthete.metrics.picture import held_where_truth_shows
from synesthete.metrics.quality import nanmean
from synesthete.metrics.sync import analyse
from synesthete.models.critic import Critic
from synesthete.music import MusicLibrary, excerpt
from synesthete.render import generate_frames, seed_look
from synesthete.settings import Settings
from synesthete.styles import families

SOURCES = ("real", "procedural")
# Seeds of the family eval: past the held-out clips that `eval` and the trainer score, one block per family.
FAMILY_SEED_OFFSET = 500_000
FAMILY_SEED_BLOCK = 1_000
LONG_CLIP = 999  # clip number of the long render in a family's seed block


def family_seed(settings: Settings, family: int, clip: int) -> int:
    """Held-out seed of clip ``clip`` of family number ``family`` (look, excerpt and procedural song)."""
    return settings.data.heldout_seed_start + FAMILY_SEED_OFFSET + family * FAMILY_SEED_BLOCK + clip


def family_audio(settings: Settings, source: str, seed: int, seconds: float,
                 library: MusicLibrary | None) -> tuple[torch.Tensor, str]:
    """Mono audio [N] of one eval excerpt and a label: a held-out song's excerpt (as it is, no augmentation) or
    a held-out procedural song with drums, silences and drop-outs."""
    if source == "real":
        assert library is not None
        song = library.pick(seed, "heldout")
        wave, how = excerpt(song, seed, seconds, settings.audio.sample_rate, augment=False)
        return wave, f"{song.path.name} @ {how['offset']:.1f} s"
    clip = make_clip(seed, settings, with_frames=False, drums=True, silence=True, dropout=True, duration=seconds)
    return clip["audio"], f"procedural seed {seed}"


def _scores(critic: Critic, frames: torch.Tensor, wave: torch.Tensor, family: str,
            settings: Settings) -> tuple[dict, tuple[torch.Tensor, torch.Tensor]]:
    """Picture and sync figures of one video of ``family`` against its audio, and the critic's (probs, features)."""
    outputs = critic.outputs(frames)
    picture = video_picture(critic, frames, [family], outputs)
    sync = analyse(frames, wave, settings.audio.sample_rate, settings.video.fps, settings,
                   strict=settings.eval.strict).metrics()
    row = {"on_style": picture["on_style"], "cut_rate": picture["cut_rate"], "sharpness": picture["sharpness"],
           "av_align": sync["av_align"], "silence_ratio": sync["silence_ratio"]}
    return row, outputs


def _summary(rows: list[dict], truth_rows: list[dict], model: list[torch.Tensor], truth: list[torch.Tensor]) -> dict:
    """Means over a family's excerpts, the visualizers' beside the render's, the FSD of the renders' critic
    features ``model`` to the visualizers' ``truth``, and the ratios the bars use."""
    fsd = fsd_by_halves(model, truth)
    means = {key: nanmean([r[key] for r in rows]) for key in rows[0]}
    truth_means = {key: nanmean([r[key] for r in truth_rows]) for key in truth_rows[0]}
    out = {"model": means, "visualizers": truth_means, "fsd": fsd,
           "fsd_ratio_to_floor": ratio_to_floor(fsd, fsd_floor(truth))}
    out["cut_rate_ratio"] = means["cut_rate"] / truth_means["cut_rate"] if truth_means["cut_rate"] > 0 else math.nan
    out["av_align_ratio"] = means["av_align"] / truth_means["av_align"] if truth_means["av_align"] > 0 else math.nan
    return out


def _family_source(models: Models, critic: Critic, settings: Settings, f: int, source: str,
                   library: MusicLibrary | None, bar: Any, task: Any, sheet_rows: list[torch.Tensor]) -> dict:
    """The figures of family number ``f`` on ``eval.family_clips`` excerpts of ``source``; each excerpt's
    render and visualizers go on ``sheet_rows``."""
    ev, family = settings.eval, families()[f]
    rows, truth_rows, feats, truth_feats, labels = [], [], [], [], []
    for k in range(ev.family_clips):
        seed = family_seed(settings, f, k if source == "real" else ev.family_clips + k)
        bar.update(task, info=f"{family}, {source} {k + 1}/{ev.family_clips}")
        wave, label = family_audio(settings, source, seed, ev.clip_seconds, library)
        look = seed_look([family], seed, settings)
        video = generate_frames(models, wave, settings, style=[family], look=look)
        truth = visualizers(wave, look, settings, video.shape[0])
        row, (_, feat) = _scores(critic, video, wave, family, settings)
        truth_row, (_, truth_feat) = _scores(critic, truth, wave, family, settings)
        rows.append(row)
        truth_rows.append(truth_row)
        labels.append(label)
        feats.append(feat)
        truth_feats.append(truth_feat)
        sheet_rows += pair_rows(video, truth, ev.sheet_frames)
        bar.advance(task)
    return {**_summary(rows, truth_rows, feats, truth_feats), "excerpts": labels}


def _family_long(models: Models, critic: Critic, settings: Settings, f: int, source: str,
                 library: MusicLibrary | None) -> dict:
    """Style stability, on style and cut rate of one ``eval.long_seconds`` render of family number ``f``, beside
    the visualizers' on the same audio in the same look (what the critic makes of the ground truth there)."""
    family, seconds = families()[f], settings.eval.long_seconds
    seed = family_seed(settings, f, LONG_CLIP)
    wave, label = family_audio(settings, source, seed, seconds, library)
    look = seed_look([family], seed, settings)
    video = generate_frames(models, wave, settings, style=[family], look=look)
    truth = visualizers(wave, look, settings, video.shape[0])
    outputs, truth_outputs = critic.outputs(video), critic.outputs(truth)

    def figures(frames: torch.Tensor, frame_outputs: tuple[torch.Tensor, torch.Tensor]) -> dict:
        picture = video_picture(critic, frames, [family], frame_outputs)
        return {key: picture[key] for key in ("style_stability", "on_style", "cut_rate", "top_family")}

    held = held_where_truth_shows(outputs[0], truth_outputs[0], f)
    model = {**figures(video, outputs), "held_where_truth_shows": held}
    return {"source": source, "excerpt": label, "seconds": seconds, "model": model,
            "visualizers": figures(truth, truth_outputs)}


def evaluate_families(
    models: Models, critic: Critic, settings: Settings, library: MusicLibrary | None = None, progress: bool = True,
    sheets: dict[str, list[torch.Tensor]] | None = None,
) -> dict:
    """Per-family figures on procedural and (with ``library``) real held-out excerpts; see the module docstring.

    ``sheets`` receives, per family, the rows of its contact sheet: each excerpt's render above its
    visualizers (real excerpts first).
    """
    ev = settings.eval
    sources = [s for s in SOURCES if s != "real" or library is not None]
    names = families()
    t_start = time.perf_counter()
    out: dict[str, Any] = {"clips_per_family": ev.family_clips, "clip_seconds": ev.clip_seconds,
                           "sources": sources, "families": {}}
    if library is not None:
        out["heldout_songs"] = [s.path.name for s in library.songs("heldout")]
    renders_total = len(names) * (len(sources) * ev.family_clips + (1 if ev.long_seconds > 0 else 0))
    with make_progress(disable=not progress) as bar:
        task = bar.add_task("families", total=renders_total, info="")
        for f, family in enumerate(names):
            sheet_rows: list[torch.Tensor] = []
            entry: dict[str, Any] = {
                source: _family_source(models, critic, settings, f, source, library, bar, task, sheet_rows)
                for source in sources
            }
            if ev.long_seconds > 0:
                bar.update(task, info=f"{family}, {ev.long_seconds:g} s")
                entry["long"] = _family_long(models, critic, settings, f, sources[0], library)
                bar.advance(task)
            out["families"][family] = entry
            if sheets is not None:
                sheets[family] = sheet_rows
    out["seconds"] = time.perf_counter() - t_start
    return out


def run_family_eval(settings: Settings, json_out: Path | None = None, sheet: Path | None = None,
                    overwrite: bool = False, progress: bool = True) -> tuple[dict, list[Path]]:
    """`synesthete eval --families` / `--music DIR`: the per-family figures of the checkpoints, written as JSON
    (``json_out``) and one contact sheet per family (``sheet``: ``<stem>-<family>.png``)."""
    outputs = [Path(p) for p in (json_out,) if p is not None]
    if sheet is not None:
        outputs += [family_sheet_path(Path(sheet), f) for f in families()]
    for target in outputs:
        check_output(target, overwrite)
    library = music_library(settings)  # the folders' files are checked before any heavy work
    if library is not None and not library.songs("heldout"):
        raise InputError(f"no held-out songs in the music folders ({library.describe()}): eval scores only "
                         f"held-out files (data.music_heldout={settings.data.music_heldout}); add songs")
    device = resolve_device(settings.device)
    critic = load_critic(settings.critic_path, device)
    models = load_models(settings, settings.paths.checkpoints, device)
    sheets: dict[str, list[torch.Tensor]] | None = {} if sheet is not None else None
    result = evaluate_families(models, critic, models.fitted(settings), library, progress=progress, sheets=sheets)
    result.update(kind="families", checkpoints=str(settings.paths.checkpoints))
    written: list[Path] = []
    if json_out is not None:
        write_json(Path(json_out), result)
        written.append(Path(json_out))
    if sheets:
        written += write_family_sheets(Path(sheet), sheets)
    return result, written
