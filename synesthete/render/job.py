"""A render job: plan it (``plan_render``: every check that needs no network), then run it (``run_render``).

A run computes the excerpt's features (``song_features``, streamed), analyses the song's sections when
``render.sections`` is on, gives each its look (``render.looks``), samples the windows (``render.windows``)
and writes the frames (``render.output``), with a progress line (``render.progress``); it gives a
``RenderResult``. ``render_song`` plans, loads the models and runs, for one song; ``generate_frames``
renders audio in memory, for eval and training previews.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from synesthete import threads
from synesthete.audio.analysis import Section, SongAnalysis, analyse_file
from synesthete.audio.features import FeatureExtractor, at_level, audible_frames
from synesthete.checkpoint import Models, load_models
from synesthete.console import err_console, make_progress
from synesthete.device import precision, resolve_device
from synesthete.errors import InputError, OutputError
from synesthete.files import check_mp4, check_output
from synesthete.media import audio_info, decodable_duration
from synesthete.render.looks import render_seed, section_looks, section_plan, song_seed, style_exemplar
from synesthete.render.output import MemorySink, Mp4Sink, check_memory, output_size
from synesthete.render.progress import Pace, RenderProgress, progress_bar
from synesthete.render.records import RenderJob, RenderResult, RenderSection
from synesthete.render.windows import Look, iter_windows, network_device, noise_generator, song_layout
from synesthete.sampling import guidance_distilled, recipe
from synesthete.settings import Settings
from synesthete.styles import resolve_style, style_name

FEATURE_MARGIN_FRAMES = 3  # extra frames of audio on each side of a chunk so edge features are exact


class SampleSource(Protocol):
    """What ``song_features`` reads: ``read(n)`` gives the next n samples [1, n] (fewer at the end)."""

    def read(self, n: int) -> torch.Tensor: ...


def _tuner(models: Models, device: torch.device) -> threads.ThreadTuner | None:
    """The thread tuner of a render on the CPU whose network runs in PyTorch (ONNX Runtime keeps its own
    threads, set when its session is made), else None."""
    return threads.ThreadTuner() if device.type == "cpu" and models.engine == "eager" else None


def song_features(source: SampleSource, duration: float, settings: Settings, gain: float = 1.0) -> torch.Tensor:
    """Frame-aligned features [T, F] of an excerpt of ``duration`` seconds, computed chunk by chunk.

    ``source`` streams the excerpt's mono audio at ``settings.audio.sample_rate`` from its first sample on
    (``media.AudioReader``), scaled by ``gain``. Each chunk of ``render.chunk_seconds`` is analysed with
    ``FEATURE_MARGIN_FRAMES`` of audio on each side, so features at chunk edges equal those of a one-shot
    analysis; audio before the excerpt and after its end counts as silence. Only a chunk and its margins are
    held at a time.
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
            buffer = torch.cat([buffer, block.reshape(-1).float() * gain])
        grid = torch.zeros(s1 - s0)  # silence outside the excerpt
        lo, hi = max(s0, buffer_start), min(s1, buffer_start + buffer.shape[-1])
        if hi > lo:
            grid[lo - s0 : hi - s0] = buffer[lo - buffer_start : hi - buffer_start]
        feats = extractor(grid, num_frames=(f1 + margin) - (f0 - margin))  # [frames, F]
        out[f0:f1] = feats[margin : margin + (f1 - f0)]
        keep = max(buffer_start, sample_at(f1 - margin))  # the next chunk starts its margin here
        buffer, buffer_start = buffer[keep - buffer_start :], keep
    return out


def plan_render(
    settings: Settings,
    song: str | Path,
    out: str | Path | None = None,
    start: float = 0.0,
    duration: float | None = None,
    overwrite: bool = False,
    options: dict[str, Any] | None = None,
    overwrite_flag: str = "overwrite=True",
) -> RenderJob:
    """Check everything about a render that needs no model: the excerpt, the song, the output, the style.

    So a bad option or file fails in one line before any heavy work. ``out`` None renders to memory (no
    output checks, but the frames must fit in ``render.memory_gb``: ``check_memory``). A truncated song (its
    header promises more than decodes) is rendered as far as it decodes, with a warning. ``options``
    (settings sections) are recorded in the job for ``run_render``. ``overwrite_flag`` is what the error
    for an existing output tells the caller to pass (the CLI's ``--overwrite``, the API's keyword).
    The job's seed is ``render.seed``, or, when that is empty, drawn from a hash of the song file
    (``song_seed``): the style ``auto`` and the looks come from it.
    """
    song = Path(song)
    out = check_mp4(out) if out is not None else None
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
    if out is not None:
        check_output(out, overwrite, inputs=(song,), flag=overwrite_flag)
    seed = settings.render.seed if settings.render.seed is not None else song_seed(song)
    style = resolve_style(settings.render.style, seed)  # validated before any heavy work
    if (settings.render.size or settings.video.width) % 2:
        raise OutputError(f"--size {settings.render.size} must be even for H.264 yuv420p")
    num_frames = max(1, round(seg * settings.video.fps))
    if out is None:
        check_memory(settings, num_frames)
    return RenderJob(song=song, out=out, start=start, seconds=seg, num_frames=num_frames,
                     info=info, style=style, options=dict(options or {}), seed=seed,
                     seed_from_song=settings.render.seed is None)


