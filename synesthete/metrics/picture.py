"""Picture metrics: does the video look like the visualizer world, hold its look, and join without seams?

They use the style critic (``models/critic.py``) as their feature network, as FID uses Inception:

* **recognisability**: the critic's mean top-family confidence, and the share of frames whose top family is
  one of the requested (rendered) style's families;
* **FSD** (Fréchet style distance): the Fréchet distance between Gaussian fits of the critic's penultimate
  features of two sets of frames;
* **cut rate**: the share of consecutive frame pairs whose feature distance exceeds a threshold (the 99th
  percentile of the same distance on oracle video), i.e. the picture jumps to another look;
* **look changes**: frames where the picture cuts to another look for good (the mean features of 15 frames
  on either side differ by more than 1.4 times that threshold), the cuts `render` makes between sections;
* **style stability**: the share of frames whose top family is the video's most common top family;
* **held where the truth shows**: of the frames where the ground truth (the visualizers on the same audio)
  reads as the family, the share where the render does too (stability without the quiet frames, in which
  the visualizers draw too little for the critic to name their family);
* **seam score**: mean frame-to-frame change at window joins over the mean change elsewhere (1 = invisible);
* **sharpness**: root mean square gradient magnitude of the grey image (report it as a ratio to the oracle's).

``docs/evaluation.md`` says how to read each, with its floor.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from synesthete.files import atomic_path
from synesthete.media import to_unit

PROBE_HITS_PER_SECOND = 2.5  # mean rate of the aperiodic probe's hits (Poisson: no tempo)
PROBE_NOISE_RMS = 0.03  # the probe's steady noise bed
PROBE_HIT_DECAY = 0.08  # seconds


def recognisability(probs: torch.Tensor, requested: list[int] | None = None) -> dict[str, float]:
    """Mean top-family confidence of probs [T, S]; with ``requested`` family indices, the on-style share."""
    if probs.shape[0] == 0:
        return {"confidence": math.nan, "on_style": math.nan}
    top, idx = probs.max(1)
    out = {"confidence": float(top.mean())}
    out["on_style"] = float(torch.isin(idx, torch.tensor(requested)).float().mean()) if requested else math.nan
    return out


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits of features a [N, D] and b [M, D] (FID's formula).

    ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2), in float64 via eigh.
    """
    a, b = a.double(), b.double()
    if a.shape[0] < 2 or b.shape[0] < 2:
        return math.nan
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    vals, vecs = torch.linalg.eigh(cov_a)
    root_a = (vecs * vals.clamp(min=0).sqrt()) @ vecs.T
    middle = root_a @ cov_b @ root_a
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    value = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * trace_root
    return float(value.clamp(min=0))


def feature_steps(feats: torch.Tensor) -> torch.Tensor:
    """Distances [T - 1] between the critic features of consecutive frames."""
    return (feats[1:] - feats[:-1]).norm(dim=1)


def cut_rate(feats: torch.Tensor, threshold: float) -> float:
    """Share of consecutive frame pairs whose feature distance is above ``threshold``."""
    steps = feature_steps(feats)
    return float((steps > threshold).float().mean()) if steps.numel() else math.nan


LOOK_WINDOW = 15  # frames either side of a look change whose mean critic features are compared (0.5 s)
LOOK_CHANGE = 1.4  # a look change moves that mean by this many cut thresholds (measured: docs/evaluation.md)
LOOK_REFINE = 5  # frames either side of that peak where the one-frame jump of the cut is looked for


def look_changes(feats: torch.Tensor, threshold: float, window: int = LOOK_WINDOW) -> list[int]:
    """Frames i where the picture changes look for good, a cut from one look to another: the mean critic
    features of the ``window`` frames before i and of the ``window`` frames from i differ by more than
    LOOK_CHANGE x ``threshold`` (the critic's cut threshold), the most within ``window`` frames either side,
    placed on the biggest one-frame jump within LOOK_REFINE frames of there. A flash, a one-frame jump or a
    look drifting within a section barely moves a window's mean; a new look moves all of it."""
    t = feats.shape[0]
    if t < 2 * window:
        return []
    csum = torch.cat([feats.new_zeros(1, feats.shape[1]), feats.double().cumsum(0)])
    i = torch.arange(window, t - window + 1)
    before = (csum[i] - csum[i - window]) / window
    after = (csum[i + window] - csum[i]) / window
    change = (before - after).norm(dim=1)  # change[k] is at frame window + k
    steps = feature_steps(feats)  # steps[j] is the jump into frame j + 1
    out = []
    for k in torch.nonzero(change > LOOK_CHANGE * threshold).flatten().tolist():
        if change[k] >= change[max(0, k - window) : k + window + 1].max():
            lo = max(1, window + k - LOOK_REFINE)  # the cut itself: the biggest one-frame jump near the peak
            out.append(lo + int(steps[lo - 1 : window + k + LOOK_REFINE].argmax()))
    return out


