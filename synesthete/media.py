"""Media I/O through torchcodec: decode audio/video, encode H.264 + AAC mp4, written atomically (``files``).

torchcodec is imported lazily (it costs about 1.3 s) so that ``synesthete --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from synesthete.errors import InputError, OutputError
from synesthete.files import atomic_path, check_input

AAC_FRAME = 1024  # AAC pads the audio track to whole 1024-sample frames.


# --------------------------------------------------------------------------------------------- messages
# Where in its C++ sources torchcodec (or torch's zip writer) raised: "encodeVideoFrame, /__w/.../Encoder.cpp:1504, "
# or "[enforce fail at inline_container.cc:672] . ". A user gets the reason, not the location.
_CPP_LOCATION = re.compile(r"(?:\b\w+, )?\S*\.(?:cpp|cc|cxx|hpp|h):\d+\]?[,.]?\s*(?:\.\s+)?|\[enforce fail at\s*")


def codec_message(exc: BaseException) -> str:
    """The reason of a torchcodec (FFmpeg) or torch I/O error in one line, without C++ file names and lines;
    the operating system's reason (``No space left on device``) where one is in the exception's chain."""
    reason = _os_reason(exc)
    if reason is not None:
        return reason
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _CPP_LOCATION.sub("", text).strip(" ,.") or type(exc).__name__


def _os_reason(exc: BaseException) -> str | None:
    """The strerror of the first OSError in ``exc``'s chain, or of an errno message FFmpeg passed on."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES):
        if os.strerror(code) in str(exc):
            return os.strerror(code)
    return None


# --------------------------------------------------------------------------------------------- atomic files
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


# --------------------------------------------------------------------------------------------- decoding
@dataclass
class AudioInfo:
    """What an audio stream holds: its native rate, channels and duration, and its index in the file."""

    sample_rate: int
    num_channels: int
    duration: float
    stream_index: int | None = None


def _audio_decoder(path: str | Path, sample_rate: int | None = None, num_channels: int | None = None):
    from torchcodec.decoders import AudioDecoder

    path = check_input(path)
    try:
        return AudioDecoder(str(path), sample_rate=sample_rate, num_channels=num_channels)
    except (RuntimeError, ValueError) as exc:
        msg = str(exc).lower()
        if "audio stream" in msg or "no audio" in msg or "best stream" in msg:
            raise InputError(f"{path} has no audio stream") from exc
        raise InputError(f"{path} could not be decoded as audio (corrupt or unsupported file)") from exc


def audio_info(path: str | Path) -> AudioInfo:
    """Read the native sample rate, channel count and duration of the audio stream of ``path``."""
    dec = _audio_decoder(path)
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
    dec = _audio_decoder(path, sample_rate=sample_rate, num_channels=1 if mono else num_channels)
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


def decodable_duration(path: str | Path, header_duration: float) -> float:
    """Seconds of audio that really decode: ``header_duration`` unless the file ends early (truncated).

    An intact file is checked cheaply by decoding its last second; otherwise the whole stream is decoded
    (mono at 8 kHz, to keep memory small) to find where it ends.
    """
    if header_duration <= 0:
        return header_duration
    tail_start = max(0.0, header_duration - 1.0)
    if ffmpeg_binary() is not None:  # seek to the last second instead of decoding the whole file to reach it
        try:
            with AudioReader(path, TAIL_CHECK_RATE, 1, start=tail_start, duration=header_duration - tail_start,
                             check_finite=False) as reader:
                got = sum(block.shape[-1] for block in reader.blocks(TAIL_CHECK_RATE))
            if tail_start + got / TAIL_CHECK_RATE >= header_duration - 0.25:
                return header_duration
        except InputError:
            pass
    else:
        try:
            tail = _audio_decoder(path).get_samples_played_in_range(tail_start, header_duration)
            end = float(tail.pts_seconds) + tail.data.shape[-1] / tail.sample_rate
            if end >= header_duration - 0.25:
                return header_duration
        except (RuntimeError, ValueError):
            pass
    if ffmpeg_binary() is not None:
        # Decode the whole stream with FFmpeg, as a user's `ffmpeg -i` would: it skips junk (a block of garbage
        # after an ID3 tag) that torchcodec's decoder stops at. Streamed, mono at 8 kHz: memory stays small.
        with AudioReader(path, TAIL_CHECK_RATE, 1, check_finite=False) as reader:
            got = sum(block.shape[-1] for block in reader.blocks(TAIL_CHECK_RATE * 10))
        return min(header_duration, got / TAIL_CHECK_RATE)
    try:
        samples = _audio_decoder(path, sample_rate=8000, num_channels=1).get_all_samples()
    except (RuntimeError, ValueError) as exc:
        if "no audio frames were decoded" in str(exc).lower():
            return 0.0
        raise InputError(f"{path} could not be decoded as audio: {codec_message(exc)}") from exc
    end = float(samples.pts_seconds) + samples.data.shape[-1] / samples.sample_rate
    return min(header_duration, end)


