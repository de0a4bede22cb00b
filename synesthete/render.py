"""Song -> features -> windows of latents -> frames -> mp4, streamed so memory stays flat with song length.

The data path:
1. Decode the excerpt once, streamed (``media.AudioReader``: FFmpeg seeks to ``--start``), at the model's
   rate, mono, and compute the frame-aligned features chunk by chunk (48 bytes per video frame are kept:
   1 MB for a 10-minute song).
2. Generate latents window by window, in one style (a set of visualizer families) for the whole song: each
   window of ``diffusion.window`` frames is denoised jointly, and continues from the previous window's last
   ``render.overlap`` latents, given as clean context, so windows join without seams or jumps.
3. Decode each window's new latents with the VAE and stream them, with the original audio (a second
   streamed decode at its own rate and channels), into an H.264 + AAC mp4 written to a temporary file and
   renamed at the end.

CPU threads are chosen for a shared machine (``synesthete.threads``): OpenMP workers sleep instead of
spinning when they wait, and the render runs on the cores nobody else is using, re-checked as it goes.
"""

from __future__ import annotations

from synesthete import threads

threads.prepare_openmp()  # before torch loads its OpenMP runtime: only then is the wait policy read

import math  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Protocol  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from synesthete.audio.features import FeatureExtractor  # noqa: E402
from synesthete.console import err_console, make_progress  # noqa: E402
from synesthete.device import autocast, native_bf16, resolve_device  # noqa: E402
from synesthete.errors import InputError, OutputError  # noqa: E402
from synesthete.settings import Settings  # noqa: E402

EXEMPLAR_SEED = 20240917  # the fixed synthetic clip that drives the style exemplar
EXEMPLAR_SECONDS = 1.0
AAC_RATES = (44100, 48000)  # native rates kept as they are; anything else is resampled for the AAC track
FEATURE_MARGIN_FRAMES = 3  # extra frames of audio on each side of a chunk so edge features are exact


# --------------------------------------------------------------------------------------------- features
class SampleSource(Protocol):
    """What ``song_features`` reads: ``read(n)`` gives the next n samples [1, n] (fewer at the end)."""

    def read(self, n: int) -> torch.Tensor: ...


