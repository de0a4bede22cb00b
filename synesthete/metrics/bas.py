"""Beat Alignment Score (AI Choreographer / Bailando) and a simple tempo and beat estimate.

BAS = mean over music beats b of exp(-min_v (b - v)^2 / (2 sigma^2)), where v are visual beats: local
maxima of the smoothed motion curve (visualizers flash and jump on beats; dance metrics use the minima of
joint velocity instead). It is a recall measure: it asks whether each music beat has a visual beat nearby.
"""

from __future__ import annotations

import numpy as np

from synesthete.metrics.av_align import pick_peaks
from synesthete.metrics.onsets import OnsetEnvelope


def gaussian_smooth(curve: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter (sigma in samples, edges reflected); sigma 0 returns the curve unchanged."""
    c = np.asarray(curve, dtype=np.float64)
    if sigma <= 0 or c.size < 2:
        return c.copy()
    radius = max(1, int(round(4 * sigma)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(c, radius, mode="reflect" if c.size > radius else "edge")
    return np.convolve(padded, k, mode="valid")


def visual_beats(motion: np.ndarray, fps: float, smooth_frames: float, threshold: float, strict: bool) -> np.ndarray:
    """Visual beat times (s): local maxima of the motion curve smoothed by ``smooth_frames``."""
    return pick_peaks(gaussian_smooth(motion, smooth_frames), threshold, strict) / fps


def beat_alignment(music_beats: np.ndarray, visual: np.ndarray, sigma_seconds: float) -> float:
    """BAS in [0, 1]; 0 when there are no visual beats, NaN when there are no music beats."""
    music = np.asarray(music_beats, dtype=np.float64)
    visual = np.asarray(visual, dtype=np.float64)
    if music.size == 0:
        return float("nan")
    if visual.size == 0:
        return 0.0
    nearest = np.abs(music[:, None] - visual[None, :]).min(1)
    return float(np.exp(-(nearest**2) / (2 * sigma_seconds**2)).mean())


def estimate_tempo(envelope: OnsetEnvelope) -> float:
    """Tempo (BPM) of an onset envelope: the song analysis's estimate (``audio.analysis.estimate_tempo``)."""
    from synesthete.audio.analysis import estimate_tempo as tempo_of

    return tempo_of(envelope.values, envelope.hop_seconds)


def estimate_beats(envelope: OnsetEnvelope, duration: float) -> tuple[float, np.ndarray]:
    """(tempo BPM, beat times in s): a constant-tempo grid whose phase collects the most onset strength."""
    tempo = estimate_tempo(envelope)
    env = envelope.values
    h = envelope.hop_seconds
    period = 60.0 / tempo / h  # envelope frames per beat
    if env.size == 0:
        return tempo, np.zeros(0)
    phases = np.arange(int(np.ceil(period)))
    # beat k of phase p falls on envelope frame round(p + k * period)
    k = np.arange(int(np.ceil(len(env) / period)) + 1)
    idx = np.rint(phases[:, None] + k[None, :] * period).astype(np.int64)  # [P, K]
    valid = idx < len(env)
    strength = np.where(valid, env[np.minimum(idx, len(env) - 1)], 0.0).sum(1) / np.maximum(valid.sum(1), 1)
    best = int(np.argmax(strength))
    beats = idx[best][valid[best]] * h
    return tempo, beats[beats < duration]
