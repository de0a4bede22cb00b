"""The picture metrics of eval (``metrics.picture``, with the style critic as their feature network): of one
video, of the model's held-out renders beside the oracle's, and of long renders and the seam probe."""

from __future__ import annotations

import math
from typing import Any

import torch

from synesthete.checkpoint import Models
from synesthete.data import feature_extractor, make_clip, seed_for
from synesthete.eval.common import clip_look, visualizers
from synesthete.metrics import picture
from synesthete.metrics.quality import nanmean
from synesthete.models.critic import Critic
from synesthete.render import generate_frames, song_layout
from synesthete.settings import Settings
from synesthete.styles import clip_style, families, style_name


def video_picture(
    critic: Critic, frames: torch.Tensor, requested: list[str] | None = None,
    outputs: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, float]:
    """Picture metrics of one video that need no oracle: recognisability, cut rate, stability, sharpness.

    ``outputs`` are the critic's (probs, features) of ``frames`` when the caller already has them.
    """
    probs, feats = outputs if outputs is not None else critic.outputs(frames)
    wanted = [families().index(n) for n in requested] if requested else None
    rec = picture.recognisability(probs, wanted)
    return {
        "recognisability": rec["confidence"],
        "on_style": rec["on_style"],
        "top_family": families()[int(probs.argmax(1).mode().values)] if probs.shape[0] else None,
        "cut_rate": picture.cut_rate(feats, critic.cut_threshold),
        "style_stability": picture.style_stability(probs),
        "sharpness": picture.sharpness(frames),
    }


def _halves(feats: list[torch.Tensor], part: int) -> torch.Tensor:
    """The first (``part`` 0) or second halves of every clip's features, concatenated."""
    return torch.cat([f[: len(f) // 2] if part == 0 else f[len(f) // 2 :] for f in feats])


def fsd_by_halves(feats: list[torch.Tensor], truth: list[torch.Tensor]) -> float:
    """FSD of videos' critic features to the truth's (per clip, [T, D] each): first halves against the truth's
    second halves and vice versa, averaged, so no frame is compared with itself."""
    return (picture.frechet_distance(_halves(feats, 0), _halves(truth, 1))
            + picture.frechet_distance(_halves(feats, 1), _halves(truth, 0))) / 2


def fsd_floor(truth: list[torch.Tensor]) -> float:
    """The FSD of perfect imitation: the truth's first halves against its second halves."""
    return picture.frechet_distance(_halves(truth, 0), _halves(truth, 1))


def ratio_to_floor(value: float, floor: float) -> float:
    """``value`` over a positive, finite FSD ``floor`` (else NaN)."""
    return value / floor if floor and math.isfinite(floor) and floor > 0 else math.nan


def heldout_picture(critic: Critic, renders: list[torch.Tensor], clips: list[dict], settings: Settings,
                    references: dict[str, list[torch.Tensor]] | None = None) -> dict:
    """Picture metrics of the model's renders beside the oracle's frames of the same held-out clips.

    FSD compares the model's frames from the first half of every clip with the oracle's frames from the second
    half (and vice versa, averaged); its floor is the oracle's first halves against the oracle's second halves,
    the same comparison with perfect imitation. So model and floor share sample sizes, clips and styles, and
    no frame is compared with itself. ``references`` (name -> a video per clip) are scored the same way as the
    model, under ``fsd["references"]`` as ratios to the floor.
    """
    out: dict[str, Any] = {"cut_threshold": critic.cut_threshold}
    feats: dict[str, list[torch.Tensor]] = {"model": [], "oracle": []}
    rows: dict[str, list[dict]] = {"model": [], "oracle": [], "oracle_shuffled_in_time": []}
    for render, clip in zip(renders, clips, strict=True):
        style = clip_style(clip["meta"])
        for who, video in (("model", render), ("oracle", clip["frames"])):
            outputs = critic.outputs(video)  # the critic runs once per video
            rows[who].append(video_picture(critic, video, style, outputs))
            feats[who].append(outputs[1])
        order = torch.randperm(clip["frames"].shape[0], generator=torch.Generator().manual_seed(clip["seed"]))
        rows["oracle_shuffled_in_time"].append(video_picture(critic, clip["frames"][order], style))
    for who, per_clip in rows.items():
        out[who] = {key: nanmean([r[key] for r in per_clip]) for key in per_clip[0] if key != "top_family"}

    floor = fsd_floor(feats["oracle"])
    fsd = fsd_by_halves(feats["model"], feats["oracle"])
    out["fsd"] = {"model": fsd, "floor_oracle_vs_oracle": floor, "ratio_to_floor": ratio_to_floor(fsd, floor)}
    if references:
        out["fsd"]["references"] = {
            name: ratio_to_floor(fsd_by_halves([critic.outputs(video)[1] for video in videos], feats["oracle"]), floor)
            for name, videos in references.items()
        }
    oracle_sharp = out["oracle"]["sharpness"]
    out["sharpness_ratio"] = out["model"]["sharpness"] / oracle_sharp if oracle_sharp > 0 else math.nan
    return out


def long_picture(models: Models, critic: Critic, settings: Settings, progress: bool = True) -> dict:
    """Long renders: style stability and cut rate over ``eval.long_seconds`` of a held-out song, and the seam
    score on ``eval.probe_seconds`` of an aperiodic probe (noise, random hits), beside the oracle's."""
    ev = settings.eval
    out: dict[str, Any] = {}
    # A held-out seed past the scored clips, so the long song is not one of them.
    seed = seed_for(ev.clips + 1, settings, "heldout")
    extract = feature_extractor(settings)

    def joins_of(wave: torch.Tensor) -> list[int]:  # where render's windows of this audio join
        return song_layout(extract(wave), settings, models.config.window, settings.render.exemplar).joins()

    if ev.long_seconds > 0:
        clip = make_clip(seed, settings, with_frames=True, drums=True, duration=ev.long_seconds)
        style = clip_style(clip["meta"])
        video = generate_frames(models, clip["audio"], settings, progress=progress, style=style,
                                look=clip_look(clip, settings))
        out["long"] = {
            "seconds": ev.long_seconds, "style": style_name(style),
            "model": {**video_picture(critic, video, style),
                      "seam_score": picture.seam_score(video, joins_of(clip["audio"]))},
            "oracle": video_picture(critic, clip["frames"], style),
        }
        out["_long_video"] = video
    if ev.probe_seconds > 0:
        clip = make_clip(seed, settings, with_frames=False)
        style = clip_style(clip["meta"])
        wave = picture.aperiodic_probe(ev.probe_seconds, settings.audio.sample_rate, seed=seed)
        video = generate_frames(models, wave, settings, progress=progress, style=style, look=clip_look(clip, settings))
        oracle = visualizers(wave, clip["meta"]["visual"], settings)
        out["probe"] = {
            "seconds": ev.probe_seconds, "style": style_name(style),
            "model": {"seam_score": picture.seam_score(video, joins_of(wave)),
                      "style_stability": picture.style_stability(critic.outputs(video)[0])},
            "oracle": {"seam_score": picture.seam_score(oracle, joins_of(wave))},
        }
    return out