def song_features(source: SampleSource, duration: float, settings: Settings) -> torch.Tensor:
    """Frame-aligned features [T, F] of an excerpt of ``duration`` seconds, computed chunk by chunk.

    ``source`` streams the excerpt's mono audio at ``settings.audio.sample_rate`` from its first sample on
    (``media.AudioReader``). Each chunk of ``render.chunk_seconds`` is analysed with ``FEATURE_MARGIN_FRAMES``
    of audio on each side, so features at chunk edges equal those of a one-shot analysis; audio before the
    excerpt and after its end counts as silence. Only a chunk and its margins are held at a time.
    """
    fps = settings.video.fps
    sr = settings.audio.sample_rate
    extractor = FeatureExtractor(settings.audio, fps)
    total = max(1, round(duration * fps))
    end = round(duration * sr)  # samples in the excerpt
    chunk_frames = max(1, round(settings.render.chunk_seconds * fps))
    margin = FEATURE_MARGIN_FRAMES
    out = torch.zeros(total, extractor.num_features)

    def sample_at(frame: int) -> int:  # excerpt sample where frame boundary ``frame`` falls
        return round(frame * sr / fps)

    buffer, buffer_start, exhausted = torch.zeros(0), 0, False  # buffer holds samples [buffer_start, ...)
    for f0 in range(0, total, chunk_frames):
        f1 = min(total, f0 + chunk_frames)
        s0, s1 = sample_at(f0 - margin), sample_at(f1 + margin)  # this chunk's audio, margins included
        want = min(s1, end)
        while not exhausted and buffer_start + buffer.shape[-1] < want:
            block = source.read(want - buffer_start - buffer.shape[-1])
            if block.shape[-1] == 0:
                exhausted = True  # the file ended early (truncated): the rest is silence
                break
            buffer = torch.cat([buffer, block.reshape(-1).float()])
        grid = torch.zeros(s1 - s0)  # silence outside the excerpt
        lo, hi = max(s0, buffer_start), min(s1, buffer_start + buffer.shape[-1])
        if hi > lo:
            grid[lo - s0 : hi - s0] = buffer[lo - buffer_start : hi - buffer_start]
        feats = extractor(grid, num_frames=(f1 + margin) - (f0 - margin))  # [frames, F]
        out[f0:f1] = feats[margin : margin + (f1 - f0)]
        keep = max(buffer_start, sample_at(f1 - margin))  # the next chunk starts its margin here
        buffer, buffer_start = buffer[keep - buffer_start :], keep
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
    timings: dict[str, float] | None = None,
) -> Iterator[torch.Tensor]:
    """Yield decoded frame blocks [n, 3, H, W] in [0, 1] covering all T frames of ``features`` [T, F], in order.

    Windows of W frames advance by W - k (k = ``render.overlap``): each window after the first continues
    from the previous window's last k latents, given as clean context that is never denoised again, so
    consecutive windows join without a seam. ``style`` (visualizer families) holds for every window. With
    ``exemplar`` latents [k, C, h, w] (``style_exemplar``) the first window continues them too: they stand
    for the k frames before the song starts. ``timings`` (if given) accumulates the seconds spent in the
    network ("network") and in the VAE decoder ("vae_decode"). Both run under bf16 autocast where the
    device has native bf16 and ``render.amp`` is on (``device.autocast``); latents and frames come out float32.
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
        t0 = time.perf_counter()
        with autocast(device, settings.render.amp):
            latents = sample(
                models.dit, feats, shape, settings.diffusion, generator=generator, style=style_vec,
                context=context, context_mask=context_mask,
            ).float()  # [1, W, C, h, w]
        first_new = 0 if prev is None else overlap
        n_new = min(window - first_new, total - emitted)
        z = latents[0, first_new : first_new + n_new] * std + mean  # [n, C, h, w]
        t1 = time.perf_counter()
        with autocast(device, settings.render.amp):
            frames = models.vae.decode(z).float().clamp(0, 1).cpu()  # [n, 3, H, W]
        if timings is not None:
            timings["network"] = timings.get("network", 0.0) + t1 - t0
            timings["vae_decode"] = timings.get("vae_decode", 0.0) + time.perf_counter() - t1
        yield frames
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
    tuner = threads.ThreadTuner() if device.type == "cpu" else None
    try:
        with make_progress(disable=not progress) as bar:
            task = bar.add_task("generating", total=features.shape[0], info="")
            windows = iter_windows(models, features, settings, generator, style, exemplar)
            while True:
                if tuner is not None:
                    tuner.before()
                block = next(windows, None)
                if tuner is not None:
                    tuner.after()
                if block is None:
                    break
                blocks.append(block)
                bar.advance(task, block.shape[0])
    finally:
        if tuner is not None:
            tuner.restore()
    if not blocks:
        return torch.zeros(0, 3, settings.video.height, settings.video.width)
    return torch.cat(blocks)


# --------------------------------------------------------------------------------------------- render
def _clock(seconds: float) -> str:
    """Seconds as m:ss (or h:mm:ss)."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _progress_bar(disable: bool):
    """The render's progress line: its figures are computed here, from the start of the render."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    bar = make_progress(disable=disable)  # the shared console and the --quiet switch
    return Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), console=bar.console, disable=bar.disable, transient=False,
    )


class _Pace:
    """Progress figures from the start of the render: elapsed time, frames/s of generation, and the ETA.

    The rate is measured over all frames generated so far, from the moment generation began (reading the
    audio and loading the models come before it and are counted in the elapsed time, not in the rate).
    """

    def __init__(self, t_start: float, total: int, seconds: float) -> None:
        self.t_start, self.total, self.seconds = t_start, total, seconds
        self.t_gen: float | None = None

    def begin(self) -> None:
        self.t_gen = time.perf_counter()

    def line(self, done: int) -> str:
        now = time.perf_counter()
        elapsed = now - self.t_start
        gen = now - (self.t_gen or now)
        if done <= 0 or gen <= 0:
            return f"{_clock(elapsed)} elapsed"
        rate = done / gen
        eta = (self.total - done) / rate
        rtf = elapsed / (done / self.total * self.seconds)
        return f"{rate:.1f} frames/s · RTF {rtf:.2f} · {_clock(elapsed)} · ETA {_clock(eta)}"


def render_song(
    settings: Settings,
    song: str | Path,
    out: str | Path,
    start: float = 0.0,
    duration: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
    stats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Render ``song`` to ``out`` (mp4 with the song's audio), streaming; returns a summary for the CLI.

    The summary's "real-time factor" is the wall time from the start of this call (checking the song and
    loading the models included) over the excerpt's length; "time split (s)" says where it went. ``stats``,
    if given, receives the same figures as numbers (benchmarks).
    """
    t_start = time.perf_counter()
    from synesthete.media import audio_info, check_output, decodable_duration

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
    from synesthete.styles import resolve_style

    style = resolve_style(settings.render.style, settings.render.seed)  # validated before any heavy work
    if (settings.render.size or settings.video.width) % 2:
        raise OutputError(f"--size {settings.render.size} must be even for H.264 yuv420p")

    device = resolve_device(settings.device)
    tuner = threads.ThreadTuner() if device.type == "cpu" else None
    try:
        return _render(settings, song, out, start, seg, total, info, style, device, tuner, t_start, progress, stats)
    finally:
        if tuner is not None:
            tuner.restore()