def run_render(
    models: Models, settings: Settings, job: RenderJob, progress: bool = False, since: float | None = None,
    label: str = "rendering",
) -> RenderResult:
    """Run a planned render with loaded ``models`` and ``settings`` (``Models.fitted`` with the render's
    options): to ``job.out`` as an mp4, streamed, or to memory. Wall time and RTF count from ``since`` (a
    ``time.perf_counter()``; default now), so a caller that checked the song and loaded the models for this
    render alone counts that too. ``label`` names the progress line."""
    t_start = time.perf_counter() if since is None else since
    device = network_device(models)
    tuner = _tuner(models, device)
    try:
        return _run(models, settings, job, device, tuner, t_start, progress, label)
    finally:
        if tuner is not None:
            tuner.restore()


def _run(models: Models, settings: Settings, job: RenderJob, device: torch.device,
         tuner: threads.ThreadTuner | None, t_start: float, progress: bool, label: str) -> RenderResult:
    """The streaming part of ``run_render``: features, then windows of frames into an mp4 or memory."""
    width, height = output_size(settings)
    if job.out is None:
        check_memory(settings, job.num_frames)  # as plan_render did, now at the models' frame size
    timings = {"setup": time.perf_counter() - t_start, "analysis": 0.0, "features": 0.0, "network": 0.0,
               "vae_decode": 0.0, "encode_mux": 0.0}
    pace = Pace(t_start, job.num_frames, job.seconds)
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task("audio", total=job.num_frames, info="reading the song")
        analysis = _analyse(job, settings, timings, lambda info: bar.update(task, info=info))
        features, gain = _features(job, settings, timings)
        generator = noise_generator(job.seed, device)
        plan = (section_plan(analysis, job.start, job.seconds, settings.video.fps, job.num_frames)
                if analysis is not None else [])
        looks = section_looks(models, settings, job, plan, analysis)
        line = RenderProgress(bar, task, pace)
        line.start(label)
        cuts = [frame for frame, _ in plan[1:]]
        layout = song_layout(features, settings, models.dit.config.window, settings.render.exemplar, cuts)
        blocks = iter_windows(models, features, settings, generator, timings=timings, generated=line.generated,
                              tuner=tuner, layout=layout, looks=looks)
        sink = MemorySink(job.num_frames, height, width) if job.out is None else Mp4Sink(job, settings, width, height)
        done = _write(blocks, sink, settings, (width, height), timings, line)
    wall = time.perf_counter() - t_start
    timings["other"] = max(0.0, wall - sum(timings.values()))
    sections = _sections(job, plan, looks)
    styles = list(dict.fromkeys(sec.style for sec in sections)) or [style_name(job.style)]
    d = settings.sampling
    sampler, steps = recipe(d, models.config)
    return RenderResult(
        output=job.out, frames=sink.frames() if isinstance(sink, MemorySink) else None,
        fps=settings.video.fps, num_frames=done, width=width, height=height, start=job.start, duration=job.seconds,
        style=" / ".join(styles), seed=job.seed, sampler=sampler, steps=steps, lanes=layout.lanes,
        guidance=d.guidance, style_guidance=d.style_guidance, guidance_distilled=guidance_distilled(models.dit),
        checkpoints=Path(settings.paths.checkpoints), device=str(device),
        precision=precision(device, settings.render.amp),
        threads=tuner.describe("batches") if tuner is not None else None, timings=timings, wall=wall,
        rtf=wall / job.seconds, seed_from_song=job.seed_from_song, level_gain_db=20 * math.log10(gain),
        tempo=analysis.tempo if analysis is not None else None, sections=sections, cuts=list(layout.cuts),
        engine=models.engine,
    )


def _analyse(job: RenderJob, settings: Settings, timings: dict[str, float],
             say: Callable[[str], None]) -> SongAnalysis | None:
    """The whole song's beats and sections with ``render.sections`` (else None); ``say`` hears how far it got."""
    if not settings.render.sections:
        return None
    t0 = time.perf_counter()
    whole = job.info.duration
    analysis = analyse_file(job.song, progress=lambda sec: say(
        f"analysing the song (beats, sections): {min(sec, whole):.0f} of {whole:.0f} s"))
    timings["analysis"] = time.perf_counter() - t0
    return analysis


