"""Downbeats and sections from beat-synchronous features, the third stage of ``analysis.py``: 4/4 bars on the
phase whose beats carry the most bass accent and change (``downbeat_phase``); a self-similarity matrix of
timbre, harmony and energy and Foote's checkerboard novelty along its diagonal, read at downbeats, for section
boundaries; and a label per section, shared by sections whose music repeats (``find_sections``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from synesthete.audio.frames import LOW_HZ, Frames
from synesthete.audio.tempo import BEATS_PER_BAR

ACCENT_HZ = 130.0  # the band of the downbeat accent: kick and bass, under a snare's body (~185 Hz)
N_MFCC = 13
KERNEL_BEATS = 20  # half-width of the checkerboard kernel (5 bars of 4/4)
MIN_SECTION_BARS = 2  # boundaries are at least this many bars apart ...
MIN_SECTION_SECONDS = 5.0  # ... and this many seconds
NOVELTY_THRESHOLD = 0.3  # a boundary's novelty (normalised by the song's largest) is at least this
REPEAT_SIMILARITY = 0.6  # a section repeats an earlier one if their aligned beats are this similar (0-1)


def _mfcc(mel_db: np.ndarray) -> np.ndarray:
    """MFCC-like timbre [J, N_MFCC]: the DCT-II of the log-mel spectrum (coefficient 0 is the level)."""
    m = mel_db.shape[1]
    basis = np.cos(np.pi / m * (np.arange(m)[None, :] + 0.5) * np.arange(N_MFCC)[:, None])  # [C, M]
    return mel_db @ basis.T / m


def _pool(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Mean of frame values [J, D] over the spans [bounds[k], bounds[k + 1]) -> [K, D] (empty spans: the frame)."""
    csum = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
    lo, hi = bounds[:-1], np.maximum(bounds[1:], bounds[:-1] + 1).clip(max=len(values))
    lo = lo.clip(max=len(values) - 1)
    return (csum[hi] - csum[lo]) / np.maximum(hi - lo, 1)[:, None]


def _zscore(x: np.ndarray) -> np.ndarray:
    std = x.std(0)
    return (x - x.mean(0)) / np.where(std > 1e-9, std, 1.0)


@dataclass
class BeatFeatures:
    """Per beat span [beat k, beat k + 1): timbre, harmony, bass spectrum, level, onset density, accent."""

    timbre: np.ndarray  # [K, N_MFCC - 1] MFCC 1.. (z-scored over the song)
    chroma: np.ndarray  # [K, 12] unit-norm
    bass: np.ndarray  # [K, b] log-mel bands below LOW_HZ
    level: np.ndarray  # [K] mean log-mel level (dB)
    density: np.ndarray  # [K] mean onset flux
    accent: np.ndarray  # [K] onset strength below ACCENT_HZ at the beat


def beat_features(frames: Frames, beats: np.ndarray, low_env: np.ndarray, flux: np.ndarray) -> BeatFeatures:
    """Beat-synchronous features of the spans between consecutive ``beats`` (frame indices; the last beat's
    span runs one beat on)."""
    period = int(np.median(np.diff(beats))) if len(beats) > 1 else 1
    bounds = np.concatenate([beats, [min(frames.num_frames, beats[-1] + period)]])
    mfcc = _pool(_mfcc(frames.mel_db), bounds)
    chroma = _pool(frames.chroma, bounds)
    chroma = chroma / np.maximum(np.linalg.norm(chroma, axis=1, keepdims=True), 1e-9)
    low = frames.mel_hz < LOW_HZ
    bass = _pool(frames.mel_db[:, low] if low.any() else frames.mel_db[:, :1], bounds)
    reach = 3  # frames either side of a beat where its accent is read
    kick = frames.mel_db[:, frames.mel_hz < ACCENT_HZ]
    rise = np.diff(kick, axis=0, prepend=kick[:1]).clip(min=0).mean(1) if kick.shape[1] else low_env
    padded = np.pad(rise, reach)
    accent = np.array([padded[b : b + 2 * reach + 1].max() for b in beats])
    return BeatFeatures(
        timbre=_zscore(mfcc[:, 1:]), chroma=chroma, bass=bass, level=mfcc[:, 0],
        density=_pool(flux[:, None], bounds)[:, 0], accent=accent,
    )


def downbeat_phase(feats: BeatFeatures) -> int:
    """Which beat of every BEATS_PER_BAR starts a bar: the phase whose beats carry the most onset strength below
    ACCENT_HZ (the kick) and the most change of the bass spectrum from the beat before (the bass moves to the
    bar's chord), each z-scored over the song."""
    k = len(feats.accent)
    if k < 2 * BEATS_PER_BAR:
        return 0

    def z(x: np.ndarray) -> np.ndarray:
        std = x.std()
        return (x - x.mean()) / std if std > 0 else x * 0

    bass_change = np.zeros(k)
    bass_change[1:] = np.linalg.norm(feats.bass[1:] - feats.bass[:-1], axis=1)
    cue = z(feats.accent) + z(bass_change)
    return int(np.argmax([cue[p::BEATS_PER_BAR].mean() for p in range(BEATS_PER_BAR)]))