def _render(settings: Settings, song: Path, out: Path, start: float, seg: float, total: int, info: Any,
            style: list[str], device: torch.device, tuner: threads.ThreadTuner | None, t_start: float,
            progress: bool, stats: dict[str, Any] | None) -> dict[str, Any]:
    """The streaming part of ``render_song``, once the inputs are checked."""
    from synesthete.checkpoint import load_models
    from synesthete.media import AudioReader, VideoWriter
    from synesthete.styles import style_name

    fps = settings.video.fps
    size = settings.render.size or settings.video.width
    out_h = settings.video.height * size // settings.video.width if settings.render.size else settings.video.height
    out_h += out_h % 2
    models = load_models(settings, settings.paths.checkpoints, device)
    timings = {"setup": time.perf_counter() - t_start, "features": 0.0, "network": 0.0, "vae_decode": 0.0,
               "encode_mux": 0.0}
    pace = _Pace(t_start, total, seg)
    opened = {"stream_index": info.stream_index, "source_rate": info.sample_rate,
              "chunk_seconds": settings.render.chunk_seconds}

    with _progress_bar(disable=not progress) as bar:
        task = bar.add_task("audio", total=total, info="reading the song")
        t0 = time.perf_counter()
        with AudioReader(song, settings.audio.sample_rate, 1, start=start, duration=seg, **opened) as reader:
            features = song_features(reader, seg, settings)  # [T, F]
        timings["features"] = time.perf_counter() - t0
        if features.shape[0] != total:
            raise RuntimeError(f"feature frames {features.shape[0]} != {total}")

        # The output audio: the song's own channels (stereo at most) at its own rate if AAC-friendly.
        out_channels = min(info.num_channels, 2)
        out_rate = info.sample_rate if info.sample_rate in AAC_RATES else settings.render.audio_sample_rate
        generator = _generator(settings, device)
        exemplar = style_exemplar(models, settings, style, settings.render.seed) if settings.render.exemplar else None
        samples_written = 0
        frames_done = 0
        bar.update(task, description="rendering", completed=0, info=pace.line(0))
        pace.begin()
        with AudioReader(song, out_rate, out_channels, start=start, duration=seg, **opened) as mux_audio, VideoWriter(
            out, width=size, height=out_h, fps=fps, audio_sample_rate=out_rate, audio_channels=out_channels,
            crf=settings.render.crf, preset=settings.render.preset,
        ) as writer:

            def mux_until(frame: int) -> None:
                """Interleave the song's audio up to video frame ``frame`` (silence where the file ends early)."""
                nonlocal samples_written
                need = min(round(frame / fps * out_rate), round(seg * out_rate)) - samples_written
                if need <= 0:
                    return
                wave = mux_audio.read(need)
                if wave.shape[-1] < need:
                    wave = F.pad(wave, (0, need - wave.shape[-1]))
                writer.add_audio(wave)
                samples_written += need

            blocks = iter_windows(models, features, settings, generator, style, exemplar, timings=timings)
            while True:
                if tuner is not None:
                    tuner.before()
                block = next(blocks, None)
                if tuner is not None:
                    tuner.after()
                if block is None:
                    break
                t0 = time.perf_counter()
                if settings.render.size:
                    block = F.interpolate(block, size=(out_h, size), mode="bilinear", align_corners=False)
                writer.add_frames(block)
                frames_done += block.shape[0]
                mux_until(frames_done)
                timings["encode_mux"] += time.perf_counter() - t0
                bar.update(task, completed=frames_done, info=pace.line(frames_done))
            t0 = time.perf_counter()
            mux_until(total)
        timings["encode_mux"] += time.perf_counter() - t0  # the encoder's flush happens as the writer closes
    wall = time.perf_counter() - t_start
    split = {"setup": timings["setup"], "features": timings["features"], "network": timings["network"],
             "VAE decode": timings["vae_decode"], "encode+mux": timings["encode_mux"]}
    split["other"] = max(0.0, wall - sum(split.values()))
    if stats is not None:
        stats.update({"wall_s": wall, "seconds": seg, "frames": frames_done, "rtf": wall / seg,
                      "split_s": dict(split), "threads": tuner.describe() if tuner is not None else None})
    return {
        "output": str(out),
        "duration (s)": round(seg, 3),
        "start (s)": round(start, 3),
        "frames": frames_done,
        "fps": fps,
        "size": f"{size}x{out_h}",
        "wall time (s)": round(wall, 2),
        "real-time factor": round(wall / seg, 3),
        "time split (s)": ", ".join(f"{k} {v:.1f}" for k, v in split.items()),
        "style": style_name(style),
        "seed": settings.render.seed,
        "sampler": f"{settings.diffusion.sampler}, {settings.diffusion.sample_steps} steps",
        "guidance (audio, style)": f"{settings.diffusion.guidance:g}, {settings.diffusion.style_guidance:g}",
        "checkpoints": str(settings.paths.checkpoints),
        "device": str(device) + (", bf16" if settings.render.amp and native_bf16(device) else ", float32")
        + (f", {tuner.describe()}" if tuner is not None else ""),
    }
