"""Where a render's frames go: an H.264 + AAC mp4 with the song's audio muxed in (``Mp4Sink``), written to a
temporary file and renamed at the end, or one uint8 tensor in memory (``MemorySink``), checked first against
the memory there is (``check_memory``)."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import torch
import torch.nn.functional as F

from synesthete.errors import OutputError
from synesthete.media import AudioReader, VideoWriter, to_uint8
from synesthete.render.records import RenderJob
from synesthete.settings import Settings

AAC_RATES = (44100, 48000)  # native rates kept as they are; anything else is resampled for the AAC track


def output_size(settings: Settings) -> tuple[int, int]:
    """(width, height) of the output: the model's frames, or ``render.size`` wide at the same aspect (even)."""
    size = settings.render.size or settings.video.width
    height = settings.video.height * size // settings.video.width if settings.render.size else settings.video.height
    return size, height + height % 2


def memory_need(settings: Settings, num_frames: int) -> int:
    """Bytes the frames of a render to memory take: ``num_frames`` uint8 frames at the output size, held once
    (``MemorySink`` fills one tensor in place; nothing is concatenated)."""
    width, height = output_size(settings)
    return num_frames * 3 * height * width


def available_memory() -> int | None:
    """Bytes of memory the system can still give (Linux ``MemAvailable``); None where it cannot be asked."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(settings: Settings, num_frames: int) -> None:
    """Refuse a render to memory whose frames (``memory_need``) would pass ``render.memory_gb`` or the memory
    the system has available, before it starts: an OutputError that says what to do instead."""
    need = memory_need(settings, num_frames)
    limit = settings.render.memory_gb * 1e9
    free = available_memory()
    if need <= limit and (free is None or need <= free):
        return
    width, height = output_size(settings)
    seconds = num_frames / settings.video.fps
    over = (f"more than render.memory_gb ({settings.render.memory_gb:g} GB)" if need > limit
            else f"more than the {free / 1e9:.2f} GB of memory available")
    raise OutputError(
        f"a render to memory of {seconds:.1f} s at {width}x{height} would hold {need / 1e9:.2f} GB of frames, "
        f"{over}: render to a file (out=...), a shorter excerpt (duration=...) or a smaller size, or raise "
        "render.memory_gb"
    )


class AudioMuxer:
    """Interleaves the song's audio into the output, up to the video frames written so far.

    ``until(frame)`` appends the samples that play before video frame ``frame`` (never past the excerpt's
    end), read from ``reader`` (an ``AudioReader`` of the excerpt at the output's rate and channels);
    where the file ends early, silence. ``finish(frames)`` appends the rest, so the audio track matches
    the video within one frame.
    """

    def __init__(self, reader: AudioReader, writer: VideoWriter, fps: float, sample_rate: int,
                 seconds: float) -> None:
        self.reader, self.writer = reader, writer
        self.fps, self.sample_rate = fps, sample_rate
        self.total = round(seconds * sample_rate)  # samples of the excerpt
        self.written = 0

    def until(self, frame: int) -> None:
        need = min(round(frame / self.fps * self.sample_rate), self.total) - self.written
        if need <= 0:
            return
        wave = self.reader.read(need)
        if wave.shape[-1] < need:
            wave = F.pad(wave, (0, need - wave.shape[-1]))
        self.writer.add_audio(wave)
        self.written += need

    def finish(self, frames: int) -> None:
        self.until(frames)


class MemorySink:
    """Where a render to memory puts its frames: one uint8 tensor [T, 3, H, W], filled in place as blocks come
    (blocks gathered and then concatenated would need the frames' memory twice at the end)."""

    def __init__(self, num_frames: int, height: int, width: int) -> None:
        self.data = torch.empty(num_frames, 3, height, width, dtype=torch.uint8)
        self.filled = 0

    def __enter__(self) -> MemorySink:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def add(self, block: torch.Tensor) -> None:
        block = to_uint8(block)
        n = min(block.shape[0], self.data.shape[0] - self.filled)
        self.data[self.filled : self.filled + n] = block[:n]
        self.filled += n

    def frames(self) -> torch.Tensor:
        return self.data[: self.filled]


class Mp4Sink:
    """Where a render to a file puts its frames: an H.264 stream, with the song's audio muxed in as it goes
    (``AudioMuxer``), in a temporary file renamed onto ``job.out`` when the block exits cleanly."""

    def __init__(self, job: RenderJob, settings: Settings, width: int, height: int) -> None:
        self.job, self.settings, self.width, self.height = job, settings, width, height

    def __enter__(self) -> Mp4Sink:
        job, settings = self.job, self.settings
        # The output audio: the song's own channels (stereo at most) at its own rate if AAC-friendly.
        channels = min(job.info.num_channels, 2)
        rate = job.info.sample_rate if job.info.sample_rate in AAC_RATES else settings.render.audio_sample_rate
        fps = settings.video.fps
        with contextlib.ExitStack() as stack:
            reader = stack.enter_context(job.audio_reader(rate, channels, settings))
            self.writer = stack.enter_context(VideoWriter(
                job.out, width=self.width, height=self.height, fps=fps, audio_sample_rate=rate,
                audio_channels=channels, crf=settings.render.crf, preset=settings.render.x264_preset,
            ))
            self.muxer = AudioMuxer(reader, self.writer, fps, rate, job.seconds)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            try:
                self.muxer.finish(self.job.num_frames)
            except BaseException:
                self._stack.__exit__(*sys.exc_info())
                raise
        self._stack.__exit__(*exc)  # the writer closes first (the encoder flushes, the file is renamed)

    def add(self, block: torch.Tensor) -> None:
        self.writer.add_frames(block)
        self.muxer.until(self.writer.frames_written)
