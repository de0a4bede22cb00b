"""Decoding whole files through torchcodec: audio (``load_audio``, ``audio_info``) and video (``load_video``).

torchcodec is imported lazily (``media.backend``) so that ``synesthete --help`` stays fast. A long song is
read in a stream instead (``media.stream.AudioReader``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from synesthete.errors import InputError
from synesthete.files import check_input
from synesthete.media.backend import torchcodec
from synesthete.media.messages import codec_message


@dataclass
class AudioInfo:
    """What an audio stream holds: its native rate, channels and duration, and its index in the file."""

    sample_rate: int
    num_channels: int
    duration: float
    stream_index: int | None = None


def audio_decoder(path: str | Path, sample_rate: int | None = None, num_channels: int | None = None):
    path = check_input(path)
    try:
        return torchcodec().decoders.AudioDecoder(str(path), sample_rate=sample_rate, num_channels=num_channels)
    except (RuntimeError, ValueError) as exc:
        msg = str(exc).lower()
        if "audio stream" in msg or "no audio" in msg or "best stream" in msg:
            raise InputError(f"{path} has no audio stream") from exc
        raise InputError(f"{path} could not be decoded as audio (corrupt or unsupported file)") from exc


def audio_info(path: str | Path) -> AudioInfo:
    """Read the native sample rate, channel count and duration of the audio stream of ``path``."""
    dec = audio_decoder(path)
    md = dec.metadata
    duration = md.duration_seconds_from_header or md.duration_seconds or 0.0
    if not duration:
        # Some containers (raw mp3/ogg) report no duration: decode to measure it.
        try:
            samples = dec.get_all_samples()
        except RuntimeError as exc:
            if "no audio frames were decoded" in str(exc).lower():
                raise InputError(f"{path} has no audio samples (empty or zero-length)") from exc
            raise InputError(f"{path} could not be decoded as audio: {codec_message(exc)}") from exc
        duration = samples.data.shape[-1] / samples.sample_rate
    index = getattr(dec, "stream_index", None)
    return AudioInfo(
        sample_rate=int(md.sample_rate), num_channels=int(md.num_channels), duration=float(duration),
        stream_index=int(index) if index is not None else None,
    )


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    mono: bool = False,
    start: float = 0.0,
    duration: float | None = None,
    num_channels: int | None = None,
) -> tuple[torch.Tensor, int]:
    """Decode ``path`` (any FFmpeg audio, or the audio track of a video) to float [C, N] and its rate.

    ``sample_rate`` resamples, ``mono`` (or ``num_channels``) remixes with FFmpeg's standard downmix
    (5.1 to stereo puts the centre in both channels at -3 dB), ``start``/``duration`` (seconds) decode a
    range. NaN or infinite samples (a damaged float wav) are an InputError.
    """
    dec = audio_decoder(path, sample_rate=sample_rate, num_channels=1 if mono else num_channels)
    stop = None if duration is None else start + duration
    try:
        if start == 0.0 and stop is None:
            samples = dec.get_all_samples()
        else:
            samples = dec.get_samples_played_in_range(start, stop)
    except (RuntimeError, ValueError) as exc:
        if "no audio frames were decoded" in str(exc).lower():
            raise InputError(f"{path} has no audio samples in the requested range (empty or zero-length)") from exc
        raise InputError(f"{path} could not be decoded as audio: {codec_message(exc)}") from exc
    data = samples.data.float()
    if data.ndim == 1:
        data = data.unsqueeze(0)
    if not bool(torch.isfinite(data).all()):
        raise InputError(f"{path} contains NaN or infinite samples (a damaged float file): it cannot be used")
    return data, int(samples.sample_rate)


def load_video(path: str | Path) -> tuple[torch.Tensor, float]:
    """Decode all frames of ``path`` as uint8 [T, 3, H, W] with the stream's frame rate."""
    path = check_input(path, "a video file")
    try:
        dec = torchcodec().decoders.VideoDecoder(str(path))
        frames = dec.get_frames_in_range(0, dec.metadata.num_frames or len(dec)).data
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"{path} could not be decoded as video (corrupt, unsupported or no video stream)") from exc
    fps = float(dec.metadata.average_fps or 0.0)
    if frames.shape[0] == 0 or fps <= 0:
        raise InputError(f"{path} has no video frames")
    return frames, fps


def to_unit(frames: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 frames (0..255) or float frames in [0, 1] -> float32 in [0, 1], moved to ``device`` first if given
    (so uint8 travels, and is converted where it lands)."""
    if device is not None:
        frames = frames.to(device, non_blocking=True)
    return frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