SEEK_PREROLL = 0.5  # seconds decoded before a seek target and dropped: codecs and the resampler settle in them
TAIL_CHECK_RATE = 8000  # Hz at which decodable_duration decodes the last second


def ffmpeg_binary() -> str | None:
    """The ``ffmpeg`` program on PATH, or None."""
    import shutil

    return shutil.which("ffmpeg")


class AudioReader:
    """Stream the excerpt [start, start + duration) of an audio file, decoded at one rate and channel count.

    ``read(n)`` returns the next ``n`` samples [C, n] (fewer only at the end), so a long song never sits in
    memory. With the ``ffmpeg`` program (a prerequisite of synesthete) the excerpt is decoded by one FFmpeg
    process that **seeks** to it: ``-ss`` before the input jumps there through the container's index (exact:
    FFmpeg decodes from the seek point and trims to the timestamp), ``SEEK_PREROLL`` seconds early, and those
    samples are dropped so that the decoder and resampler have settled by ``start``. A 20 s excerpt at 6:00
    of a 7-minute mp3 then costs what one at 0:00 does. Without the program, torchcodec decodes
    ``chunk_seconds`` at a time; torchcodec never seeks in audio (it decodes every frame from the start of
    the stream up to the range asked for), so there each chunk costs more the later it lies.

    Rate conversion and downmixing are FFmpeg's own (libswresample with default options, as torchcodec
    uses): 5.1 to stereo puts the centre in both channels at -3 dB. NaN or infinite samples are an InputError.
    """

    def __init__(
        self,
        path: str | Path,
        sample_rate: int,
        num_channels: int,
        start: float = 0.0,
        duration: float | None = None,
        stream_index: int | None = None,
        source_rate: int | None = None,
        chunk_seconds: float = 10.0,
        backend: str | None = None,
        check_finite: bool = True,
    ) -> None:
        path = check_input(path)
        self.path, self.sample_rate, self.num_channels = path, int(sample_rate), int(num_channels)
        self.start, self.duration = float(start), duration
        self.check_finite = check_finite
        self.chunk_seconds = float(chunk_seconds)
        self.position = 0  # samples returned so far
        self.total = None if duration is None else max(0, round(duration * self.sample_rate))
        binary = ffmpeg_binary() if backend in (None, "ffmpeg") else None
        if backend == "ffmpeg" and binary is None:
            raise InputError("the ffmpeg program was not found on PATH (install FFmpeg)")
        self.backend = "ffmpeg" if binary is not None else "torchcodec"
        self._proc = None
        self._stderr = None
        self._buffer = torch.zeros(self.num_channels, 0)
        if self.backend == "ffmpeg":
            self._open_ffmpeg(binary, stream_index, source_rate)

    # ------------------------------------------------------------------------------------------- ffmpeg
    def _open_ffmpeg(self, binary: str, stream_index: int | None, source_rate: int | None) -> None:
        import subprocess

        # Seek to a time that falls on a sample of both the file's rate and ours: the resampler then puts its
        # output on the same grid as a decode from the start would, and the samples match it exactly.
        grid = math.gcd(int(source_rate), self.sample_rate) if source_rate else self.sample_rate
        seek = max(0.0, math.floor((self.start - SEEK_PREROLL) * grid) / grid)
        self._skip = round((self.start - seek) * self.sample_rate)  # preroll samples to drop
        cmd = [binary, "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "1"]
        if seek > 0:
            cmd += ["-ss", f"{seek:.9f}"]
        cmd += ["-i", str(self.path), "-map", f"0:{stream_index}" if stream_index is not None else "0:a:0"]
        if self.duration is not None:
            cmd += ["-t", f"{self.duration + (self.start - seek) + 1.0:.6f}"]  # a second spare: trimmed here
        cmd += ["-vn", "-sn", "-dn", "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(self.num_channels),
                "-ar", str(self.sample_rate), "pipe:1"]
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: a chatty decoder can never block on it
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=self._stderr)
        except OSError as exc:
            self._stderr.close()
            raise InputError(f"cannot run {binary} to decode {self.path}: {exc.strerror or exc}") from exc

    def _ffmpeg_read(self, n: int) -> torch.Tensor:
        """Up to ``n`` samples [C, m] from the pipe (m < n only at the end of the stream)."""
        frame = 4 * self.num_channels
        while self._skip > 0:
            dropped = self._proc.stdout.read(min(self._skip, 1 << 16) * frame)
            if not dropped:
                break
            self._skip -= len(dropped) // frame
        raw = self._proc.stdout.read(n * frame) if n > 0 else b""
        raw = raw[: len(raw) // frame * frame]
        if len(raw) < n * frame:  # end of the stream: did FFmpeg fail? Then it is not the end of the song.
            code = self._proc.wait()
            if code != 0:
                if self.position == 0 and not raw:
                    raise InputError(f"{self.path} could not be decoded as audio: {self._ffmpeg_error()}")
                at = self.start + (self.position + len(raw) // frame) / self.sample_rate
                raise InputError(f"{self.path}: the audio decoder (FFmpeg) failed at {at:.2f} s "
                                 f"({self._ffmpeg_error(code)}): the rest of the song could not be read")
        data = torch.frombuffer(bytearray(raw), dtype=torch.float32) if raw else torch.zeros(0)
        return data.view(-1, self.num_channels).t().contiguous()

    def _ffmpeg_error(self, code: int | None = None) -> str:
        """What FFmpeg said last on stderr (or how it ended, ``code``: its exit status or -signal)."""
        import signal

        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace")
        if "does not contain any stream" in text or "matches no streams" in text:
            return "it has no audio stream"
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1]
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                return f"it was stopped by {signal.Signals(-code).name}"
        return "no audio could be decoded" if code is None else f"it exited with status {code}"

    # ------------------------------------------------------------------------------------------- torchcodec
    def _torchcodec_read(self, n: int) -> torch.Tensor:
        while self._buffer.shape[-1] < n and not getattr(self, "_exhausted", False):
            t0 = self.start + (self.position + self._buffer.shape[-1]) / self.sample_rate
            t1 = t0 + self.chunk_seconds
            if self.duration is not None:
                t1 = min(t1, self.start + self.duration)
            if t1 <= t0:
                self._exhausted = True
                break
            try:
                wave, _ = load_audio(self.path, sample_rate=self.sample_rate, start=t0, duration=t1 - t0,
                                     num_channels=self.num_channels)
            except InputError as exc:
                # Past the last sample: the end of the file. Anything else mid-song is an error, not silence.
                if self.position == 0 and self._buffer.shape[-1] == 0 or "no audio samples" not in str(exc):
                    raise
                wave = torch.zeros(self.num_channels, 0)
            want = round((t1 - t0) * self.sample_rate)
            if wave.shape[-1] == 0:
                self._exhausted = True
            self._buffer = torch.cat([self._buffer, wave[:, :want]], dim=-1)
        out, self._buffer = self._buffer[:, :n], self._buffer[:, n:]
        return out

    # ------------------------------------------------------------------------------------------- public
    def read(self, n: int) -> torch.Tensor:
        """The next ``n`` samples [C, n] (fewer only at the end of the excerpt or the file)."""
        if self.total is not None:
            n = min(n, self.total - self.position)
        if n <= 0:
            return torch.zeros(self.num_channels, 0)
        out = self._ffmpeg_read(n) if self.backend == "ffmpeg" else self._torchcodec_read(n)
        if self.check_finite and not bool(torch.isfinite(out).all()):
            raise InputError(f"{self.path} contains NaN or infinite samples (a damaged float file): it cannot be used")
        self.position += out.shape[-1]
        return out

    def blocks(self, n: int) -> Iterator[torch.Tensor]:
        """Yield blocks of ``n`` samples [C, n] (the last may be shorter) until the excerpt ends."""
        while True:
            block = self.read(n)
            if block.shape[-1] == 0:
                return
            yield block

    def close(self) -> None:
        """Stop the decoder (an FFmpeg process still running is killed) and free its resources."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a reader dropped without close() must not leave a process behind
        with contextlib.suppress(Exception):
            self.close()


def load_video(path: str | Path) -> tuple[torch.Tensor, float]:
    """Decode all frames of ``path`` as uint8 [T, 3, H, W] with the stream's frame rate."""
    from torchcodec.decoders import VideoDecoder

    path = check_input(path, "a video file")
    try:
        dec = VideoDecoder(str(path))
        frames = dec.get_frames_in_range(0, dec.metadata.num_frames or len(dec)).data
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"{path} could not be decoded as video (corrupt, unsupported or no video stream)") from exc
    fps = float(dec.metadata.average_fps or 0.0)
    if frames.shape[0] == 0 or fps <= 0:
        raise InputError(f"{path} has no video frames")
    return frames, fps


# --------------------------------------------------------------------------------------------- encoding
def to_unit(frames: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 frames (0..255) or float frames in [0, 1] -> float32 in [0, 1], moved to ``device`` first if given
    (so uint8 travels, and is converted where it lands)."""
    if device is not None:
        frames = frames.to(device, non_blocking=True)
    return frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()


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
        from torchcodec.encoders import Encoder

        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        try:
            self._encoder = Encoder()
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