def _features(job: RenderJob, settings: Settings, timings: dict[str, float]) -> tuple[torch.Tensor, float]:
    """The excerpt's features [T, F], streamed, at the model's rate, mono, and the gain they were computed at:
    decoded once, and once more, turned down, when the excerpt is louder than ``render.level`` (``at_level``).
    A silent excerpt (no frame above ``eval.silence_db``) is an InputError."""
    t0 = time.perf_counter()

    def analyse(gain: float) -> torch.Tensor:
        with job.audio_reader(settings.audio.sample_rate, 1, settings) as reader:
            return song_features(reader, job.seconds, settings, gain)  # [T, F]

    features, gain = at_level(analyse, settings)
    timings["features"] = time.perf_counter() - t0
    if features.shape[0] != job.num_frames:
        raise RuntimeError(f"feature frames {features.shape[0]} != {job.num_frames}")
    if not bool(audible_frames(features, settings).any()):
        whole = job.start == 0 and job.seconds >= job.info.duration
        where = "" if whole else f" from {job.start:g} s to {job.start + job.seconds:g} s"
        raise InputError(f"{job.song} is silent{where}: no moment is louder than {settings.eval.silence_db:g} dBFS, "
                         "so there is nothing for the picture to follow")
    return features, gain


def _write(blocks: Iterator[torch.Tensor], sink: MemorySink | Mp4Sink, settings: Settings, size: tuple[int, int],
           timings: dict[str, float], line: RenderProgress) -> int:
    """Put the frame blocks into ``sink``, scaled to the output ``size`` (width, height); the frames written.
    Scaling, encoding and muxing, and the sink's close (the rest of the audio, the encoder's flush), count
    as "encode_mux"."""
    width, height = size
    done = 0
    with sink:
        for block in blocks:
            t0 = time.perf_counter()
            if settings.render.size:
                block = F.interpolate(block, size=(height, width), mode="bilinear", align_corners=False)
            sink.add(block)
            done += block.shape[0]
            line.written(done)
            timings["encode_mux"] += time.perf_counter() - t0
        t0 = time.perf_counter()
    timings["encode_mux"] += time.perf_counter() - t0  # the rest of the audio and the encoder's flush
    return done


def _sections(job: RenderJob, plan: list[tuple[int, Section]], looks: list[Look]) -> list[RenderSection]:
    """The sections of ``plan`` as the result tells them: song seconds within the excerpt, label, style, frame."""
    return [RenderSection(round(max(sec.start, job.start), 3), round(min(sec.end, job.start + job.seconds), 3),
                          sec.label, style_name(look.style), frame)
            for (frame, sec), look in zip(plan, looks, strict=True)] if plan else []


def render_song(
    settings: Settings,
    song: str | Path,
    out: str | Path | None,
    start: float = 0.0,
    duration: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> RenderResult:
    """Render ``song`` to ``out`` (an mp4 with the song's audio, streamed; None: to memory) in one call:
    check the inputs, load the models of ``settings.paths.checkpoints``, render. Scripts that render more
    than one song load the models once with ``synesthete.Synesthete`` instead.

    The result's real-time factor counts from the start of this call (checks and model loading included).
    """
    t_start = time.perf_counter()
    job = plan_render(settings, song, out, start, duration, overwrite)
    models = load_models(settings, settings.paths.checkpoints, resolve_device(settings.device))
    return run_render(models, models.fitted(settings), job, progress=progress, since=t_start)


def generate_frames(
    models: Models,
    wave: torch.Tensor,
    settings: Settings,
    generator: torch.Generator | None = None,
    progress: bool = False,
    style: list[str] | None = None,
    look: dict | None = None,
) -> torch.Tensor:
    """Render mono audio [N] at ``settings.audio.sample_rate`` to frames [T, 3, H, W] in [0, 1], in memory.

    ``look`` (visual parameters of ``style``) draws the style exemplar in that look instead of the seed's
    (``style_exemplar``)."""
    fps = settings.video.fps
    extractor = FeatureExtractor(settings.audio, fps)
    wave = wave.float().cpu()
    features, _ = at_level(lambda gain: extractor(wave * gain), settings)  # [T, F]
    device = network_device(models)
    if generator is None:
        generator = noise_generator(render_seed(settings), device)
    exemplar = None
    if style and settings.render.exemplar:
        exemplar = style_exemplar(models, settings, style, render_seed(settings), look)
    blocks: list[torch.Tensor] = []
    tuner = _tuner(models, device)
    try:
        with make_progress(disable=not progress) as bar:
            task = bar.add_task("generating", total=features.shape[0], info="")
            blocks = list(iter_windows(models, features, settings, generator, style, exemplar,
                                       generated=lambda n: bar.update(task, completed=n), tuner=tuner))
    finally:
        if tuner is not None:
            tuner.restore()
    if not blocks:
        return torch.zeros(0, 3, settings.video.height, settings.video.width)
    return torch.cat(blocks)