def style_stability(probs: torch.Tensor) -> float:
    """Share of frames whose top family is the most common top family of the video."""
    if probs.shape[0] == 0:
        return math.nan
    top = probs.argmax(1)
    return float((top == top.mode().values).float().mean())


def held_where_truth_shows(probs: torch.Tensor, truth_probs: torch.Tensor, family: int) -> float:
    """Of the frames whose ground truth ``truth_probs`` [T, S] has ``family`` on top, the share whose
    ``probs`` [T, S] have it on top too (``recognisability``'s on-style share over those frames); nan where no
    ground-truth frame reads as the family."""
    return recognisability(probs[truth_probs.argmax(1) == family], [family])["on_style"]


def _grey(frames: torch.Tensor) -> torch.Tensor:
    x = to_unit(frames)
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])  # [T, H, W]


def sharpness(frames: torch.Tensor) -> float:
    """Gradient magnitude (forward differences) of the grey frames [T, 3, H, W], as its root mean square over
    pixels and frames; compare frames of one size. The root mean square, not the plain mean: an edge blurred
    over w pixels keeps its plain mean gradient (the same step, spread out), while its mean square falls as
    1/w, so only this one tells a blurred picture from a sharp one."""
    g = _grey(frames)
    dx = g[:, :-1, 1:] - g[:, :-1, :-1]
    dy = g[:, 1:, :-1] - g[:, :-1, :-1]
    return float((dx.pow(2) + dy.pow(2)).mean().sqrt())


def frame_changes(frames: torch.Tensor) -> torch.Tensor:
    """Mean absolute pixel change [T - 1] between consecutive frames (fraction of full scale)."""
    x = to_unit(frames)
    return (x[1:] - x[:-1]).abs().flatten(1).mean(1)


def seam_score(frames: torch.Tensor, joins: list[int]) -> float:
    """Mean frame-to-frame change at the joins over the mean change elsewhere (1 = invisible seams)."""
    change = frame_changes(frames)  # change[i - 1] is the pair (i - 1, i)
    at = torch.zeros_like(change, dtype=torch.bool)
    idx = torch.tensor([j - 1 for j in joins if 1 <= j < frames.shape[0]], dtype=torch.long)
    if idx.numel() == 0 or idx.numel() == change.numel():
        return math.nan
    at[idx] = True
    rest = float(change[~at].mean())
    return float(change[at].mean()) / rest if rest > 0 else math.nan


def aperiodic_probe(seconds: float, sample_rate: int, seed: int = 0) -> torch.Tensor:
    """Mono probe [N]: a steady noise bed with noise hits at Poisson-random times (no tempo, no pattern)."""
    gen = torch.Generator().manual_seed(seed)
    n = max(1, round(seconds * sample_rate))
    wave = torch.randn(n, generator=gen) * PROBE_NOISE_RMS
    count = int(torch.poisson(torch.tensor(seconds * PROBE_HITS_PER_SECOND), generator=gen))
    starts = torch.randint(0, n, (count,), generator=gen)
    length = round(4 * PROBE_HIT_DECAY * sample_rate)
    env = torch.exp(-torch.arange(length) / (PROBE_HIT_DECAY * sample_rate))
    for s, gain in zip(starts.tolist(), (0.3 + 0.5 * torch.rand(count, generator=gen)).tolist(), strict=True):
        span = min(length, n - s)
        wave[s : s + span] += gain * env[:span] * torch.randn(span, generator=gen)
    return wave.clamp(-1, 1)


def compose_sheet(rows: list[torch.Tensor], gap: int = 2, group: int = 2) -> torch.Tensor:
    """A contact sheet image [3, H', W'] in [0, 1]: one row per frames tensor [n, 3, H, W] (all the same
    shape), a thin grey gap between frames, a wider one after every ``group`` rows (e.g. model, oracle)."""
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    n, _, h, w = rows[0].shape
    width = n * w + (n - 1) * gap
    height = sum(h for _ in rows) + (len(rows) - 1) * gap + (len(rows) - 1) // group * 3 * gap
    sheet = torch.full((3, height, width), 0.5)
    y = 0
    for r, row in enumerate(rows):
        if r and r % group == 0:
            y += 3 * gap
        for i in range(row.shape[0]):
            x = i * (w + gap)
            sheet[:, y : y + h, x : x + w] = row[i].float().clamp(0, 1)
        y += h + gap
    return sheet


def write_sheet(path: str | Path, rows: list[torch.Tensor], gap: int = 2, group: int = 2) -> Path:
    """Write ``compose_sheet(rows)`` as a PNG, atomically."""
    sheet = compose_sheet(rows, gap, group)
    image = (sheet.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    path = Path(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            plt.imsave(handle, image, format="png")
    return path


def sheet_times(total: int, count: int) -> torch.Tensor:
    """``count`` frame indices spread evenly over ``total`` frames (centres of equal spans)."""
    return ((torch.arange(count) + 0.5) * total / count).long().clamp(max=max(total - 1, 0))
