"""Every visualizer family judged on its own: ``synesthete eval --families`` and ``eval --music DIR``.

For each of the families (``styles.families()``), ``eval.family_clips`` excerpts are rendered in a look of
that family drawn anew per excerpt (``render.seed_look``), and the visualizers draw the same audio in the
same look: the ground truth of that render. The excerpts are procedural held-out songs and, with a music
library, excerpts of its held-out files (``MusicLibrary``, split by a hash of each file's bytes, so no
training song is ever scored). Per family and source it reports what ``eval`` reports for the default clips:

* on style and cut rate of the render, beside the visualizers' on the same audio;
* the critic-feature Fréchet distance (FSD) of the render to the visualizers, as a ratio to the visualizers'
  own floor (first halves against second halves, as ``evaluate.heldout_picture`` does);
* AV-Align of the render and of the visualizers (their ratio is the sync bar), and motion in settled
  silence over motion in sound;
* with ``eval.long_seconds`` > 0, the style stability, on style and cut rate of one long render per family
  (a real excerpt when a library is given, else a procedural song).

The excerpts are a pure function of the family, the clip number and the file list, so two checkpoints are
scored on the same audio.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from synesthete.console import make_progress
from synesthete.data import make_clip, music_library
from synesthete.evaluate import _critic_view, _visualizers, video_picture, write_json
from synesthete.files import check_output
from synesthete.media import to_unit
from synesthete.metrics.picture import frechet_distance, load_critic, sheet_times, style_stability, write_sheet
from synesthete.metrics.quality import nanmean
from synesthete.metrics.sync import analyse
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


def _scores(critic: Any, frames: torch.Tensor, wave: torch.Tensor, family: str, settings: Settings) -> tuple[dict, Any]:
    """Picture and sync figures of one video of ``family`` against its audio, and the critic's (probs, features)."""
    outputs = _critic_view(critic, frames)
    picture = video_picture(critic, frames, [family], outputs)
    sync = analyse(frames, wave, settings.audio.sample_rate, settings.video.fps, settings,
                   strict=settings.eval.strict).metrics()
    row = {"on_style": picture["on_style"], "cut_rate": picture["cut_rate"], "sharpness": picture["sharpness"],
           "av_align": sync["av_align"], "silence_ratio": sync["silence_ratio"]}
    return row, outputs


