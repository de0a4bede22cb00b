"""Audio onsets as AV-Align defines them: librosa's onset-strength envelope and ``onset_detect`` peak picking.

Re-implemented in torch (no librosa dependency). The envelope is the mean over 128 Slaney mel bands of the
positive frame-to-frame rise of the log-power mel spectrogram (dB, 80 dB dynamic range), computed at the
reference 22.05 kHz with n_fft 2048 and hop 512, and shifted like librosa's ``center=True`` envelope so
that a frame is dated at the end of its analysis window. See docs/evaluation.md.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio

# The published definition's analysis (librosa defaults): these define the metric, so they are not settings.
REFERENCE_SAMPLE_RATE = 22050
REFERENCE_N_FFT = 2048
REFERENCE_HOP = 512
REFERENCE_N_MELS = 128
TOP_DB = 80.0  # librosa.power_to_db's dynamic range
AMIN = 1e-10  # power floor before the log
# librosa.onset.onset_detect's peak-picking rules, in seconds (converted to envelope frames below).
PRE_MAX_S = 0.03  # a peak is the max within -30 ms ...
POST_MAX_FRAMES = 1  # ... to +1 frame
AVG_S = 0.10  # it must exceed the mean within -100 ms ... +100 ms
DELTA = 0.07  # ... by this much (on the envelope normalised to [0, 1])
WAIT_S = 0.03  # and come at least 30 ms after the previous peak
# Absolute floor (not in librosa): a peak must also rise this much above its local mean, in dB of mean
# positive mel flux. The [0, 1] normalisation above would otherwise turn the flicker of a flat envelope
# (a steady tone, white noise, near-silence) into peaks. Measured on 22.05 kHz audio: peaks picked in a
# steady sine or white noise rise at most 0.53 dB above their local mean, the drum and note onsets of 12
# held-out clips at least 1.6 dB (see docs/evaluation.md).
MIN_RISE_DB = 1.0


@dataclass
class OnsetEnvelope:
    """An onset-strength envelope and the time between its frames."""

    values: np.ndarray  # [J] float
    hop_seconds: float

    @property
    def times(self) -> np.ndarray:
        """Time (s) of every envelope frame."""
        return np.arange(len(self.values)) * self.hop_seconds


@functools.lru_cache(maxsize=4)
def _mel_transform(device: str) -> torchaudio.transforms.MelSpectrogram:
    # librosa.feature.melspectrogram defaults: periodic Hann, zero-padded centred frames, Slaney mel scale
    # and area normalisation, power 2.
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=REFERENCE_SAMPLE_RATE, n_fft=REFERENCE_N_FFT, hop_length=REFERENCE_HOP,
        n_mels=REFERENCE_N_MELS, f_min=0.0, f_max=REFERENCE_SAMPLE_RATE / 2, power=2.0, center=True,
        pad_mode="constant", norm="slaney", mel_scale="slaney",
    ).to(device)


def to_reference_rate(wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Downmix [C, N] (or take [N]) and resample to the reference 22.05 kHz -> [N']."""
    wave = wave.float()
    if wave.ndim == 2:
        wave = wave.mean(0)
    if sample_rate != REFERENCE_SAMPLE_RATE:
        wave = torchaudio.functional.resample(wave, sample_rate, REFERENCE_SAMPLE_RATE)
    return wave


