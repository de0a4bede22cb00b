"""A PNG that shows sync at a glance: onset envelope and motion curve on one time axis, peaks marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synesthete.files import atomic_path
from synesthete.metrics.sync import SyncAnalysis

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
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
