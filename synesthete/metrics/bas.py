"""Beat Alignment Score (AI Choreographer / Bailando).

BAS = mean over music beats b of exp(-min_v (b - v)^2 / (2 sigma^2)), where v are visual beats: local
maxima of the smoothed motion curve (visualizers flash and jump on beats; dance metrics use the minima of
joint velocity instead). It is a recall measure: it asks whether each music beat has a visual beat nearby.
"""

from __future__ import annotations

import numpy as np

from synesthete.metrics.av_align import pick_peaks


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
