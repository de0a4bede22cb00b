"""Song analysis from the audio alone: tempo, beats, downbeats and sections (with labels for repeats).

Own DSP on torch and numpy, no model weights (see docs/analysis.md for the method and its measured figures):

1. **Frames** (``frames.py``: ``FrameAnalyser``, streamed: a song of any length is fed block by block): every 10 ms a
   64-band log-mel spectrum (30 Hz-8 kHz) and a 12-bin chroma (pitch classes of 100 Hz-4 kHz).
2. **Onset envelope**: the mean positive rise of the log-mel bands from frame to frame (spectral flux),
   and the same over the bands below 200 Hz (kick and bass), for accents.
3. **Tempo** (``tempo.py``): the autocorrelation of the onset envelope, read through a log-normal prior on tempo
   (``estimate_tempo``); **beats**: Ellis's dynamic programme (2007), which places beats on strong onsets
   spaced about one period apart (``track_beats``).
4. **Downbeats** (``sections.py``): 4/4 bars; of the four phases, the one whose beats carry the most bass
   accent and the most change of bass and harmony (a bar is where chords change and the kick lands).
5. **Sections** (``sections.py``): beat-synchronous timbre (MFCC-like), harmony (chroma) and energy, a
   self-similarity matrix of them, and Foote's checkerboard novelty along its diagonal, read at downbeats: its
   peaks are section boundaries. A section whose music repeats an earlier one (the SSM's diagonal between the
   two is close) gets its label (A, B, A, ...).

``analyse_wave`` analyses a wave in memory, ``analyse_file`` streams a file through FFmpeg (``analyse_song``: with
the checks and the progress bar of `synesthete analyze`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio

from synesthete.audio.frames import HOP_SECONDS, FrameAnalyser, Frames, frame_features, loudness_flux, onset_envelopes
from synesthete.audio.sections import beat_features, downbeat_phase, find_sections
from synesthete.audio.tempo import BEAT_DELAY, BEATS_PER_BAR, estimate_tempo, metrical_level
from synesthete.console import make_progress
from synesthete.errors import InputError
from synesthete.media import AudioReader, audio_info

ANALYSIS_RATE = 16000  # Hz: songs are decoded (waves resampled) at this rate, mono, for the analysis


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
    novelty, starts, labels = find_sections(feats, down_idx, beats)
    times = [0.0, *[float(beats[i]) for i in starts], duration]
    sections = [Section(round(a, 4), round(b, 4), lab) for a, b, lab in zip(times[:-1], times[1:], labels, strict=True)]
    return SongAnalysis(duration, tempo, beats, beats[down_idx], sections, novelty, beats, flux, hop)


def analyse_wave(wave: torch.Tensor, sample_rate: int) -> SongAnalysis:
    """Analyse a mono wave [N] (or [C, N], downmixed) in memory, resampled to ANALYSIS_RATE as a file is."""
    t0 = time.perf_counter()
    wave = wave.float()
    if wave.ndim == 2:
        wave = wave.mean(0)
    if sample_rate != ANALYSIS_RATE:
        wave = torchaudio.functional.resample(wave, sample_rate, ANALYSIS_RATE)
    out = analyse_frames(frame_features(wave, ANALYSIS_RATE))
    out.seconds = time.perf_counter() - t0
    return out


def analyse_file(path: str | Path, sample_rate: int = ANALYSIS_RATE,
                 progress: Callable[[float], None] | None = None) -> SongAnalysis:
    """Analyse an audio file, streamed: FFmpeg decodes it at ``sample_rate``, mono, 30 s at a time, so a song of
    any length costs its frame features only. ``progress(seconds)`` (if given) hears how far it has got."""
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
