"""Song analysis from the audio alone: tempo, beats, downbeats and sections (with labels for repeats).

Own DSP on torch and numpy, no model weights (see docs/analysis.md for the method and its measured figures):

1. **Frames** (``FrameAnalyser``, streamed: a song of any length is fed block by block): every 10 ms a
   64-band log-mel spectrum (30 Hz-8 kHz) and a 12-bin chroma (pitch classes of 100 Hz-4 kHz).
2. **Onset envelope**: the mean positive rise of the log-mel bands from frame to frame (spectral flux),
   and the same over the bands below 200 Hz (kick and bass), for accents.
3. **Tempo**: the autocorrelation of the onset envelope, read through a log-normal prior on tempo
   (``estimate_tempo``); **beats**: Ellis's dynamic programme (2007), which places beats on strong onsets
   spaced about one period apart (``track_beats``).
4. **Downbeats**: 4/4 bars; of the four phases, the one whose beats carry the most bass accent and the most
   change of bass and harmony (a bar is where chords change and the kick lands).
5. **Sections**: beat-synchronous timbre (MFCC-like), harmony (chroma) and energy, a self-similarity
   matrix of them, and Foote's checkerboard novelty along its diagonal, read at downbeats: its peaks are
   section boundaries. A section whose music repeats an earlier one (the SSM's diagonal between the two is
   close) gets its label (A, B, A, ...).

``analyse_wave`` analyses a wave in memory, ``analyse_file`` streams a file through FFmpeg (``analyse_song``: with
the checks and the progress bar of `synesthete analyze`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio

ANALYSIS_RATE = 16000  # Hz: songs are decoded (waves resampled) at this rate, mono, for the analysis
HOP_SECONDS = 0.01  # analysis frame rate: 100 frames per second
WINDOW_SECONDS = 0.064  # STFT window (1024 samples at 16 kHz)
N_MELS = 64
MEL_RANGE = (30.0, 8000.0)  # Hz (capped at Nyquist)
LOW_HZ = 200.0  # the bass band of the beat tracker's envelope
ACCENT_HZ = 130.0  # the band of the downbeat accent: kick and bass, under a snare's body (~185 Hz)
CHROMA_RANGE = (100.0, 4000.0)  # Hz
DB_FLOOR = -80.0  # dB (full-scale sine = 0 dB) below which a band counts as silent
N_MFCC = 13

# Tempo: a log-normal prior on tempo, as beat trackers use (librosa: 120 BPM, one octave).
MIN_BPM, MAX_BPM = 50.0, 240.0
PRIOR_BPM, PRIOR_OCTAVES = 120.0, 1.0
OFFBEAT_RATIO = 0.5  # off-beats this strong (loudness flux, against the beats) make the tempo twice as fast
MAX_LEVEL_BPM = 200.0  # the metrical checks make no tempo faster than this (the eighths of a fast song are no beat)
TIGHTNESS = 400.0  # the DP's penalty on beat spacings away from the period (librosa: 100; see docs/analysis.md)
BEAT_DELAY = 0.01  # seconds from a beat's flux frame to the beat: log-mel flux peaks about 10 ms early (measured)

BEATS_PER_BAR = 4
KERNEL_BEATS = 20  # half-width of the checkerboard kernel (5 bars of 4/4)
MIN_SECTION_BARS = 2  # boundaries are at least this many bars apart ...
MIN_SECTION_SECONDS = 5.0  # ... and this many seconds
NOVELTY_THRESHOLD = 0.3  # a boundary's novelty (normalised by the song's largest) is at least this
REPEAT_SIMILARITY = 0.6  # a section repeats an earlier one if their aligned beats are this similar (0-1)


# --------------------------------------------------------------------------------------------- frames
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


def _strength(envelope: np.ndarray, frames: np.ndarray, reach: int = 2) -> np.ndarray:
    """The envelope's largest value within ``reach`` frames of each frame index."""
    padded = np.pad(envelope, reach)
    idx = np.clip(frames, 0, len(envelope) - 1)
    return np.lib.stride_tricks.sliding_window_view(padded, 2 * reach + 1)[idx].max(1)


# --------------------------------------------------------------------------------------------- tempo, beats
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


# --------------------------------------------------------------------------------------------- beat features
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


# --------------------------------------------------------------------------------------------- result
@dataclass(frozen=True)
class Section:
    """A section of a song: [start, end) in seconds and its label (a repeated section shares its label)."""

    start: float
    end: float
    label: str


@dataclass
class SongAnalysis:
    """What ``analyse_wave`` / ``analyse_file`` heard: tempo (BPM), beat and downbeat times (s), sections, and the
    novelty curve (at ``novelty_times``, the beats) the section boundaries were picked from."""

    duration: float
    tempo: float
    beats: np.ndarray
    downbeats: np.ndarray
    sections: list[Section]
    novelty: np.ndarray
    novelty_times: np.ndarray
    onset_envelope: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    hop: float = HOP_SECONDS
    seconds: float = 0.0  # time the analysis took

    @property
    def beats_per_bar(self) -> int:
        return BEATS_PER_BAR

    def to_dict(self, times: bool = True) -> dict[str, Any]:
        """JSON-ready: every beat and downbeat time with ``times``, else their counts only."""
        out: dict[str, Any] = {
            "duration": round(self.duration, 3), "tempo": round(self.tempo, 2), "beats_per_bar": BEATS_PER_BAR,
            "beat_count": int(len(self.beats)), "downbeat_count": int(len(self.downbeats)),
            "sections": [{"start": round(s.start, 3), "end": round(s.end, 3), "label": s.label}
                         for s in self.sections],
        }
        if times:
            out["beats"] = [round(float(t), 3) for t in self.beats]
            out["downbeats"] = [round(float(t), 3) for t in self.downbeats]
        return out


