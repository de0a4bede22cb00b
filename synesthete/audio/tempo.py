"""Tempo and beats from an onset envelope, the second stage of ``analysis.py``: the autocorrelation of the
envelope read through a log-normal prior on tempo (``estimate_tempo``), two metrical checks
(``metrical_level``), and Ellis's dynamic programme (2007), which places beats on strong onsets spaced about
one period apart (``track_beats``)."""

from __future__ import annotations

import numpy as np

# Tempo: a log-normal prior on tempo, as beat trackers use (librosa: 120 BPM, one octave).
MIN_BPM, MAX_BPM = 50.0, 240.0
PRIOR_BPM, PRIOR_OCTAVES = 120.0, 1.0
OFFBEAT_RATIO = 0.5  # off-beats this strong (loudness flux, against the beats) make the tempo twice as fast
MAX_LEVEL_BPM = 200.0  # the metrical checks make no tempo faster than this (the eighths of a fast song are no beat)
TIGHTNESS = 400.0  # the DP's penalty on beat spacings away from the period (librosa: 100; see docs/analysis.md)
BEAT_DELAY = 0.01  # seconds from a beat's flux frame to the beat: log-mel flux peaks about 10 ms early (measured)

BEATS_PER_BAR = 4


def _strength(envelope: np.ndarray, frames: np.ndarray, reach: int = 2) -> np.ndarray:
    """The envelope's largest value within ``reach`` frames of each frame index."""
    padded = np.pad(envelope, reach)
    idx = np.clip(frames, 0, len(envelope) - 1)
    return np.lib.stride_tricks.sliding_window_view(padded, 2 * reach + 1)[idx].max(1)


def _autocorrelation(envelope: np.ndarray) -> np.ndarray:
    """Unbiased autocorrelation [n] of an envelope with its mean removed."""
    env = np.asarray(envelope, dtype=np.float64)
    env = env - env.mean()
    n = len(env)
    spectrum = np.fft.rfft(env, 2 * n)
    return np.fft.irfft(spectrum * np.conj(spectrum))[:n] / (n - np.arange(n))