def onset_envelope(wave: torch.Tensor, sample_rate: int) -> OnsetEnvelope:
    """librosa-style onset strength of ``wave`` ([N] or [C, N] at ``sample_rate``)."""
    y = to_reference_rate(wave, sample_rate)  # [N'] at 22.05 kHz
    hop_seconds = REFERENCE_HOP / REFERENCE_SAMPLE_RATE
    if y.numel() == 0:
        return OnsetEnvelope(np.zeros(0, dtype=np.float64), hop_seconds)
    with torch.no_grad():
        power = _mel_transform(str(y.device))(y)  # [M, J]
        db = 10.0 * torch.log10(power.clamp(min=AMIN))
        db = torch.maximum(db, db.max() - TOP_DB)
        flux = (db[:, 1:] - db[:, :-1]).clamp(min=0).mean(0)  # [J - 1]
    # The first frames' windows reach into the zero padding before the audio: their rise is the artificial
    # silence ending, not an onset in the audio (white noise from t = 0 would start with a 3.5 dB "onset").
    edge = REFERENCE_N_FFT // (2 * REFERENCE_HOP)
    flux[:edge] = 0
    # librosa pads by the lag (1) plus n_fft / (2 hop) frames: a centred frame is dated at its window's end.
    shift = 1 + edge
    env = torch.cat([flux.new_zeros(shift), flux])[: db.shape[1]]
    return OnsetEnvelope(env.double().cpu().numpy(), hop_seconds)


def _frames(seconds: float, hop_seconds: float) -> int:
    # librosa: int(seconds * sr // hop_length)
    return int((seconds * REFERENCE_SAMPLE_RATE) // REFERENCE_HOP) if hop_seconds else 0


def peak_pick(
    x: np.ndarray, pre_max: int, post_max: int, pre_avg: int, post_avg: int, delta: float, wait: int
) -> np.ndarray:
    """librosa.util.peak_pick: indices n with x[n] = max(x[n-pre_max : n+post_max]),
    x[n] >= mean(x[n-pre_avg : n+post_avg]) + delta, x[n] > 0, and more than ``wait`` after the last peak.

    Windows are truncated at the ends, as in librosa.
    """
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.arange(n)
    # Sliding max over the truncated window [n - pre_max, n + post_max).
    lo = np.clip(idx - pre_max, 0, n)
    hi = np.clip(idx + post_max, 0, n)
    padded = np.concatenate([np.full(pre_max, -np.inf), x, np.full(post_max, -np.inf)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, pre_max + post_max)  # [n, pre+post]
    mov_max = windows[:n].max(1)
    # Sliding mean over the truncated window [n - pre_avg, n + post_avg), from a cumulative sum.
    csum = np.concatenate([[0.0], np.cumsum(x)])
    lo = np.clip(idx - pre_avg, 0, n)
    hi = np.clip(idx + post_avg, 0, n)
    mov_avg = (csum[hi] - csum[lo]) / np.maximum(hi - lo, 1)
    candidates = np.nonzero((x == mov_max) & (x >= mov_avg + delta) & (x != 0))[0]
    peaks: list[int] = []
    last = -np.inf
    for i in candidates:  # greedy in time, as librosa
        if i > last + wait:
            peaks.append(int(i))
            last = i
    return np.asarray(peaks, dtype=np.int64)


def detect_onsets(envelope: OnsetEnvelope) -> np.ndarray:
    """Onset times (s) picked from ``envelope`` with librosa ``onset_detect``'s default rules, plus an
    absolute floor: a peak must also rise ``MIN_RISE_DB`` above its local mean, so a flat envelope has none.
    """
    env = envelope.values
    if env.size == 0 or not env.any():
        return np.zeros(0)
    span = float(env.max() - env.min())
    if span < MIN_RISE_DB:
        return np.zeros(0)
    norm = (env - env.min()) / span
    h = envelope.hop_seconds
    pre_max = _frames(PRE_MAX_S, h)
    pre_avg = _frames(AVG_S, h)
    peaks = peak_pick(
        norm, pre_max=pre_max, post_max=POST_MAX_FRAMES, pre_avg=pre_avg, post_avg=pre_avg + 1,
        delta=max(DELTA, MIN_RISE_DB / span), wait=_frames(WAIT_S, h),
    )
    return peaks * h


def audio_peaks(wave: torch.Tensor, sample_rate: int) -> tuple[np.ndarray, OnsetEnvelope]:
    """AV-Align audio peaks: onset times (s) of ``wave`` and the envelope they were picked from."""
    env = onset_envelope(wave, sample_rate)
    return detect_onsets(env), env