def analyse_frames(frames: Frames) -> SongAnalysis:
    """Tempo, beats, downbeats and sections of a song's ``Frames``."""
    hop, duration = frames.hop, frames.duration
    flux, low = onset_envelopes(frames)
    empty = SongAnalysis(duration, 0.0, np.zeros(0), np.zeros(0), [Section(0.0, duration, "A")] if duration > 0 else [],
                         np.zeros(0), np.zeros(0), flux, hop)
    if frames.num_frames < 4 or not np.any(flux):
        return empty
    pulse = flux + low  # the bass band counted twice: kick and bass mark the beat, hats and melody fill in
    tempo, beat_frames = metrical_level(estimate_tempo(pulse, hop), pulse, loudness_flux(frames), hop)
    if len(beat_frames) < 2:
        return dataclasses.replace(empty, tempo=tempo)
    beats = beat_frames * hop + BEAT_DELAY
    feats = beat_features(frames, beat_frames, low, flux)
    phase = downbeat_phase(feats)
    down_idx = np.arange(phase, len(beat_frames), BEATS_PER_BAR)
    ssm = self_similarity(feats)
    novelty = foote_novelty(ssm)
    starts = _boundaries(novelty, down_idx, beats)
    bounds = [0, *starts, len(beat_frames)]
    labels = _labels(ssm, bounds[:-1], bounds[1:])
    # A boundary between two sections of the same music is no change of part: they are one section.
    starts = [b for b, prev, lab in zip(starts, labels[:-1], labels[1:], strict=True) if lab != prev]
    labels = [lab for i, lab in enumerate(labels) if i == 0 or lab != labels[i - 1]]
    times = [0.0, *[float(beats[i]) for i in starts], duration]
    sections = [Section(round(a, 4), round(b, 4), lab) for a, b, lab in zip(times[:-1], times[1:], labels, strict=True)]
    return SongAnalysis(duration, tempo, beats, beats[down_idx], sections, novelty, beats, flux, hop)


def analyse_wave(wave: torch.Tensor, sample_rate: int) -> SongAnalysis:
    """Analyse a mono wave [N] (or [C, N], downmixed) in memory, resampled to ANALYSIS_RATE as a file is."""
    import time

    t0 = time.perf_counter()
    wave = wave.float()
    if wave.ndim == 2:
        wave = wave.mean(0)
    if sample_rate != ANALYSIS_RATE:
        wave = torchaudio.functional.resample(wave, sample_rate, ANALYSIS_RATE)
    out = analyse_frames(frame_features(wave, ANALYSIS_RATE))
    out.seconds = time.perf_counter() - t0
    return out


def analyse_file(path: str | Path, sample_rate: int = ANALYSIS_RATE, progress: Any = None) -> SongAnalysis:
    """Analyse an audio file, streamed: FFmpeg decodes it at ``sample_rate``, mono, 30 s at a time, so a song of
    any length costs its frame features only. ``progress(seconds)`` (if given) hears how far it has got."""
    import time

    from synesthete.media import AudioReader

    t0 = time.perf_counter()
    analyser = FrameAnalyser(sample_rate)
    block = 30 * sample_rate
    with AudioReader(path, sample_rate, 1, chunk_seconds=30.0) as reader:
        while True:
            wave = reader.read(block)
            if wave.shape[-1]:
                analyser.feed(wave[0])
            if progress is not None:
                progress(analyser.samples / sample_rate)
            if wave.shape[-1] < block:
                break
    out = analyse_frames(analyser.finish())
    out.seconds = time.perf_counter() - t0
    return out


def analyse_song(path: str | Path, progress: bool = False) -> SongAnalysis:
    """``analyse_file`` with the checks and the progress bar of `synesthete analyze`: a file that is no audio, or
    has none that decodes, is an InputError."""
    from synesthete.console import make_progress
    from synesthete.errors import InputError
    from synesthete.media import audio_info

    path = Path(path)
    info = audio_info(path)  # a missing file or one without audio: one line
    if info.duration <= 0:
        raise InputError(f"{path} has no audio samples (zero-length)")
    with make_progress(disable=not progress) as bar:
        task = bar.add_task("analysing", total=max(1, round(info.duration)), info="seconds of audio")
        out = analyse_file(path, progress=lambda seconds: bar.update(task, completed=round(seconds)))
        bar.update(task, completed=max(1, round(info.duration)))
    if out.duration <= 0:
        raise InputError(f"{path} has no decodable audio (the file is truncated or damaged)")
    return out