def _fsd_ratio(model: list[torch.Tensor], truth: list[torch.Tensor]) -> tuple[float, float]:
    """(FSD of the renders to the visualizers, that over the visualizers' own floor), by halves of each clip."""
    def half(feats: list[torch.Tensor], part: int) -> torch.Tensor:
        return torch.cat([f[: len(f) // 2] if part == 0 else f[len(f) // 2 :] for f in feats])

    fsd = (frechet_distance(half(model, 0), half(truth, 1)) + frechet_distance(half(model, 1), half(truth, 0))) / 2
    floor = frechet_distance(half(truth, 0), half(truth, 1))
    return fsd, fsd / floor if floor > 0 and math.isfinite(floor) else math.nan


def _summary(rows: list[dict], truth_rows: list[dict], fsd: tuple[float, float]) -> dict:
    """Means over a family's excerpts, the visualizers' beside the render's, and the ratios the bars use."""
    model = {key: nanmean([r[key] for r in rows]) for key in rows[0]}
    truth = {key: nanmean([r[key] for r in truth_rows]) for key in truth_rows[0]}
    out = {"model": model, "visualizers": truth, "fsd": fsd[0], "fsd_ratio_to_floor": fsd[1]}
    out["cut_rate_ratio"] = model["cut_rate"] / truth["cut_rate"] if truth["cut_rate"] > 0 else math.nan
    out["av_align_ratio"] = model["av_align"] / truth["av_align"] if truth["av_align"] > 0 else math.nan
    return out


def evaluate_families(
    models: Any, critic: Any, settings: Settings, library: MusicLibrary | None = None, progress: bool = True,
    sheets: dict[str, list[torch.Tensor]] | None = None,
) -> dict:
    """Per-family figures on procedural and (with ``library``) real held-out excerpts; see the module docstring.

    ``sheets`` receives, per family, the rows of its contact sheet: each excerpt's render above its
    visualizers (real excerpts first).
    """
    ev = settings.eval
    sources = [s for s in SOURCES if s != "real" or library is not None]
    names = families()
    clips = ev.family_clips
    t_start = time.perf_counter()
    out: dict[str, Any] = {"clips_per_family": clips, "clip_seconds": ev.clip_seconds, "sources": sources,
                           "families": {}}
    if library is not None:
        out["heldout_songs"] = [s.path.name for s in library.songs("heldout")]
    renders_total = len(names) * (len(sources) * clips + (1 if ev.long_seconds > 0 else 0))
    with make_progress(disable=not progress) as bar:
        task = bar.add_task("families", total=renders_total, info="")
        for f, family in enumerate(names):
            entry: dict[str, Any] = {}
            sheet_rows: list[torch.Tensor] = []
            for source in sources:
                rows, truth_rows, feats, truth_feats, labels = [], [], [], [], []
                for k in range(clips):
                    seed = family_seed(settings, f, k if source == "real" else clips + k)
                    bar.update(task, info=f"{family}, {source} {k + 1}/{clips}")
                    wave, label = family_audio(settings, source, seed, ev.clip_seconds, library)
                    look = seed_look([family], seed, settings)
                    video = generate_frames(models, wave, settings, style=[family], look=look)
                    truth = _visualizers(wave, look, settings, video.shape[0])
                    row, (_, feat) = _scores(critic, video, wave, family, settings)
                    truth_row, (_, truth_feat) = _scores(critic, truth, wave, family, settings)
                    rows.append(row)
                    truth_rows.append(truth_row)
                    labels.append(label)
                    feats.append(feat)
                    truth_feats.append(truth_feat)
                    idx = sheet_times(min(len(video), len(truth)), ev.sheet_frames)
                    sheet_rows += [to_unit(video[idx]), to_unit(truth[idx])]
                    bar.advance(task)
                entry[source] = {**_summary(rows, truth_rows, _fsd_ratio(feats, truth_feats)), "excerpts": labels}
            if ev.long_seconds > 0:
                seed = family_seed(settings, f, LONG_CLIP)
                bar.update(task, info=f"{family}, {ev.long_seconds:g} s")
                wave, label = family_audio(settings, sources[0], seed, ev.long_seconds, library)
                look = seed_look([family], seed, settings)
                video = generate_frames(models, wave, settings, style=[family], look=look)
                row, (probs, _) = _scores(critic, video, wave, family, settings)
                entry["long"] = {"source": sources[0], "excerpt": label, "seconds": ev.long_seconds,
                                 "style_stability": style_stability(probs),
                                 "on_style": row["on_style"], "cut_rate": row["cut_rate"]}
                bar.advance(task)
            out["families"][family] = entry
            if sheets is not None:
                sheets[family] = sheet_rows
    out["seconds"] = time.perf_counter() - t_start
    return out


def write_family_sheets(path: Path, sheets: dict[str, list[torch.Tensor]]) -> list[Path]:
    """One contact sheet PNG per family beside ``path``: ``<stem>-<family>.png``, render above visualizers."""
    written = []
    for family, rows in sheets.items():
        target = path.with_name(f"{path.stem}-{family}{path.suffix}")
        write_sheet(target, rows, group=2)
        written.append(target)
    return written


def run_family_eval(settings: Settings, json_out: Path | None = None, sheet: Path | None = None,
                    overwrite: bool = False, progress: bool = True) -> tuple[dict, list[Path]]:
    """`synesthete eval --families` / `--music DIR`: the per-family figures of the checkpoints, written as JSON
    (``json_out``) and one contact sheet per family (``sheet``: ``<stem>-<family>.png``)."""
    from synesthete.checkpoint import load_models
    from synesthete.device import resolve_device

    outputs = [Path(p) for p in (json_out,) if p is not None]
    if sheet is not None:
        outputs += [Path(sheet).with_name(f"{Path(sheet).stem}-{f}{Path(sheet).suffix}") for f in families()]
    for target in outputs:
        check_output(target, overwrite)
    library = music_library(settings)  # the folders' files are checked before any heavy work
    if library is not None and not library.songs("heldout"):
        from synesthete.errors import InputError

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
