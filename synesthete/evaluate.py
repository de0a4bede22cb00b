"""`synesthete eval`: score audio-visual sync of the model, of the procedural visualizers, or of any video.

Default mode renders K held-out procedural clips (drums, silences and drop-outs forced on) with the
current checkpoints and prints, side by side, the model with its own audio, the model's video paired with
mismatched audio (another held-out clip, and its own audio delayed by half a beat), the oracle (the
visualizers' own video) under the same pairings, and a static-frame floor. ``--video`` scores any file.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.table import Table

from synesthete.console import console, err_console, make_progress
from synesthete.errors import InputError
from synesthete.media import atomic_path, check_output, load_audio, load_video
from synesthete.metrics.flow import motion_curve
from synesthete.metrics.quality import psnr, ssim
from synesthete.metrics.sync import SyncAnalysis, analyse
from synesthete.settings import Settings

# Row names of the held-out table (video, paired audio), in display order, and their JSON keys.
MODEL, MODEL_OTHER, MODEL_SHIFT = "model", "model, other audio", "model, ½-beat shift"
ORACLE, ORACLE_OTHER, ORACLE_SHIFT = "oracle", "oracle, other audio", "oracle, ½-beat shift"
STATIC = "static floor"
ROW_KEYS = {
    MODEL: "model", MODEL_OTHER: "model_other_audio", MODEL_SHIFT: "model_half_beat_shift",
    ORACLE: "oracle", ORACLE_OTHER: "oracle_other_audio", ORACLE_SHIFT: "oracle_half_beat_shift",
    STATIC: "static",
}
# Per-row metric columns after AV-Align and its ratio: (key in SyncAnalysis.metrics(), header, format).
COLUMNS = (
    ("bas", "BAS", "{:.3f}"),
    ("flicker", "flicker", "{:.4f}"),
    ("silence_ratio", "silence/sound", "{:.2f}"),
)


# --------------------------------------------------------------------------------------------- helpers
def nanmean(values: list[float]) -> float:
    """Mean of the finite values; NaN when there are none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _fmt(value: float | None, fmt: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt.format(value)


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None, numpy -> Python, recursively (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_json_safe(data), indent=2) + "\n")


def delay(wave: torch.Tensor, seconds: float, sample_rate: int) -> torch.Tensor:
    """``wave`` [N] delayed by ``seconds`` (silence in front), same length."""
    shift = min(wave.shape[-1], int(round(seconds * sample_rate)))
    return torch.cat([wave.new_zeros(shift), wave[: wave.shape[-1] - shift]])


# --------------------------------------------------------------------------------------------- --video
def _load_pair(video: Path, audio: Path | None) -> tuple[torch.Tensor, float, torch.Tensor, int]:
    frames, fps = load_video(video)  # [T, 3, H, W] uint8
    source = audio if audio is not None else video
    try:
        wave, sr = load_audio(source, mono=True)  # [1, N]
    except InputError as exc:
        if audio is None:
            raise InputError(
                f"{video} has no usable audio track: pass the soundtrack with --audio song.wav"
            ) from exc
        raise
    if wave.shape[-1] == 0:
        raise InputError(f"{source} has no audio samples (empty audio)")
    return frames, fps, wave[0], sr


def score_video(settings: Settings, video: Path, audio: Path | None = None) -> tuple[dict, SyncAnalysis]:
    """Score an existing video file against its own audio track (or ``audio``) -> (results, analysis)."""
    video = Path(video)
    frames, fps, wave, sr = _load_pair(video, Path(audio) if audio is not None else None)
    a = analyse(frames, wave, sr, fps, settings)
    result = {
        "mode": "video",
        "video": str(video),
        "audio": str(audio if audio is not None else video),
        "fps": fps,
        "frames": int(frames.shape[0]),
        "size": [int(frames.shape[-1]), int(frames.shape[-2])],
        "video_seconds": a.video_seconds,
        "audio_seconds": a.audio_seconds,
        "scored_seconds": a.duration,
        "strict": settings.eval.strict,
        "peak_threshold": 0.0 if settings.eval.strict else settings.eval.peak_threshold,
        "beats": "estimated",
        "tempo_bpm": a.tempo,
        "metrics": a.metrics(),
        "notes": a.notes,
    }
    return result, a


