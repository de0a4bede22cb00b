"""The held-out benchmark of `synesthete eval`: K held-out procedural clips (drums, silences and drop-outs
forced on) rendered by the checkpoints, scored beside the oracle (the visualizers' own video) under the same
pairings: each clip's own audio, another clip's, and its own delayed by half a beat; and a static-frame floor.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from synesthete.checkpoint import Models
from synesthete.console import make_progress
from synesthete.data import make_clip, seed_for
from synesthete.eval.common import clip_look, visualizers
from synesthete.eval.picture import heldout_picture
from synesthete.media import to_uint8, to_unit
from synesthete.metrics.flow import motion_curve
from synesthete.metrics.quality import nanmean, psnr, ssim
from synesthete.metrics.sync import SyncAnalysis, analyse
from synesthete.models.critic import Critic
from synesthete.render import generate_frames, render_seed, seed_look
from synesthete.settings import Settings
from synesthete.styles import clip_style

# Row names of the held-out table (video, paired audio), in display order, and their JSON keys.
MODEL, MODEL_OTHER, MODEL_SHIFT = "model", "model, other audio", "model, ½-beat shift"
ORACLE, ORACLE_OTHER, ORACLE_SHIFT = "oracle", "oracle, other audio", "oracle, ½-beat shift"
STATIC = "static floor"
ROW_KEYS = {
    MODEL: "model", MODEL_OTHER: "model_other_audio", MODEL_SHIFT: "model_half_beat_shift",
    ORACLE: "oracle", ORACLE_OTHER: "oracle_other_audio", ORACLE_SHIFT: "oracle_half_beat_shift",
    STATIC: "static",
}
SEED_LOOK = "visualizers_in_the_seed_look"  # eval's FSD reference: what a perfect model in render's look scores
VAE_ROUNDTRIP = "vae_reconstructions_of_the_oracle"  # FSD reference: what the Eye alone keeps of the oracle


def delay(wave: torch.Tensor, seconds: float, sample_rate: int) -> torch.Tensor:
    """``wave`` [N] delayed by ``seconds`` (silence in front), same length."""
    shift = min(wave.shape[-1], int(round(seconds * sample_rate)))
    return torch.cat([wave.new_zeros(shift), wave[: wave.shape[-1] - shift]])


def heldout_clips(settings: Settings, count: int) -> list[dict]:
    """The first ``count`` held-out procedural clips, with drums, silences and drop-outs forced on."""
    return [
        make_clip(
            seed_for(i, settings, "heldout"), settings, with_frames=True,
            drums=True, silence=True, dropout=True, duration=settings.eval.clip_seconds,
        )
        for i in range(count)
    ]


def _oracle_for_audio(clip: dict, other: dict, settings: Settings) -> torch.Tensor:
    """The clip's visualizer (same parameters) driven by ``other``'s audio -> uint8 [T, 3, H, W]."""
    return visualizers(other["audio"], clip["meta"]["visual"], settings, clip["features"].shape[0])


@torch.no_grad()
def _latents(models: Models, frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Standardised VAE latent means of frames [T, 3, H, W] -> [T, C, h, w] (batched, on CPU)."""
    return torch.cat([models.encode(chunk).float().cpu() for chunk in torch.split(frames, 64)])


def _pixel_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute pixel difference of two videos, as a fraction of full scale."""
    t = min(a.shape[0], b.shape[0])
    return float((to_unit(a[:t]) - to_unit(b[:t])).abs().mean())


class _HeldoutTally:
    """What the held-out eval accumulates: per-row sync metrics, shuffle gaps, VAE quality, clip 0's analyses."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rows: dict[str, list[dict]] = {name: [] for name in ROW_KEYS}
        self.gaps: dict[str, dict[str, list[float]]] = {"model": {}, "oracle": {}}
        self.psnrs: list[float] = []
        self.ssims: list[float] = []
        self.per_clip: list[dict] = []
        self.plot_panels: dict[str, SyncAnalysis] = {}

    def score(self, name: str, frames: torch.Tensor, audio: torch.Tensor, beats: list[float], motion: np.ndarray,
              clip_rows: dict, first: bool) -> None:
        """Analyse one (video, audio) row of a clip and record it under ``name``."""
        s = self.settings
        a = analyse(frames, audio, s.audio.sample_rate, s.video.fps, s, beats=beats, strict=s.eval.strict,
                    motion=motion)
        clip_rows[ROW_KEYS[name]] = a.metrics()
        self.rows[name].append(a.metrics())
        if first:
            self.plot_panels[name] = a

    def gap(self, who: str, kind: str, value: float) -> None:
        self.gaps[who].setdefault(kind, []).append(value)

    def summary(self) -> tuple[dict, dict]:
        """(mean metrics per row, shuffle gaps per video source)."""
        names = [n for n in ROW_KEYS if self.rows[n]]
        summary = {ROW_KEYS[n]: {key: nanmean([r[key] for r in self.rows[n]]) for key in self.rows[n][0]}
                   for n in names}
        gap_out: dict[str, dict[str, float]] = {}
        for who in ("model", "oracle"):
            if who not in summary:
                continue
            gap_out[who] = {
                "av_align_vs_other_audio": summary[who]["av_align"] - summary[f"{who}_other_audio"]["av_align"],
                "av_align_vs_half_beat_shift":
                    summary[who]["av_align"] - summary[f"{who}_half_beat_shift"]["av_align"],
                **{f"{kind}_difference": nanmean(vals) for kind, vals in self.gaps[who].items()},
            }
        return summary, gap_out