def estimate_tempo(envelope: np.ndarray, hop: float) -> float:
    """Tempo (BPM) from the autocorrelation of an onset envelope, weighted by a log-normal prior on tempo."""
    env = np.asarray(envelope, dtype=np.float64)
    min_lag = max(1, int(np.floor(60.0 / MAX_BPM / hop)))
    max_lag = min(len(env) - 1, int(np.ceil(60.0 / MIN_BPM / hop)))
    if max_lag <= min_lag or not np.any(env - env.mean()):
        return PRIOR_BPM
    lags = np.arange(min_lag, max_lag + 1)
    acf = _autocorrelation(env)[lags]
    bpm = 60.0 / (lags * hop)
    prior = np.exp(-0.5 * (np.log2(bpm / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)
    score = acf * prior
    k = int(np.argmax(score))
    lag = float(lags[k])
    if 0 < k < len(score) - 1:  # parabolic interpolation: a sub-frame period, so the beat grid does not drift
        y0, y1, y2 = score[k - 1], score[k], score[k + 1]
        curvature = y0 - 2 * y1 + y2
        if curvature < 0:
            lag += 0.5 * (y0 - y2) / curvature
    return float(60.0 / (lag * hop))


def _bar_repeat(acf: np.ndarray, tempo: float, hop: float) -> float:
    """How strongly the envelope repeats after a bar of BEATS_PER_BAR beats at ``tempo`` (its autocorrelation
    there, the best of +-2 frames)."""
    lag = int(round(BEATS_PER_BAR * 60.0 / tempo / hop))
    return float(acf[max(1, lag - 2) : lag + 3].max()) if lag + 2 < len(acf) else -np.inf


def metrical_level(tempo: float, pulse: np.ndarray, loud: np.ndarray, hop: float) -> tuple[float, np.ndarray]:
    """The beat level of a tempo estimate, and its beats (frames, ``track_beats``): two checks the
    autocorrelation alone gets wrong, neither of which makes a tempo above MAX_LEVEL_BPM.

    * A syncopated bass (kicks on steps 0 and 6 of the bar) can make a dotted quarter look like the beat: of
      ``tempo`` and 1.5 x ``tempo``, the one whose 4-beat bar repeats more is the tempo (a 4/4 bar repeats).
    * When the points halfway between the beats carry at least OFFBEAT_RATIO of the beats' loudness flux
      (``loud``), they are beats too (a half-time groove's snare, a melody in quarter notes), not off-beat
      eighths (hi-hats, a passing note): the tempo is twice as fast.
    """
    acf = _autocorrelation(pulse)
    if 1.5 * tempo <= MAX_LEVEL_BPM and _bar_repeat(acf, 1.5 * tempo, hop) > _bar_repeat(acf, tempo, hop):
        tempo *= 1.5
    beats = track_beats(pulse, hop, tempo)
    if len(beats) < 4 or 2 * tempo > MAX_LEVEL_BPM:
        return tempo, beats
    mids = (beats[1:] + beats[:-1]) // 2
    on = _strength(loud, beats[:-1]).mean()
    if on > 0 and _strength(loud, mids).mean() >= OFFBEAT_RATIO * on:
        tempo *= 2
        beats = track_beats(pulse, hop, tempo)
    return tempo, beats


def track_beats(envelope: np.ndarray, hop: float, tempo: float) -> np.ndarray:
    """Beat frames (indices into ``envelope``) by Ellis's dynamic programme: each beat maximises the onset
    strength it lands on plus the best score of a predecessor, minus TIGHTNESS x log(spacing / period)^2."""
    env = np.asarray(envelope, dtype=np.float64)
    n = len(env)
    period = 60.0 / tempo / hop  # frames per beat
    if n == 0 or not np.any(env) or period < 2:
        return np.zeros(0, dtype=np.int64)
    std = env.std()
    env = env / std if std > 0 else env
    kernel = np.exp(-0.5 * (np.arange(-round(period), round(period) + 1) * 32.0 / period) ** 2)
    local = np.convolve(env, kernel, mode="same")
    lo, hi = int(round(period / 2)), int(round(2 * period))  # predecessors between half and twice a period back
    spacing = np.arange(hi, lo - 1, -1)  # candidate distances back, far to near
    penalty = -TIGHTNESS * np.log(spacing / period) ** 2
    cum = np.zeros(n)
    back = np.full(n, -1, dtype=np.int64)
    thresh = 0.01 * local.max()
    started = False
    for i in range(n):
        first = max(0, spacing[0] - i)  # candidates before frame 0 are cut off
        if first < len(spacing):
            cand = penalty[first:] + cum[i - spacing[first:]]
            best = int(np.argmax(cand))
            if started or local[i] >= thresh:
                back[i] = i - spacing[first + best]
                started = True
            cum[i] = local[i] + cand[best]
        else:
            cum[i] = local[i]
    # The last beat: the last local maximum of the cumulative score that reaches half their median.
    peaks = np.flatnonzero((cum[1:-1] > cum[:-2]) & (cum[1:-1] >= cum[2:])) + 1
    if peaks.size == 0:
        return np.zeros(0, dtype=np.int64)
    last = int(peaks[cum[peaks] >= 0.5 * np.median(cum[peaks])][-1])
    beats = [last]
    while back[beats[-1]] >= 0:
        beats.append(int(back[beats[-1]]))
    beats = np.asarray(beats[::-1], dtype=np.int64)
    # Trim weak beats at both ends (a fade, silence): below half the RMS of the smoothed onset strength there.
    strength = np.convolve(local[beats], np.hanning(5), mode="same")
    keep = strength >= 0.5 * np.sqrt(np.mean(strength**2))
    if keep.any():
        beats = beats[np.argmax(keep) : len(keep) - np.argmax(keep[::-1])]
    return beats


