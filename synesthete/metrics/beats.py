"""Scores of a song analysis against exact answers: beat and downbeat F-measure, section boundary hits, labels.

* **F-measure** (MIREX beat tracking): detected times matched one-to-one to reference times closer than a
  window (70 ms), F = 2PR / (P + R).
* **Boundary hits**: the share of reference section boundaries with a detected boundary within a tolerance
  (one bar), and the share of detected boundaries with a reference one (precision).
* **Pairwise label F** (as ``mir_eval.segment.pairwise``): over all pairs of beats, whether the detected labels
  say "same section type" where the reference does.
"""

from __future__ import annotations

import numpy as np

from synesthete.metrics.av_align import match_peaks

BEAT_WINDOW = 0.07  # seconds: the MIREX beat F-measure window


def f_measure(reference: np.ndarray, detected: np.ndarray, window: float = BEAT_WINDOW) -> float:
    """F-measure of ``detected`` times against ``reference`` times, one-to-one within ``window`` s (0 if either
    is empty, 1 if both are)."""
    reference, detected = np.asarray(reference, float), np.asarray(detected, float)
    if reference.size == 0 and detected.size == 0:
        return 1.0
    if reference.size == 0 or detected.size == 0:
        return 0.0
    hits = int(match_peaks(reference, detected, window)[0].sum())
    precision, recall = hits / detected.size, hits / reference.size
    return 2 * precision * recall / (precision + recall) if hits else 0.0


def boundary_hits(reference: np.ndarray, detected: np.ndarray, tolerance: float) -> tuple[float, float]:
    """(hit rate, precision): the share of reference boundaries with a detected one within ``tolerance`` s, and of
    detected boundaries with a reference one, matched one-to-one (NaN where a side is empty)."""
    reference, detected = np.asarray(reference, float), np.asarray(detected, float)
    ref_hit, det_hit = match_peaks(reference, detected, tolerance + 1e-9)
    return (float(ref_hit.mean()) if reference.size else float("nan"),
            float(det_hit.mean()) if detected.size else float("nan"))


def labels_at(times: np.ndarray, sections: list[tuple[float, float, str]]) -> list[str]:
    """The label of the section [start, end) each time falls in ("" outside them all)."""
    out = []
    for t in times:
        out.append(next((label for start, end, label in sections if start <= t < end), ""))
    return out


def pairwise_label_f(reference: list[str], detected: list[str]) -> float:
    """Pairwise F-measure of two labellings of the same items: pairs labelled alike in both over pairs alike in
    each (NaN when neither labels any pair alike)."""
    ref = np.asarray(reference)
    det = np.asarray(detected)
    iu = np.triu_indices(len(ref), 1)
    same_ref = (ref[:, None] == ref[None, :])[iu]
    same_det = (det[:, None] == det[None, :])[iu]
    both = float((same_ref & same_det).sum())
    if not same_ref.any() and not same_det.any():
        return float("nan")
    precision = both / same_det.sum() if same_det.any() else 0.0
    recall = both / same_ref.sum() if same_ref.any() else 0.0
    return 2 * precision * recall / (precision + recall) if both else 0.0