@torch.no_grad()
def _vae_roundtrip(models: Models, frames: torch.Tensor, device: torch.device, batch: int = 64) -> torch.Tensor:
    """decode(encode(x)) of every oracle frame [T, 3, H, W] uint8 -> uint8: the best picture the DiT could
    give through this VAE."""
    return torch.cat([to_uint8(models.vae.decode(models.vae.encode(to_unit(part, device))[0]))
                      for part in frames.split(batch)])


def _seed_look_oracle(clips: list[dict], settings: Settings) -> list[torch.Tensor]:
    """Each clip's audio drawn by its style's visualizers in the look the render seed picks (``render.seed_look``),
    not the clip's own: the FSD of a perfect model that renders in that look, as ``render --style`` does."""
    seed = render_seed(settings)
    return [visualizers(clip["audio"], seed_look(clip_style(clip["meta"]), seed, settings), settings)
            for clip in clips]


def _render_heldout(models: Models, clips: list[dict], settings: Settings, bar: Any) -> list[torch.Tensor]:
    """The model's video of every clip, each with the same noise seed and the clip's true style."""
    task = bar.add_task("rendering", total=len(clips), info="")
    renders = []
    for clip in clips:
        renders.append(generate_frames(models, clip["audio"], settings, style=clip_style(clip["meta"]),
                                       look=clip_look(clip, settings)))
        bar.advance(task)
    return renders


def _vae_quality(models: Models, oracle: torch.Tensor, device: torch.device, frames: int) -> tuple[float, float]:
    """PSNR and SSIM of the VAE's reconstruction of ``frames`` oracle frames, evenly spaced through the clip."""
    idx = torch.linspace(0, oracle.shape[0] - 1, min(frames, oracle.shape[0]))
    x = to_unit(oracle[idx.round().long()], device)
    with torch.no_grad():
        recon = models.vae.decode(models.vae.encode(x)[0]).clamp(0, 1).float().cpu()
    return psnr(x.cpu(), recon), ssim(x.cpu(), recon)


def _score_clip(
    tally: _HeldoutTally, clip: dict, other: dict, first: bool, settings: Settings,
    models: Models | None = None, video: torch.Tensor | None = None, other_video: torch.Tensor | None = None,
    device: torch.device | None = None,
) -> dict:
    """Score one held-out clip: the oracle (and, with ``models``, the model's ``video``) against its own audio,
    another clip's and its own shifted by half a beat, plus the static floor and the shuffle gaps."""
    sr = settings.audio.sample_rate
    wave, beats = clip["audio"], clip["meta"]["beats"]
    half_beat = 30.0 / float(clip["meta"]["tempo"])
    shifted, shifted_beats = delay(wave, half_beat, sr), [b + half_beat for b in beats]
    clip_rows: dict[str, dict] = {}

    def rows_for(frames: torch.Tensor, names: tuple[str, str, str]) -> None:
        motion = motion_curve(frames, settings.eval).numpy()
        tally.score(names[0], frames, wave, beats, motion, clip_rows, first)
        tally.score(names[1], frames, other["audio"], other["meta"]["beats"], motion, clip_rows, first)
        tally.score(names[2], frames, shifted, shifted_beats, motion, clip_rows, first)

    oracle = clip["frames"]  # [T, 3, H, W] uint8
    rows_for(oracle, (ORACLE, ORACLE_OTHER, ORACLE_SHIFT))
    tally.score(STATIC, oracle[:1].expand_as(oracle), wave, beats, np.zeros(oracle.shape[0]), clip_rows, first)
    oracle_swapped = _oracle_for_audio(clip, other, settings)
    tally.gap("oracle", "pixel", _pixel_gap(oracle, oracle_swapped))

    if models is not None:
        rows_for(video, (MODEL, MODEL_OTHER, MODEL_SHIFT))
        tally.gap("model", "pixel", _pixel_gap(video, other_video))
        z_a, z_b = _latents(models, video, device), _latents(models, other_video, device)
        tally.gap("model", "latent", float((z_a - z_b).abs().mean()))
        z_o, z_s = _latents(models, oracle, device), _latents(models, oracle_swapped, device)
        tally.gap("oracle", "latent", float((z_o - z_s).abs().mean()))
        p, q = _vae_quality(models, oracle, device, settings.eval.quality_frames)
        tally.psnrs.append(p)
        tally.ssims.append(q)
    return clip_rows


