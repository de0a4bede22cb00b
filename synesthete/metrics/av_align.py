"""AV-Align (Yariv et al.): IoU between audio onsets and optical-flow peaks, with one-to-one matching.

The published video-peak rule counts every strict local maximum of the motion curve. Decoded H.264 video
carries compression noise that makes many tiny spurious maxima, so by default a maximum must also have a
topographic prominence of at least ``peak_threshold`` times the curve's range; ``strict`` follows the
published rule exactly. See docs/evaluation.md for the measured effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AVAlignResult:
    """Score and peak matching of one clip."""

    score: float
    audio_peaks: np.ndarray  # [A] seconds
    video_peaks: np.ndarray  # [V] seconds
    audio_matched: np.ndarray  # [A] bool
    video_matched: np.ndarray  # [V] bool

    @property
    def matches(self) -> int:
        """Number of matched (audio, video) peak pairs."""
        return int(self.audio_matched.sum())


def strict_maxima(curve: np.ndarray) -> np.ndarray:
    """Indices i with curve[i-1] < curve[i] > curve[i+1] (never the first or last sample)."""
    c = np.asarray(curve, dtype=np.float64)
    if c.size < 3:
        return np.zeros(0, dtype=np.int64)
    inner = (c[1:-1] > c[:-2]) & (c[1:-1] > c[2:])
    return np.nonzero(inner)[0] + 1


def prominences(curve: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Topographic prominence of each peak: its height above the higher of the two lowest points that
    separate it from higher ground on either side (or from the ends), as scipy.signal.peak_prominences."""
    c = np.asarray(curve, dtype=np.float64)
    out = np.empty(len(peaks))
    for k, i in enumerate(peaks):
        higher_left = np.nonzero(c[:i] > c[i])[0]
        higher_right = np.nonzero(c[i + 1 :] > c[i])[0]
        left = higher_left[-1] + 1 if higher_left.size else 0
        right = i + 1 + higher_right[0] if higher_right.size else len(c)
        out[k] = c[i] - max(c[left : i + 1].min(), c[i:right].min())
    return out


def pick_peaks(curve: np.ndarray, threshold: float, strict: bool) -> np.ndarray:
    """Strict local maxima of ``curve``; unless ``strict``, only those with prominence >= threshold x range."""
    c = np.asarray(curve, dtype=np.float64)
    peaks = strict_maxima(c)
    if strict or peaks.size == 0 or threshold <= 0:
        return peaks
    span = c.max() - c.min()
    return peaks[prominences(c, peaks) >= threshold * span]


def video_peaks(motion: np.ndarray, fps: float, threshold: float, strict: bool) -> np.ndarray:
    """AV-Align video peaks (seconds) of a per-frame motion curve [T]; frame i is at time i / fps."""
    return pick_peaks(motion, threshold, strict) / fps


def match_peaks(
    audio: np.ndarray, video: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of peaks closer than ``tolerance`` (strictly) -> (audio_matched, video_matched).

    Both sides are points on a line and the match relation is |a - v| < tolerance, so matching each audio
    peak, in time order, to the earliest free video peak in reach is a maximum matching.
    """
    order_a, order_v = np.argsort(audio, kind="stable"), np.argsort(video, kind="stable")
    a_sorted, v_sorted = np.asarray(audio)[order_a], np.asarray(video)[order_v]
    a_hit = np.zeros(len(a_sorted), dtype=bool)
    v_hit = np.zeros(len(v_sorted), dtype=bool)
    j = 0
    for i, a in enumerate(a_sorted):
        while j < len(v_sorted) and v_sorted[j] <= a - tolerance:
            j += 1  # too early for this and every later audio peak
        if j < len(v_sorted) and v_sorted[j] < a + tolerance:
            a_hit[i] = v_hit[j] = True
            j += 1
    audio_matched = np.zeros(len(a_sorted), dtype=bool)
    video_matched = np.zeros(len(v_sorted), dtype=bool)
    audio_matched[order_a] = a_hit
    video_matched[order_v] = v_hit
    return audio_matched, video_matched


def av_align(audio_peaks: np.ndarray, video_peaks_s: np.ndarray, fps: float) -> AVAlignResult:
    """IoU = M / (|A| + |V| - M) with one-to-one matches within +-1 frame; 0 when both sets are empty."""
    audio_peaks = np.asarray(audio_peaks, dtype=np.float64)
    video_peaks_s = np.asarray(video_peaks_s, dtype=np.float64)
    a_hit, v_hit = match_peaks(audio_peaks, video_peaks_s, 1.0 / fps)
    m = int(a_hit.sum())
    union = len(audio_peaks) + len(video_peaks_s) - m
    score = m / union if union else 0.0
    return AVAlignResult(score, audio_peaks, video_peaks_s, a_hit, v_hit)
