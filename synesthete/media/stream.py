"""Streaming an excerpt of an audio file (``AudioReader``: one FFmpeg process that seeks to it), and how much
of a file really decodes (``decodable_duration``: a truncated file ends before its header says)."""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from synesthete.errors import InputError
from synesthete.files import check_input
from synesthete.media.decode import audio_decoder, load_audio
from synesthete.media.messages import codec_message

SEEK_PREROLL = 0.5  # seconds decoded before a seek target and dropped: codecs and the resampler settle in them
TAIL_CHECK_RATE = 8000  # Hz at which decodable_duration decodes the last second


def ffmpeg_binary() -> str | None:
    """The ``ffmpeg`` program on PATH, or None."""
    import shutil

    return shutil.which("ffmpeg")


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
            tail = audio_decoder(path).get_samples_played_in_range(tail_start, header_duration)
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
        samples = audio_decoder(path, sample_rate=8000, num_channels=1).get_all_samples()
    except (RuntimeError, ValueError) as exc:
        if "no audio frames were decoded" in str(exc).lower():
            return 0.0
        raise InputError(f"{path} could not be decoded as audio: {codec_message(exc)}") from exc
    end = float(samples.pts_seconds) + samples.data.shape[-1] / samples.sample_rate
    return min(header_duration, end)


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