# --------------------------------------------------------------------------------------------- sections
def self_similarity(feats: BeatFeatures) -> np.ndarray:
    """Beat-by-beat similarity [K, K] in [0, 1]: exp(-d^2 / median d^2) of timbre, harmony and energy."""
    x = np.concatenate([
        feats.timbre / math.sqrt(feats.timbre.shape[1]),
        feats.chroma,
        _zscore(feats.level[:, None]), _zscore(feats.density[:, None]),
    ], axis=1)
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    scale = np.median(d2[np.triu_indices(len(x), 1)]) if len(x) > 1 else 1.0
    return np.exp(-d2 / max(scale, 1e-9))


def foote_novelty(ssm: np.ndarray, half: int = KERNEL_BEATS) -> np.ndarray:
    """Novelty [K] at the start of each beat: a Gaussian-tapered checkerboard kernel of ``half`` beats a side
    slid along the diagonal of ``ssm`` (cross-similarity of the past and future counted against, self-
    similarity of each counted for), normalised to a largest value of 1."""
    k = len(ssm)
    if k < 2:
        return np.zeros(k)
    offsets = np.arange(-half, half) + 0.5
    taper = np.exp(-0.5 * (offsets / (0.5 * half)) ** 2)
    sign = np.sign(offsets)
    kernel = np.outer(sign, sign) * np.outer(taper, taper)  # [2h, 2h]: + within each side, - across
    padded = np.pad(ssm, half)
    out = np.array([(padded[i : i + 2 * half, i : i + 2 * half] * kernel).sum() for i in range(k)])
    out = out.clip(min=0)
    return out / out.max() if out.max() > 0 else out


def _boundaries(novelty: np.ndarray, downbeats: np.ndarray, times: np.ndarray) -> list[int]:
    """Beat indices of section starts: downbeats whose novelty is at least NOVELTY_THRESHOLD and the highest
    within a shortest section either side, taken strongest first, a shortest section (MIN_SECTION_BARS bars and
    MIN_SECTION_SECONDS) apart and from the song's ends; ``times`` are the beats' times."""
    values = novelty[downbeats]
    bar = float(np.median(np.diff(times[downbeats]))) if len(downbeats) > 1 else 1.0
    shortest = max(MIN_SECTION_BARS * bar, MIN_SECTION_SECONDS) - 0.5 * bar  # a bar's slack for timing

    def near(a: float, b: float) -> bool:
        return abs(a - b) < shortest

    chosen: list[int] = []
    for i in np.argsort(-values, kind="stable"):
        if values[i] < NOVELTY_THRESHOLD:
            break
        t = times[downbeats[i]]
        if any(values[j] > values[i] and near(times[downbeats[j]], t) for j in range(len(values))):
            continue  # not the peak of its neighbourhood
        if near(t, times[0]) or near(t, times[-1]):
            continue  # a song's first and last moments are not sections of their own
        if not any(near(times[c], t) for c in chosen):
            chosen.append(int(downbeats[i]))
    return sorted(chosen)


def _repeat_similarity(ssm: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> float:
    """How alike two sections' music is: the mean of the SSM's diagonal between them, aligned at their starts
    give or take two bars (a song's first section starts at its first beat, not on its first bar line)."""
    best = 0.0
    for shift in range(-2 * BEATS_PER_BAR, 2 * BEATS_PER_BAR + 1):
        i0, j0 = a[0] + max(0, shift), b[0] + max(0, -shift)
        n = min(a[1] - i0, b[1] - j0)
        if n >= 2 * BEATS_PER_BAR:
            best = max(best, float(np.mean(ssm[i0 + np.arange(n), j0 + np.arange(n)])))
    return best


def _labels(ssm: np.ndarray, starts: list[int], ends: list[int]) -> list[str]:
    """A letter per section: the most alike earlier section's when their music repeats (``_repeat_similarity``
    reaches REPEAT_SIMILARITY), else the next new letter."""
    labels: list[str] = []
    spans = list(zip(starts, ends, strict=True))
    for j, span in enumerate(spans):
        sims = [_repeat_similarity(ssm, spans[i], span) for i in range(j)]
        best = int(np.argmax(sims)) if sims else -1
        if best >= 0 and sims[best] >= REPEAT_SIMILARITY:
            labels.append(labels[best])
        else:
            labels.append(_letter(len(set(labels))))
    return labels


def _letter(i: int) -> str:
    """A, B, ..., Z, AA, AB, ..."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(ord("A") + r) + out
    return out


def find_sections(
    feats: BeatFeatures, downbeats: np.ndarray, times: np.ndarray
) -> tuple[np.ndarray, list[int], list[str]]:
    """(novelty [K], beat indices where the sections after the first start, a label per section) of a song's
    beats: ``downbeats`` are beat indices, ``times`` the beats' times."""
    ssm = self_similarity(feats)
    novelty = foote_novelty(ssm)
    starts = _boundaries(novelty, downbeats, times)
    bounds = [0, *starts, len(times)]
    labels = _labels(ssm, bounds[:-1], bounds[1:])
    # A boundary between two sections of the same music is no change of part: they are one section.
    starts = [b for b, prev, lab in zip(starts, labels[:-1], labels[1:], strict=True) if lab != prev]
    labels = [lab for i, lab in enumerate(labels) if i == 0 or lab != labels[i - 1]]
    return novelty, starts, labels