def print_video(result: dict) -> None:
    """Print the scores of one video file."""
    m = result["metrics"]
    table = Table(title=f"sync of {result['video']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("AV-Align", _fmt(m["av_align"]) + ("  (strict peaks)" if result["strict"] else "")),
        ("peaks matched", f"{int(m['matched_peaks'])} of {int(m['audio_peaks'])} audio, {int(m['video_peaks'])} video"),
        ("BAS (estimated beats)", _fmt(m["bas"])),
        ("tempo estimate", _fmt(result["tempo_bpm"], "{:.1f} BPM")),
        ("flicker in silence", _fmt(m["flicker"], "{:.4f}")),
        ("motion silence / sound", f"{_fmt(m['motion_silence'])} / {_fmt(m['motion_sound'])} px "
                                   f"(ratio {_fmt(m['silence_ratio'], '{:.2f}')})"),
        ("silent fraction", _fmt(m["silent_fraction"], "{:.2f}")),
        ("scored", f"{result['scored_seconds']:.2f} s, {result['frames']} frames at {result['fps']:.3g} fps, "
                   f"{result['size'][0]}x{result['size'][1]}"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


# --------------------------------------------------------------------------------------------- held-out
def heldout_clips(settings: Settings, count: int) -> list[dict]:
    """The first ``count`` held-out procedural clips, with drums, silences and drop-outs forced on."""
    from synesthete.data import make_clip, seed_for

    return [
        make_clip(
            seed_for(i, settings, "heldout"), settings, with_frames=True,
            drums=True, silence=True, dropout=True, duration=settings.eval.clip_seconds,
        )
        for i in range(count)
    ]


def _oracle_for_audio(clip: dict, other: dict, settings: Settings) -> torch.Tensor:
    """The clip's visualizer (same parameters) driven by ``other``'s audio -> uint8 [T, 3, H, W]."""
    from synesthete.data import feature_extractor
    from synesthete.media import to_uint8
    from synesthete.visual import render_frames

    wave = other["audio"]
    features = feature_extractor(settings)(wave, clip["features"].shape[0])  # [T, F]
    return to_uint8(render_frames(features, wave, clip["meta"]["visual"], settings))


@torch.no_grad()
def _latents(models: Any, frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Standardised VAE latent means of frames [T, 3, H, W] -> [T, C, h, w] (batched, on CPU)."""
    out = []
    mean = models.latent_mean.to(device).view(1, -1, 1, 1)
    std = models.latent_std.to(device).view(1, -1, 1, 1)
    for chunk in torch.split(frames, 64):
        x = chunk.float().to(device)
        if chunk.dtype == torch.uint8:
            x = x / 255.0
        mu, _ = models.vae.encode(x)
        out.append(((mu - mean) / std).float().cpu())
    return torch.cat(out)


def _pixel_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute pixel difference of two videos, as a fraction of full scale."""
    def unit(x: torch.Tensor) -> torch.Tensor:
        return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()

    t = min(a.shape[0], b.shape[0])
    return float((unit(a[:t]) - unit(b[:t])).abs().mean())


def evaluate_heldout(
    settings: Settings, models: Any | None = None, device: torch.device | str = "cpu", progress: bool = True
) -> tuple[dict, dict[str, SyncAnalysis]]:
    """Score ``settings.eval.clips`` held-out clips -> (results, analyses of clip 0 for the plot).

    With ``models`` (``checkpoint.load_models``) the model rows and the VAE quality are included; without,
    only the oracle and the static floor (useful before any training).
    """
    device = torch.device(device)
    k = settings.eval.clips
    fps, sr = settings.video.fps, settings.audio.sample_rate
    strict = settings.eval.strict
    clips = heldout_clips(settings, max(k, 2))  # mismatched audio needs a second clip even when K = 1
    partner = [(i + 1) % len(clips) for i in range(len(clips))]
    rows: dict[str, list[dict]] = {name: [] for name in ROW_KEYS}
    gaps: dict[str, dict[str, list[float]]] = {"model": {}, "oracle": {}}
    psnrs, ssims, per_clip = [], [], []
    plot_panels: dict[str, SyncAnalysis] = {}
    t_start = time.perf_counter()

    with make_progress(disable=not progress) as bar:
        renders: list[torch.Tensor] = []
        if models is not None:
            from synesthete.render import generate_frames

            task = bar.add_task("rendering", total=len(clips), info="")
            for clip in clips:  # every render uses the same noise seed: only the audio differs
                renders.append(generate_frames(models, clip["audio"], settings))  # [T, 3, H, W] in [0, 1]
                bar.advance(task)
        task = bar.add_task("scoring", total=k, info="")
        for i in range(k):
            clip, other = clips[i], clips[partner[i]]
            wave, beats = clip["audio"], clip["meta"]["beats"]
            half_beat = 30.0 / float(clip["meta"]["tempo"])
            shifted = delay(wave, half_beat, sr)
            shifted_beats = [b + half_beat for b in beats]
            clip_rows: dict[str, dict] = {}

            def score(name: str, frames: torch.Tensor, audio: torch.Tensor, beat_times: list[float],
                      motion: np.ndarray, _rows: dict = clip_rows, _i: int = i) -> SyncAnalysis:
                a = analyse(frames, audio, sr, fps, settings, beats=beat_times, strict=strict, motion=motion)
                _rows[ROW_KEYS[name]] = a.metrics()
                rows[name].append(a.metrics())
                if _i == 0:
                    plot_panels[name] = a
                return a

            oracle = clip["frames"]  # [T, 3, H, W] uint8
            m_oracle = motion_curve(oracle, settings.eval).numpy()
            score(ORACLE, oracle, wave, beats, m_oracle)
            score(ORACLE_OTHER, oracle, other["audio"], other["meta"]["beats"], m_oracle)
            score(ORACLE_SHIFT, oracle, shifted, shifted_beats, m_oracle)
            static = oracle[:1].expand_as(oracle)
            score(STATIC, static, wave, beats, np.zeros(oracle.shape[0]))
            oracle_swapped = _oracle_for_audio(clip, other, settings)
            gaps["oracle"].setdefault("pixel", []).append(_pixel_gap(oracle, oracle_swapped))

            if models is not None:
                video = renders[i]
                m_model = motion_curve(video, settings.eval).numpy()
                score(MODEL, video, wave, beats, m_model)
                score(MODEL_OTHER, video, other["audio"], other["meta"]["beats"], m_model)
                score(MODEL_SHIFT, video, shifted, shifted_beats, m_model)
                gaps["model"].setdefault("pixel", []).append(_pixel_gap(video, renders[partner[i]]))
                z_a = _latents(models, video, device)
                z_b = _latents(models, renders[partner[i]], device)
                gaps["model"].setdefault("latent", []).append(float((z_a - z_b).abs().mean()))
                z_o = _latents(models, oracle, device)
                z_s = _latents(models, oracle_swapped, device)
                gaps["oracle"].setdefault("latent", []).append(float((z_o - z_s).abs().mean()))
                # VAE reconstruction of held-out oracle frames, evenly spaced through the clip.
                idx = torch.linspace(0, oracle.shape[0] - 1, min(settings.eval.quality_frames, oracle.shape[0]))
                x = oracle[idx.round().long()].float().to(device) / 255.0
                with torch.no_grad():
                    recon = models.vae.decode(models.vae.encode(x)[0]).clamp(0, 1).float().cpu()
                psnrs.append(psnr(x.cpu(), recon))
                ssims.append(ssim(x.cpu(), recon))
            per_clip.append({"seed": int(clip["seed"]), "tempo": clip["meta"]["tempo"], "rows": clip_rows})
            bar.update(task, advance=1, info=f"oracle AV-Align {clip_rows['oracle']['av_align']:.2f}")

    names = [n for n in ROW_KEYS if rows[n]]
    summary = {ROW_KEYS[n]: {key: nanmean([r[key] for r in rows[n]]) for key in rows[n][0]} for n in names}
    gap_out: dict[str, dict[str, float]] = {}
    for who, base, other_row, shift_row in (
        ("model", "model", "model_other_audio", "model_half_beat_shift"),
        ("oracle", "oracle", "oracle_other_audio", "oracle_half_beat_shift"),
    ):
        if base not in summary:
            continue
        gap_out[who] = {
            "av_align_vs_other_audio": summary[base]["av_align"] - summary[other_row]["av_align"],
            "av_align_vs_half_beat_shift": summary[base]["av_align"] - summary[shift_row]["av_align"],
            **{f"{kind}_difference": nanmean(vals) for kind, vals in gaps[who].items()},
        }
    oracle_av = summary["oracle"]["av_align"]
    result = {
        "mode": "heldout",
        "clips": k,
        "clip_seconds": settings.eval.clip_seconds,
        "seeds": [int(c["seed"]) for c in clips[:k]],
        "fps": fps,
        "size": [settings.video.width, settings.video.height],
        "strict": strict,
        "peak_threshold": 0.0 if strict else settings.eval.peak_threshold,
        "rows": summary,
        "ratio_to_oracle": {
            name: (summary[name]["av_align"] / oracle_av if oracle_av > 0 else math.nan) for name in summary
        },
        "gaps": gap_out,
        "quality": {"vae_psnr_db": nanmean(psnrs), "vae_ssim": nanmean(ssims)} if models is not None else {},
        "per_clip": per_clip,
        "seconds": time.perf_counter() - t_start,
    }
    return result, plot_panels


def print_heldout(result: dict) -> None:
    """Print the held-out comparison table and the shuffle-gap/quality table."""
    title = (
        f"sync on {result['clips']} held-out clips of {result['clip_seconds']:g} s "
        f"({'strict peaks' if result['strict'] else 'peak threshold ' + format(result['peak_threshold'], 'g')})"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("video · audio", style="bold")
    table.add_column("AV-Align", justify="right")
    table.add_column("× oracle", justify="right")
    for _, header, _ in COLUMNS:
        table.add_column(header, justify="right")
    table.add_column("peaks V/A", justify="right")
    for name, key in ROW_KEYS.items():
        row = result["rows"].get(key)
        if row is None:
            continue
        cells = [_fmt(row["av_align"]), _fmt(result["ratio_to_oracle"].get(key), "{:.2f}")]
        cells += [_fmt(row[col], fmt) for col, _, fmt in COLUMNS]
        cells.append(f"{row['video_peaks']:.1f}/{row['audio_peaks']:.1f}")
        table.add_row(name, *cells)
    console.print(table)

    gaps = Table(title="shuffle gap (correct minus mismatched) and quality", title_justify="left")
    gaps.add_column("", style="bold")
    for who in result["gaps"]:
        gaps.add_column(who, justify="right")
    labels = (
        ("av_align_vs_other_audio", "AV-Align gap · other clip's audio", "{:+.3f}"),
        ("av_align_vs_half_beat_shift", "AV-Align gap · ½-beat shift", "{:+.3f}"),
        ("pixel_difference", "pixel difference · other audio", "{:.2%}"),
        ("latent_difference", "latent difference (σ units) · other audio", "{:.3f}"),
    )
    for key, label, fmt in labels:
        gaps.add_row(label, *[_fmt(result["gaps"][who].get(key), fmt) for who in result["gaps"]])
    q = result["quality"]
    if q:
        gaps.add_row("VAE PSNR (dB) on oracle frames", _fmt(q["vae_psnr_db"], "{:.2f}"), "")
        gaps.add_row("VAE SSIM on oracle frames", _fmt(q["vae_ssim"]), "")
    console.print(gaps)


# --------------------------------------------------------------------------------------------- command
def run_eval(
    settings: Settings,
    video: Path | None = None,
    audio: Path | None = None,
    json_out: Path | None = None,
    plot: Path | None = None,
    overwrite: bool = False,
) -> dict:
    """`synesthete eval`: score ``video`` (with its own track or ``audio``), or the checkpoints on held-out clips."""
    for out in (json_out, plot):
        if out is not None:
            check_output(Path(out), overwrite)
    if video is None and audio is not None:
        raise InputError("--audio only applies to --video: pass the video to score with --video")

    if video is not None:
        result, analysis = score_video(settings, Path(video), audio)
        for note in result["notes"]:
            err_console.print(f"[yellow]note:[/yellow] {note}")
        print_video(result)
        panels = [(Path(video).name, analysis)]
    else:
        from synesthete.checkpoint import load_models
        from synesthete.device import resolve_device

        device = resolve_device(settings.device)
        models = load_models(settings, settings.paths.checkpoints, device)
        result, found = evaluate_heldout(settings, models=models, device=device)
        result["checkpoints"] = str(settings.paths.checkpoints)
        print_heldout(result)
        panels = [(f"{name} (held-out clip 0)", found[name]) for name in (MODEL, ORACLE) if name in found]

    if json_out is not None:
        write_json(Path(json_out), result)
        console.print(f"wrote {json_out}")
    if plot is not None:
        from synesthete.metrics.plot import plot_sync

        plot_sync(Path(plot), panels)
        console.print(f"wrote {plot}")
    return result
