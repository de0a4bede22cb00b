"""Frame analysis of a song, the first stage of ``analysis.py``: every 10 ms a 64-band log-mel spectrum
(30 Hz-8 kHz) and a 12-bin chroma (pitch classes of 100 Hz-4 kHz), streamed block by block
(``FrameAnalyser``), and the onset envelopes read from them (spectral flux)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio

HOP_SECONDS = 0.01  # analysis frame rate: 100 frames per second
WINDOW_SECONDS = 0.064  # STFT window (1024 samples at 16 kHz)
N_MELS = 64
MEL_RANGE = (30.0, 8000.0)  # Hz (capped at Nyquist)
LOW_HZ = 200.0  # the bass band of the beat tracker's envelope
CHROMA_RANGE = (100.0, 4000.0)  # Hz
DB_FLOOR = -80.0  # dB (full-scale sine = 0 dB) below which a band counts as silent


@dataclass
class Frames:
    """Frame-level features at ``hop`` seconds: log-mel [J, N_MELS] (dB) and chroma [J, 12]."""

    mel_db: np.ndarray
    chroma: np.ndarray
    hop: float
    mel_hz: np.ndarray  # centre frequency of each mel band
    duration: float  # seconds of audio analysed

    @property
    def num_frames(self) -> int:
        return self.mel_db.shape[0]


def _mel_centres(lo: float, hi: float, n: int) -> np.ndarray:
    """Centre frequencies (Hz) of ``n`` HTK mel bands between lo and hi."""
    mel = np.linspace(2595 * np.log10(1 + lo / 700), 2595 * np.log10(1 + hi / 700), n + 2)[1:-1]
    return 700 * (10 ** (mel / 2595) - 1)


class FrameAnalyser:
    """Streams a mono wave through the frame analysis: ``feed`` blocks [n] in order, then ``finish``.

    Frame j is centred on sample j x hop (as a centred STFT with zero padding), so the result does not
    depend on how the wave was cut into blocks. Only a window's worth of samples and the frame features
    (76 floats per 10 ms, 18 MB for 10 minutes) are kept.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sr = int(sample_rate)
        self.hop = max(1, round(self.sr * HOP_SECONDS))
        self.n_fft = 2 ** round(math.log2(WINDOW_SECONDS * self.sr))
        n_freqs = self.n_fft // 2 + 1
        hi = min(MEL_RANGE[1], self.sr / 2)
        self.fbank = torchaudio.functional.melscale_fbanks(n_freqs, MEL_RANGE[0], hi, N_MELS, self.sr,
                                                           norm=None, mel_scale="htk")  # [F, M]
        self.mel_hz = _mel_centres(MEL_RANGE[0], hi, N_MELS)
        freqs = torch.arange(n_freqs) * self.sr / self.n_fft
        pitch = 12 * torch.log2(freqs.clamp(min=1.0) / 440.0) + 69  # MIDI pitch of each bin
        inside = (freqs >= CHROMA_RANGE[0]) & (freqs <= min(CHROMA_RANGE[1], self.sr / 2))
        chroma = torch.zeros(n_freqs, 12)
        for c in range(12):  # triangular weight on the distance (semitones) to the nearest pitch of class c
            dist = torch.remainder(pitch - c + 6, 12) - 6
            chroma[:, c] = (1 - dist.abs()).clamp(min=0) * inside
        self.chroma_fb = chroma
        self.window = torch.hann_window(self.n_fft)
        self.calibration = 1.0 / (self.n_fft / 4) ** 2  # a full-scale sine reads 0 dB
        self.buffer = torch.zeros(self.n_fft // 2)  # zero padding before the first sample
        self.next_frame = 0  # frame j starts at padded sample j x hop; buffer[0] is padded sample next_frame x hop
        self.samples = 0
        self.mel: list[torch.Tensor] = []
        self.chroma: list[torch.Tensor] = []

    def _frames(self, upto: int) -> None:
        """Analyse every whole frame in the buffer up to (not including) frame ``upto``."""
        count = min(upto - self.next_frame, (self.buffer.numel() - self.n_fft) // self.hop + 1)
        if count <= 0:
            return
        framed = self.buffer[: (count - 1) * self.hop + self.n_fft].unfold(0, self.n_fft, self.hop)  # [J, n_fft]
        power = torch.fft.rfft(framed * self.window).abs().pow(2) * self.calibration  # [J, F]
        self.mel.append((10 * torch.log10(power @ self.fbank + 1e-12)).clamp(min=DB_FLOOR))
        self.chroma.append(power.sqrt() @ self.chroma_fb)
        self.next_frame += count
        self.buffer = self.buffer[count * self.hop :]

    def feed(self, block: torch.Tensor) -> None:
        """The next samples of the wave, [n] (or [1, n])."""
        block = block.reshape(-1).float()
        self.samples += block.numel()
        self.buffer = torch.cat([self.buffer, block])
        if self.buffer.numel() >= self.n_fft + 64 * self.hop:  # batch frames: analyse in blocks of >= 64
            self._frames(1 << 62)

    def finish(self) -> Frames:
        """The features of every frame (1 + samples // hop of them, as a centred STFT gives)."""
        self.buffer = torch.cat([self.buffer, torch.zeros(self.n_fft // 2 + self.hop)])
        self._frames(1 + self.samples // self.hop)
        mel = torch.cat(self.mel).numpy() if self.mel else np.zeros((0, N_MELS), np.float32)
        chroma = torch.cat(self.chroma).numpy() if self.chroma else np.zeros((0, 12), np.float32)
        return Frames(mel.astype(np.float32), chroma.astype(np.float32), self.hop / self.sr, self.mel_hz,
                      self.samples / self.sr)


def frame_features(wave: torch.Tensor, sample_rate: int) -> Frames:
    """``Frames`` of a mono wave [N] in memory."""
    analyser = FrameAnalyser(sample_rate)
    analyser.feed(wave)
    return analyser.finish()


def onset_envelopes(frames: Frames) -> tuple[np.ndarray, np.ndarray]:
    """(all bands, bass bands) spectral flux [J]: the mean positive rise (dB) of the log-mel bands."""
    rise = np.diff(frames.mel_db, axis=0, prepend=frames.mel_db[:1]).clip(min=0)  # [J, M]
    low = frames.mel_hz < LOW_HZ
    return rise.mean(1), rise[:, low].mean(1) if low.any() else rise.mean(1)


def loudness_flux(frames: Frames) -> np.ndarray:
    """Spectral flux [J] of the loudness-compressed band power log(1 + 1000 p): unlike the dB flux, a quiet
    sound (a hi-hat 15 dB down) rises little here, a loud one (kick, snare, a melody note) a lot."""
    comp = np.log1p(10 ** (frames.mel_db.astype(np.float64) / 10) * 1e3)
    return np.diff(comp, axis=0, prepend=comp[:1]).clip(min=0).sum(1)

