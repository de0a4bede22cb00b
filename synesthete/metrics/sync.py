"""One call that scores a video against its audio: AV-Align, BAS, flicker and silence response."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from synesthete.audio.analysis import SongAnalysis, analyse_wave
from synesthete.metrics.av_align import AVAlignResult, av_align, video_peaks
from synesthete.metrics.bas import beat_alignment, visual_beats
from synesthete.metrics.flow import motion_curve
from synesthete.metrics.onsets import OnsetEnvelope, audio_peaks
from synesthete.metrics.quality import flicker, settled, silence_response, silent_frames
from synesthete.settings import Settings


@dataclass
class SyncAnalysis:
    """Everything measured on one (video, audio) pair, kept for tables and plots."""

    fps: float
    duration: float  # seconds scored (the overlap of video and audio)
    video_seconds: float
    audio_seconds: float
    motion: np.ndarray  # [T] mean flow magnitude (pixels) per frame
    envelope: OnsetEnvelope
    av: AVAlignResult
    music_beats: np.ndarray
    beats_known: bool
    tempo: float | None
    visual_beats: np.ndarray
    bas: float
    silent: np.ndarray  # [T] bool
    flicker: float
    motion_silence: float
    motion_sound: float
    silence_ratio: float
    notes: list[str] = field(default_factory=list)
    song: SongAnalysis | None = None  # the song analysis the estimated beats came from (no known beats)

    def metrics(self) -> dict[str, float]:
        """Scalar metrics (NaN where undefined), e.g. for TensorBoard or JSON."""
        return {
            "av_align": self.av.score,
            "audio_peaks": float(len(self.av.audio_peaks)),
            "video_peaks": float(len(self.av.video_peaks)),
            "matched_peaks": float(self.av.matches),
            "bas": self.bas,
            "flicker": self.flicker,
            "motion_silence": self.motion_silence,
            "motion_sound": self.motion_sound,
            "silence_ratio": self.silence_ratio,
            "silent_fraction": float(np.mean(self.silent)) if self.silent.size else math.nan,
        }


def overlap(num_frames: int, fps: float, num_samples: int, sample_rate: int) -> tuple[int, int, list[str]]:
    """Frames and samples of the common span of a video and an audio track, and a note if they differ."""
    video_s, audio_s = num_frames / fps, num_samples / sample_rate
    span = min(video_s, audio_s)
    frames = min(num_frames, int(math.floor(span * fps + 1e-6)))
    samples = min(num_samples, int(round(frames / fps * sample_rate)))
    notes = []
    if abs(video_s - audio_s) >= 1.0 / fps:
        longer = "video" if video_s > audio_s else "audio"
        notes.append(
            f"audio is {audio_s:.2f} s and video {video_s:.2f} s: scored the overlap ({frames / fps:.2f} s), "
            f"ignoring the last {abs(video_s - audio_s):.2f} s of the {longer}"
        )
    return frames, samples, notes


def analyse(
    frames: torch.Tensor,
    wave: torch.Tensor,
    sample_rate: int,
    fps: float,
    settings: Settings,
    beats: list[float] | np.ndarray | None = None,
    strict: bool | None = None,
    motion: np.ndarray | None = None,
) -> SyncAnalysis:
    """Score frames [T, 3, H, W] (uint8 or float [0, 1]) against ``wave`` ([N] or [C, N]) over their overlap.

    ``beats`` are known music beat times (procedural clips); without them the song analysis
    (``audio.analysis.analyse_wave``) finds them, and its result is kept (``song``: downbeats, sections).
    ``strict`` overrides ``settings.eval.strict`` (published peak rule, no noise threshold). ``motion`` is
    the frames' precomputed ``motion_curve`` (to score one video against several soundtracks cheaply).
    """
    ev = settings.eval
    strict = ev.strict if strict is None else strict
    wave = wave.reshape(-1, wave.shape[-1]).float().mean(0)  # [N] mono
    video_s, audio_s = frames.shape[0] / fps, wave.shape[-1] / sample_rate
    t, n, notes = overlap(frames.shape[0], fps, wave.shape[-1], sample_rate)
    frames, wave = frames[:t], wave[:n]
    duration = t / fps

    if motion is None:
        motion = motion_curve(frames, ev).numpy()
    motion = np.asarray(motion, dtype=np.float64)[:t]  # [T]
    a_peaks, env = audio_peaks(wave, sample_rate)
    a_peaks = a_peaks[a_peaks < duration]
    av = av_align(a_peaks, video_peaks(motion, fps, ev.peak_threshold, strict), fps)

    song = None
    if beats is not None:
        music = np.asarray(beats, dtype=np.float64)
        music, tempo, known = music[(music >= 0) & (music < duration)], None, True
    else:
        song = analyse_wave(wave, sample_rate)
        tempo, music, known = song.tempo, song.beats[song.beats < duration], False
    vis = visual_beats(motion, fps, ev.bas_smooth_frames, ev.peak_threshold, strict)
    bas = beat_alignment(music, vis, ev.bas_sigma_frames / fps)

    silent = silent_frames(wave, sample_rate, fps, t, ev.silence_db)
    quiet = settled(silent, int(round(ev.settle_seconds * fps)))
    m_quiet, m_sound, ratio = silence_response(motion, quiet, ~silent)
    return SyncAnalysis(
        fps=fps, duration=duration, video_seconds=video_s, audio_seconds=audio_s, motion=motion,
        envelope=env, av=av, music_beats=music, beats_known=known, tempo=tempo, visual_beats=vis, bas=bas,
        silent=silent, flicker=flicker(frames, quiet), motion_silence=m_quiet, motion_sound=m_sound,
        silence_ratio=ratio, notes=notes, song=song,
    )


def sync_metrics(
    frames: torch.Tensor,
    wave: torch.Tensor,
    sample_rate: int,
    fps: float,
    settings: Settings,
    beats: list[float] | np.ndarray | None = None,
) -> dict[str, float]:
    """Scalar sync metrics of frames [T, 3, H, W] against ``wave`` [N]: for TensorBoard during training."""
    return analyse(frames, wave, sample_rate, fps, settings, beats=beats).metrics()
