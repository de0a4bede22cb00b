"""Encoding through torchcodec: an H.264 yuv420p + AAC mp4 (``VideoWriter``, ``write_video``), a PCM wav
(``write_wav``) and checkpoints (``atomic_save``), each written atomically (``files.atomic_path``).

torchcodec is imported lazily (``media.backend``) so that ``synesthete --help`` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from synesthete.errors import OutputError
from synesthete.files import atomic_path
from synesthete.media.backend import torchcodec
from synesthete.media.messages import codec_message

AAC_FRAME = 1024  # AAC pads the audio track to whole 1024-sample frames.


def atomic_save(obj: object, path: str | Path) -> None:
    """``torch.save`` through a temporary file and an atomic rename (fsynced before the rename).

    A write that fails (a full disk, a quota, an I/O error) is an OutputError naming the file and the reason;
    the temporary file goes and an existing file at ``path`` is kept."""
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                torch.save(obj, fh)
                fh.flush()
                os.fsync(fh.fileno())
    except (OSError, RuntimeError) as exc:
        raise OutputError(f"cannot write {path}: {codec_message(exc)}") from exc


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """Float frames in [0, 1] (any device) to contiguous uint8 on the CPU; uint8 passes through."""
    if frames.dtype == torch.uint8:
        return frames.cpu().contiguous()
    return (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().contiguous()


class VideoWriter:
    """Stream frames (and optionally audio) into an H.264 yuv420p + AAC mp4, atomically.

    Use as a context manager: the file appears at ``path`` only when the block exits cleanly.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float,
        audio_sample_rate: int | None = None,
        audio_channels: int = 1,
        out_audio_sample_rate: int | None = None,
        crf: int = 20,
        preset: str = "veryfast",
    ) -> None:
        if width % 2 or height % 2:
            raise OutputError(f"frame size {width}x{height} must be even for yuv420p H.264")
        self.path = Path(path)
        self.width, self.height, self.fps = width, height, fps
        self.audio_sample_rate = audio_sample_rate
        self.audio_channels = audio_channels
        self.out_audio_sample_rate = out_audio_sample_rate
        self.crf, self.preset = crf, preset
        self.frames_written = 0
        self.samples_written = 0

    def __enter__(self) -> VideoWriter:
        self._atomic = atomic_path(self.path)
        try:
            self._tmp = self._atomic.__enter__()
            self._encoder = torchcodec().encoders.Encoder()
            self._video = self._encoder.add_video(
                height=self.height, width=self.width, frame_rate=self.fps, codec="libx264",
                pixel_format="yuv420p", crf=self.crf, preset=self.preset,
            )
            self._audio = None
            if self.audio_sample_rate:
                self._audio = self._encoder.add_audio(
                    sample_rate=self.audio_sample_rate, num_channels=self.audio_channels,
                    out_sample_rate=self.out_audio_sample_rate,
                )
            self._encoder.open_file(str(self._tmp))
        except BaseException as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            if isinstance(exc, (RuntimeError, ValueError, OSError)):
                raise OutputError(f"cannot open {self.path} for encoding: {codec_message(exc)}") from exc
            raise
        return self

    def _failed(self, exc: BaseException) -> OutputError:
        return OutputError(f"encoding {self.path} failed: {codec_message(exc)}")

    def add_frames(self, frames: torch.Tensor) -> None:
        """Append frames: [T, 3, H, W], uint8 or float in [0, 1]."""
        frames = to_uint8(frames)
        if frames.shape[1:] != (3, self.height, self.width):
            raise ValueError(f"frames of shape {tuple(frames.shape)} do not match {self.width}x{self.height}")
        try:
            self._video.add_frames(frames)
        except (RuntimeError, OSError) as exc:  # a full disk, an I/O error
            raise self._failed(exc) from exc
        self.frames_written += frames.shape[0]

    def add_audio(self, wave: torch.Tensor) -> None:
        """Append audio samples: float [C, N] (or [N] for mono) in [-1, 1]."""
        if self._audio is None:
            raise ValueError("this writer has no audio stream")
        if wave.ndim == 1:
            wave = wave.unsqueeze(0)
        wave = wave.detach().float().cpu().clamp(-1, 1).contiguous()
        try:
            self._audio.add_samples(wave)
        except (RuntimeError, OSError) as exc:
            raise self._failed(exc) from exc
        self.samples_written += wave.shape[-1]

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._encoder.close()
        except BaseException as close_exc:
            # A failed flush must not leave a temp file behind, nor rename a broken file into place.
            self._atomic.__exit__(type(close_exc), close_exc, close_exc.__traceback__)
            if exc is None:
                if not isinstance(close_exc, Exception):
                    raise  # Ctrl-C or SIGTERM landed during the flush: an interruption, not a failed encode
                raise self._failed(close_exc) from close_exc
            return
        self._atomic.__exit__(exc_type, exc, tb)


def write_video(
    path: str | Path,
    frames: torch.Tensor,
    fps: float,
    audio: torch.Tensor | None = None,
    sample_rate: int | None = None,
    out_audio_sample_rate: int | None = None,
    crf: int = 20,
    preset: str = "veryfast",
) -> None:
    """Write frames [T, 3, H, W] (and audio [C, N] or [N]) to an mp4 in one call, atomically."""
    if audio is not None and audio.ndim == 1:
        audio = audio.unsqueeze(0)
    with VideoWriter(
        path, width=frames.shape[-1], height=frames.shape[-2], fps=fps,
        audio_sample_rate=sample_rate if audio is not None else None,
        audio_channels=audio.shape[0] if audio is not None else 1,
        out_audio_sample_rate=out_audio_sample_rate, crf=crf, preset=preset,
    ) as writer:
        writer.add_frames(frames)
        if audio is not None:
            writer.add_audio(audio)


def write_wav(path: str | Path, wave: torch.Tensor, sample_rate: int) -> None:
    """Write float audio [C, N] or [N] as a 16-bit PCM wav, atomically."""
    if wave.ndim == 1:
        wave = wave.unsqueeze(0)
    with atomic_path(path) as tmp:
        _write_wav_pcm16(tmp, wave, sample_rate)


def _write_wav_pcm16(path: Path, wave: torch.Tensor, sample_rate: int) -> None:
    """Plain RIFF/WAVE PCM16 writer (no dependency, exact and fast)."""
    import wave as wavemod

    pcm = (wave.detach().float().cpu().clamp(-1, 1) * 32767).round().to(torch.int16)  # [C, N]
    with wavemod.open(str(path), "wb") as fh:
        fh.setnchannels(pcm.shape[0])
        fh.setsampwidth(2)
        fh.setframerate(sample_rate)
        fh.writeframes(pcm.t().contiguous().numpy().tobytes())
