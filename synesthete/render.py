"""Song -> features -> windows of latents -> frames -> mp4, streamed so memory stays flat with song length.

The data path:
1. Decode the song chunk by chunk at the model's rate, mono, and compute the frame-aligned features
   (48 bytes per video frame are kept: 1 MB for a 10-minute song).
2. Generate latents window by window, in one style (a set of visualizer families) for the whole song: each
   window of ``diffusion.window`` frames is denoised jointly, and continues from the previous window's last
   ``render.overlap`` latents, given as clean context, so windows join without seams or jumps.
3. Decode each window's new latents with the VAE and stream them, with the original audio (decoded chunk
   by chunk at its own rate and channels), into an H.264 + AAC mp4 written to a temporary file and renamed
   at the end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from synesthete.audio.features import FeatureExtractor
from synesthete.console import err_console, make_progress
from synesthete.device import resolve_device
from synesthete.errors import InputError, OutputError
from synesthete.settings import Settings

EXEMPLAR_SEED = 20240917  # the fixed synthetic clip that drives the style exemplar
EXEMPLAR_SECONDS = 1.0
AAC_RATES = (44100, 48000)  # native rates kept as they are; anything else is resampled for the AAC track
FEATURE_MARGIN_FRAMES = 3  # extra frames of audio on each side of a chunk so edge features are exact


# --------------------------------------------------------------------------------------------- features
def song_features(
    decode: Callable[[float, float], torch.Tensor], start: float, duration: float, settings: Settings
) -> torch.Tensor:
    """Frame-aligned features [T, F] of the excerpt, computed chunk by chunk.

    ``decode(t0, t1)`` returns mono audio [N] at ``settings.audio.sample_rate`` for song time [t0, t1),
    clipped to the song; times before ``start`` or after the end are treated as silence.
    """
    fps = settings.video.fps
    sr = settings.audio.sample_rate
    extractor = FeatureExtractor(settings.audio, fps)
    total = max(1, round(duration * fps))
    chunk_frames = max(1, round(settings.render.chunk_seconds * fps))
    margin = FEATURE_MARGIN_FRAMES
    out = torch.zeros(total, extractor.num_features)
    for f0 in range(0, total, chunk_frames):
        f1 = min(total, f0 + chunk_frames)
        a0, a1 = f0 - margin, f1 + margin  # frames, relative to the excerpt start
        t0, t1 = start + a0 / fps, start + a1 / fps
        wave = decode(max(t0, start), min(t1, start + duration))
        # Place the decoded audio on the exact sample grid of [t0, t1): zero (silence) outside the excerpt.
        n = round((a1 - a0) * sr / fps)
        offset = round((max(t0, start) - t0) * sr)
        grid = torch.zeros(n)
        take = min(wave.shape[-1], n - offset)
        if take > 0:
            grid[offset : offset + take] = wave[:take]
        feats = extractor(grid, num_frames=a1 - a0)  # [a1 - a0, F]
        out[f0:f1] = feats[margin : margin + (f1 - f0)]
    return out


# --------------------------------------------------------------------------------------------- latents
@torch.no_grad()
def style_exemplar(models: Any, settings: Settings, style: list[str], seed: int) -> torch.Tensor:
    """Latents [k, C, h, w] (scaled) of k frames in ``style``, the first window's clean context.

    The style's visualizers, with parameters drawn from ``seed`` (so the seed picks a look: colours, shapes,
    counts), are driven by a fixed synthetic clip with drums, never by the song, and the last k =
    ``render.overlap`` frames are encoded by the VAE. The network was trained to continue clean frames,
    so it starts the song in this look and carries it on; the exemplar frames themselves are never shown.
    """
    import random

    from synesthete.audio.synth import synthesize
    from synesthete.data import feature_extractor
    from synesthete.visual import render_frames
    from synesthete.visual.compose import params_for

    k = max(1, min(settings.render.overlap, settings.diffusion.window - 1))
    device = next(models.dit.parameters()).device
    params = params_for(style, random.Random(f"synesthete-exemplar:{seed}"), settings)
    wave, _ = synthesize(EXEMPLAR_SEED, settings, duration=EXEMPLAR_SECONDS, drums=True, silence=False,
                         dropout=False)  # [N]
    frames = render_frames(feature_extractor(settings)(wave), wave, params, settings)[-k:]  # [k, 3, H, W]
    mu, _ = models.vae.encode(frames.to(device))
    c = mu.shape[1]
    return (mu - models.latent_mean.to(device).view(1, c, 1, 1)) / models.latent_std.to(device).view(1, c, 1, 1)


@torch.no_grad()
def iter_windows(
    models: Any,
    features: torch.Tensor,
    settings: Settings,
    generator: torch.Generator | None = None,
    style: list[str] | None = None,
    exemplar: torch.Tensor | None = None,
) -> Iterator[torch.Tensor]:
    """Yield decoded frame blocks [n, 3, H, W] in [0, 1] covering all T frames of ``features`` [T, F], in order.

    Windows of W frames advance by W - k (k = ``render.overlap``): each window after the first continues
    from the previous window's last k latents, given as clean context that is never denoised again, so
    consecutive windows join without a seam. ``style`` (visualizer families) holds for every window. With
    ``exemplar`` latents [k, C, h, w] (``style_exemplar``) the first window continues them too: they stand
    for the k frames before the song starts.
    """
    from synesthete.sampling import sample
    from synesthete.styles import style_vector

    d = settings.diffusion
    window, ctx = d.window, d.audio_context
    overlap = min(settings.render.overlap, window - 1)
    stride = window - overlap
    device = next(models.dit.parameters()).device
    total = features.shape[0]
    # Pad with silence: ctx frames before, a full window + ctx after (the last window may run past the end).
    lead = overlap if exemplar is not None and overlap > 0 else 0  # exemplar frames before the song's frame 0
    padded = F.pad(features.to(device), (0, 0, ctx + lead, window + ctx))  # [lead + T + W + 2ctx, F]
    c, h = settings.vae.latent_channels, settings.latent_size
    shape = (1, window, c, h, h)
    mean = models.latent_mean.to(device).view(1, c, 1, 1)
    std = models.latent_std.to(device).view(1, c, 1, 1)
    style_vec = style_vector(style).unsqueeze(0) if style else None  # [1, S]

    prev: torch.Tensor | None = None  # [1, W, C, h, w] scaled latents of the previous window
    if lead:
        prev = torch.zeros(shape, device=device)
        prev[0, stride:] = exemplar[-overlap:].to(device)  # the first window continues the exemplar
    emitted = 0
    start = 0
    while emitted < total:
        feats = padded[start : start + window + 2 * ctx].unsqueeze(0)  # [1, W + 2ctx, F]
        context = context_mask = None
        if prev is not None and overlap > 0:
            context = torch.zeros(shape, device=device)
            context[:, :overlap] = prev[:, stride:]
            context_mask = torch.zeros(1, window, dtype=torch.bool, device=device)
            context_mask[:, :overlap] = True
        latents = sample(
            models.dit, feats, shape, settings, generator=generator, style=style_vec,
            context=context, context_mask=context_mask,
        )  # [1, W, C, h, w]
        first_new = 0 if prev is None else overlap
        n_new = min(window - first_new, total - emitted)
        z = latents[0, first_new : first_new + n_new] * std + mean  # [n, C, h, w]
        frames = models.vae.decode(z).clamp(0, 1)  # [n, 3, H, W]
        yield frames.float().cpu()
        emitted += n_new
        prev = latents
        start += stride  # window k starts at frame k * stride


def _generator(settings: Settings, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device if device.type != "mps" else "cpu")
    gen.manual_seed(settings.render.seed)
    return gen


def generate_frames(
    models: Any,
    wave: torch.Tensor,
    settings: Settings,
    generator: torch.Generator | None = None,
    progress: bool = False,
    style: list[str] | None = None,
) -> torch.Tensor:
    """Render mono audio [N] at ``settings.audio.sample_rate`` to frames [T, 3, H, W] in [0, 1], in memory."""
    fps = settings.video.fps
    extractor = FeatureExtractor(settings.audio, fps)
    features = extractor(wave.float().cpu())  # [T, F]
    device = next(models.dit.parameters()).device
    if generator is None:
        generator = _generator(settings, device)
    exemplar = None
    if style and settings.render.exemplar:
        exemplar = style_exemplar(models, settings, style, settings.render.seed)
    blocks = []
    with make_progress(disable=not progress) as bar:
        task = bar.add_task("generating", total=features.shape[0], info="")
        for block in iter_windows(models, features, settings, generator, style, exemplar):
            blocks.append(block)
            bar.advance(task, block.shape[0])
    if not blocks:
        return torch.zeros(0, 3, settings.video.height, settings.video.width)
    return torch.cat(blocks)


# --------------------------------------------------------------------------------------------- render
def render_song(
    settings: Settings,
    song: str | Path,
    out: str | Path,
    start: float = 0.0,
    duration: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Render ``song`` to ``out`` (mp4 with the song's audio), streaming; returns a summary for the CLI."""
    from synesthete.checkpoint import load_models
    from synesthete.media import VideoWriter, audio_info, check_output, decodable_duration, load_audio

    song, out = Path(song), Path(out)
    if out.suffix.lower() != ".mp4":
        raise OutputError(f"{out}: the output must be an .mp4 file")
    if not math.isfinite(start) or start < 0:
        raise InputError(f"--start must be a finite number >= 0 (got {start})")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise InputError(f"--duration must be a finite number > 0 (got {duration})")
    info = audio_info(song)
    if info.duration <= 0:
        raise InputError(f"{song} has no audio samples (zero-length)")
    decodable = decodable_duration(song, info.duration)
    if decodable < info.duration - 0.25:  # a truncated file: its header promises more than it holds
        if decodable <= 0:
            raise InputError(f"{song} has no decodable audio (the file is truncated or damaged)")
        err_console.print(
            f"[yellow]warning:[/yellow] {song} is truncated: its header says {info.duration:.2f}s but only "
            f"{decodable:.2f}s decode; rendering the {decodable:.2f}s that exist", soft_wrap=True,
        )
        info.duration = decodable
    if start >= info.duration:
        raise InputError(f"--start {start:g}s is past the end of {song} ({info.duration:.2f}s)")
    seg = info.duration - start if duration is None else min(duration, info.duration - start)
    fps = settings.video.fps
    total = max(1, round(seg * fps))
    check_output(out, overwrite, inputs=(song,))
    from synesthete.styles import resolve_style, style_name

    style = resolve_style(settings.render.style, settings.render.seed)  # validated before any heavy work

    device = resolve_device(settings.device)
    models = load_models(settings, settings.paths.checkpoints, device)

    sr = settings.audio.sample_rate

    def decode_model_audio(t0: float, t1: float) -> torch.Tensor:
        if t1 <= t0:
            return torch.zeros(0)
        wave, _ = load_audio(song, sample_rate=sr, mono=True, start=t0, duration=t1 - t0)
        return wave[0]

    t_start = time.perf_counter()
    features = song_features(decode_model_audio, start, seg, settings)  # [T, F]
    if features.shape[0] != total:
        raise RuntimeError(f"feature frames {features.shape[0]} != {total}")

    # The output audio: the song's own channels (stereo at most) at its own rate if AAC-friendly.
    out_channels = min(info.num_channels, 2)
    out_rate = info.sample_rate if info.sample_rate in AAC_RATES else settings.render.audio_sample_rate
    size = settings.render.size or settings.video.width
    if size % 2:
        raise OutputError(f"--size {size} must be even for H.264 yuv420p")
    out_h = settings.video.height * size // settings.video.width if settings.render.size else settings.video.height
    out_h += out_h % 2

    generator = _generator(settings, device)
    exemplar = style_exemplar(models, settings, style, settings.render.seed) if settings.render.exemplar else None
    chunk_frames = max(1, round(settings.render.chunk_seconds * fps))
    audio_written_frames = 0  # audio is muxed up to this frame boundary
    samples_expected = 0
    frames_done = 0

    def write_audio_until(writer: VideoWriter, frame: int) -> None:
        nonlocal audio_written_frames, samples_expected
        while audio_written_frames < frame:
            f1 = min(frame, audio_written_frames + chunk_frames)
            t0, t1 = start + audio_written_frames / fps, start + min(f1 / fps, seg)
            target = round((t1 - start) * out_rate)
            need = target - samples_expected
            if need > 0:
                # More than stereo (5.1 ...): FFmpeg's standard downmix to stereo, for players.
                wave, _ = load_audio(
                    song, sample_rate=out_rate, start=t0, duration=t1 - t0, num_channels=out_channels
                )
                wave = wave[:, :need]
                if wave.shape[-1] < need:
                    wave = F.pad(wave, (0, need - wave.shape[-1]))
                writer.add_audio(wave)
                samples_expected = target
            audio_written_frames = f1

    with make_progress(disable=not progress) as bar:
        task = bar.add_task("rendering", total=total, info="")
        with VideoWriter(
            out, width=size, height=out_h, fps=fps, audio_sample_rate=out_rate, audio_channels=out_channels,
            crf=settings.render.crf, preset=settings.render.preset,
        ) as writer:
            for block in iter_windows(models, features, settings, generator, style, exemplar):
                if settings.render.size:
                    block = F.interpolate(block, size=(out_h, size), mode="bilinear", align_corners=False)
                writer.add_frames(block)
                frames_done += block.shape[0]
                write_audio_until(writer, frames_done)
                elapsed = time.perf_counter() - t_start
                bar.update(task, completed=frames_done, info=f"{frames_done / max(elapsed, 1e-9):.1f} frames/s")
            write_audio_until(writer, total)
    wall = time.perf_counter() - t_start
    return {
        "output": str(out),
        "duration (s)": round(seg, 3),
        "frames": frames_done,
        "fps": fps,
        "size": f"{size}x{out_h}",
        "wall time (s)": round(wall, 2),
        "real-time factor": round(wall / seg, 3),
        "style": style_name(style),
        "seed": settings.render.seed,
        "sampler": f"{settings.diffusion.sampler}, {settings.diffusion.sample_steps} steps",
        "guidance (audio, style)": f"{settings.diffusion.guidance:g}, {settings.diffusion.style_guidance:g}",
        "checkpoints": str(settings.paths.checkpoints),
        "device": str(device),
    }