def _heldout_result(settings: Settings, clips: list[dict], tally: _HeldoutTally, with_models: bool) -> dict:
    """The results of the scored clips (the first ``eval.clips`` of ``clips``): mean rows, ratios, gaps."""
    k, strict = settings.eval.clips, settings.eval.strict
    summary, gap_out = tally.summary()
    oracle_av = summary["oracle"]["av_align"]
    return {
        "mode": "heldout",
        "clips": k,
        "clip_seconds": settings.eval.clip_seconds,
        "seeds": [int(c["seed"]) for c in clips[:k]],
        "fps": settings.video.fps,
        "size": [settings.video.width, settings.video.height],
        "strict": strict,
        "peak_threshold": 0.0 if strict else settings.eval.peak_threshold,
        "rows": summary,
        "ratio_to_oracle": {
            name: (summary[name]["av_align"] / oracle_av if oracle_av > 0 else math.nan) for name in summary
        },
        "gaps": gap_out,
        "quality": ({"vae_psnr_db": nanmean(tally.psnrs), "vae_ssim": nanmean(tally.ssims)}
                    if with_models else {}),
        "per_clip": tally.per_clip,
    }


def evaluate_heldout(
    settings: Settings, models: Models | None = None, device: torch.device | str = "cpu", progress: bool = True,
    critic: Critic | None = None,
    videos: dict[str, list[torch.Tensor]] | None = None,
) -> tuple[dict, dict[str, SyncAnalysis]]:
    """Score ``settings.eval.clips`` held-out clips -> (results, analyses of clip 0 for the plot).

    With ``models`` (``checkpoint.load_models``) the model rows and the VAE quality are included; without,
    only the oracle and the static floor (useful before any training). With ``critic``
    (``checkpoint.load_critic``) the picture metrics are added under "picture". A ``videos`` dict receives
    the model's renders and the oracle's frames (for the contact sheet).
    """
    device = torch.device(device)
    k = settings.eval.clips
    clips = heldout_clips(settings, max(k, 2))  # mismatched audio needs a second clip even when K = 1
    partner = [(i + 1) % len(clips) for i in range(len(clips))]
    tally = _HeldoutTally(settings)
    t_start = time.perf_counter()

    with make_progress(disable=not progress) as bar:
        renders = _render_heldout(models, clips, settings, bar) if models is not None else []
        task = bar.add_task("scoring", total=k, info="")
        for i in range(k):
            clip, j = clips[i], partner[i]
            clip_rows = _score_clip(
                tally, clip, clips[j], i == 0, settings, models,
                video=renders[i] if renders else None, other_video=renders[j] if renders else None, device=device,
            )
            tally.per_clip.append({"seed": int(clip["seed"]), "tempo": clip["meta"]["tempo"], "rows": clip_rows})
            bar.update(task, advance=1, info=f"oracle AV-Align {clip_rows['oracle']['av_align']:.2f}")

    result = _heldout_result(settings, clips, tally, models is not None)
    result["seconds"] = time.perf_counter() - t_start
    if critic is not None:
        t_picture = time.perf_counter()
        references = {SEED_LOOK: _seed_look_oracle(clips[:k], settings)}
        if models is not None:
            references[VAE_ROUNDTRIP] = [_vae_roundtrip(models, c["frames"], device) for c in clips[:k]]
        result["picture"] = heldout_picture(critic, renders[:k], clips[:k], settings, references=references)
        result["picture"]["seconds"] = time.perf_counter() - t_picture
    if videos is not None:
        videos.update(model=renders[:k], oracle=[c["frames"] for c in clips[:k]])
    return result, tally.plot_panels
