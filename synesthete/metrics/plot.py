"""PNGs at a glance: sync (onset envelope and motion curve on one time axis, peaks marked) and a song analysis
(the section novelty curve with its boundaries, the onset envelope with beats and downbeats)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from synesthete.files import atomic_path
from synesthete.metrics.sync import SyncAnalysis

if TYPE_CHECKING:
    from synesthete.audio.analysis import SongAnalysis

MATCHED, UNMATCHED_AUDIO, UNMATCHED_VIDEO = "#2ca02c", "#d62728", "#ff7f0e"
ENVELOPE_COLOR, MOTION_COLOR = "#1f77b4", "#444444"


def _unit(x: np.ndarray) -> np.ndarray:
    span = float(x.max() - x.min()) if x.size else 0.0
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def plot_sync(path: str | Path, panels: list[tuple[str, SyncAnalysis]]) -> Path:
    """Write one panel per (title, analysis) to ``path`` (PNG, atomically); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(13, 2.8 * len(panels)), squeeze=False, sharex=True)
    for ax, (title, a) in zip(axes[:, 0], panels, strict=True):
        env_t = a.envelope.times
        keep = env_t < a.duration
        ax.plot(env_t[keep], _unit(a.envelope.values[keep]), color=ENVELOPE_COLOR, lw=1.0, label="audio onset strength")
        frame_t = np.arange(len(a.motion)) / a.fps
        motion = _unit(a.motion)
        ax.plot(frame_t, motion, color=MOTION_COLOR, lw=1.2, label="visual motion (optical flow)")
        for t, hit in zip(a.av.audio_peaks, a.av.audio_matched, strict=True):
            ax.axvline(t, color=MATCHED if hit else UNMATCHED_AUDIO, lw=0.8, alpha=0.6, ls="-" if hit else "--")
        vi = np.rint(a.av.video_peaks * a.fps).astype(int).clip(0, max(len(motion) - 1, 0))
        for hit, color, label in ((True, MATCHED, "matched peak"), (False, UNMATCHED_VIDEO, "unmatched video peak")):
            sel = a.av.video_matched == hit
            ax.scatter(a.av.video_peaks[sel], motion[vi[sel]], color=color, s=28, zorder=3, label=label)
        ax.plot([], [], color=UNMATCHED_AUDIO, ls="--", lw=0.8, label="unmatched audio peak")
        if a.music_beats.size:
            ax.scatter(a.music_beats, np.full(a.music_beats.shape, -0.06), marker="^", color="k", s=14,
                       label="music beats" + ("" if a.beats_known else " (estimated)"))
        ax.set_ylim(-0.12, 1.08)
        ax.set_title(f"{title}  AV-Align {a.av.score:.3f}  BAS {a.bas:.3f}  "
                     f"({a.av.matches} of {len(a.av.audio_peaks)} audio / {len(a.av.video_peaks)} video peaks matched)",
                     fontsize=10, loc="left")
        ax.set_ylabel("normalised")
    axes[-1, 0].set_xlabel("time (s)")
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False)
    return _save(fig, path, dpi=110)


SECTION_COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7")


def plot_analysis(path: str | Path, analysis: SongAnalysis, title: str = "") -> Path:
    """Write a song analysis to ``path`` (PNG, atomically): the novelty curve with the section boundaries and
    labelled sections above, the onset envelope with the downbeats below; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = analysis
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 4.2), sharex=True, height_ratios=(3, 2))
    labels = sorted({s.label for s in a.sections})
    for s in a.sections:
        color = SECTION_COLORS[labels.index(s.label) % len(SECTION_COLORS)]
        top.axvspan(s.start, s.end, color=color, alpha=0.18, lw=0)
        top.text((s.start + s.end) / 2, 1.04, s.label, ha="center", va="bottom", fontsize=9, color=color,
                 fontweight="bold")
    top.plot(a.novelty_times, a.novelty, color="#333333", lw=1.0, label="novelty (checkerboard on the SSM)")
    for s in a.sections[1:]:
        top.axvline(s.start, color="#d62728", lw=1.2)
    top.plot([], [], color="#d62728", lw=1.2, label="section boundary (a downbeat)")
    top.set_ylim(0, 1.15)
    top.set_ylabel("novelty")
    top.legend(loc="upper right", fontsize=7, frameon=False, bbox_to_anchor=(1.0, 0.98))
    head = f"{title}  " if title else ""
    top.set_title(f"{head}{a.tempo:.1f} BPM, {len(a.beats)} beats, {len(a.downbeats)} downbeats, "
                  f"{len(a.sections)} sections ({''.join(s.label for s in a.sections)})", fontsize=10, loc="left")
    env = a.onset_envelope
    if env.size:
        step = max(1, int(round(0.05 / a.hop)))  # 50 ms bins: enough for the eye, a small file
        n = env.size // step * step
        binned = env[:n].reshape(-1, step).max(1) if n else env
        bottom.plot((np.arange(binned.size) * step + step / 2) * a.hop, _unit(binned), color=ENVELOPE_COLOR, lw=0.6,
                    label="onset strength")
    for t in a.downbeats:
        bottom.axvline(t, color="#444444", lw=0.5, alpha=0.5)
    bottom.plot([], [], color="#444444", lw=0.5, label="downbeats")
    bottom.set_ylabel("onsets")
    bottom.set_xlabel("time (s)")
    bottom.set_xlim(0, a.duration)
    bottom.legend(loc="upper right", fontsize=7, frameon=False)
    return _save(fig, path, dpi=90)


def _save(fig, path: str | Path, dpi: int) -> Path:
    """Lay ``fig`` out, write it to ``path`` as a PNG atomically, and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path
