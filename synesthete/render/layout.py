"""Where a render's windows fall in the song: lanes generated side by side, bridges between them, cuts.

Pure geometry on frame counts (no model, no I/O): ``window_layout`` plans a ``WindowLayout`` from the song's
length, the window, the context overlap, the lane count, and optionally the frames in silence (bridges are
kept out of them) and the cuts where sections start. ``render.windows`` samples the windows it lays out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

MIN_LANE_WINDOWS = 8  # a lane (render.lanes) runs at least this many windows: shorter songs get fewer lanes


@dataclass(frozen=True)
class WindowLayout:
    """Where the windows of a render fall in the song's ``total`` frames (made by ``window_layout``).

    The song is cut at ``cuts`` (frames where a section starts, in a new look) into segments, ``segments[g]``
    lanes each (all lanes in one segment without cuts). Lane i, ``windows[i]`` windows long, covers
    ``lane_frames(i)`` frames from ``starts[i]``; the lanes are generated side by side, window m of every lane
    that has one in one batched sample. A lane's first window gives ``first`` = window - lead new frames (it
    continues ``lead`` context frames: its look's style exemplar, or none) and each later one ``stride`` =
    window - overlap. Between two lanes of a segment a bridge window makes the ``gap`` = window - 2 overlap
    frames in between: its context is the first lane's last ``overlap`` frames and the next one's first
    ``overlap``. A segment's first lane starts on its cut, with no bridge: the picture cuts there. A segment's
    last lane may run past the segment's end (``limit``); those frames are dropped.
    """

    total: int
    window: int
    overlap: int
    lead: int
    windows: tuple[int, ...]  # windows of each lane
    cuts: tuple[int, ...] = ()  # frames where a segment (a section, in its own look) starts, 0 < cut < total
    segments: tuple[int, ...] = ()  # lanes of each segment; () = all lanes in one

    @property
    def lanes(self) -> int:
        return len(self.windows)

    @property
    def stride(self) -> int:
        return self.window - self.overlap

    @property
    def first(self) -> int:
        return self.window - self.lead

    @property
    def gap(self) -> int:
        return self.window - 2 * self.overlap

    def lane_frames(self, lane: int) -> int:
        return self.first + (self.windows[lane] - 1) * self.stride

    @property
    def segment_lanes(self) -> tuple[int, ...]:
        return self.segments or (self.lanes,)

    def segment_of(self, lane: int) -> int:
        """The segment (0 before the first cut) that ``lane`` belongs to."""
        return int(np.searchsorted(np.cumsum(self.segment_lanes), lane, side="right"))

    def bridged(self, lane: int) -> bool:
        """Whether a bridge leads into ``lane`` (it is not the first lane of its segment)."""
        return lane > 0 and self.segment_of(lane - 1) == self.segment_of(lane)

    @property
    def starts(self) -> list[int]:
        out: list[int] = []
        for lane in range(self.lanes):
            if lane and self.bridged(lane):
                out.append(out[-1] + self.lane_frames(lane - 1) + self.gap)
            else:
                out.append(0 if lane == 0 else self.cuts[self.segment_of(lane) - 1])
        return out

    def limit(self, lane: int) -> int:
        """The frame after the last of ``lane``'s frames that the render shows (the next lane's bridge, the next
        cut, or the song's end)."""
        if lane + 1 < self.lanes:
            start = self.starts[lane + 1]
            return start - self.gap if self.bridged(lane + 1) else start
        return self.total

    @property
    def end(self) -> int:
        """The frame after the farthest lane's last (it may lie past ``total``)."""
        return max(start + self.lane_frames(i) for i, start in enumerate(self.starts))

    def joins(self) -> list[int]:
        """Frames i (0 < i < total) where a new window's frames begin, so the pair (i - 1, i) spans a join:
        between a lane's windows, and at both ends of every bridge (not at cuts: those are meant to be seen)."""
        out = []
        for i, start in enumerate(self.starts):
            if self.bridged(i):
                out += [start - self.gap, start]  # into the bridge, out of it into the lane
            out += [j for j in (start + self.first + m * self.stride for m in range(self.windows[i] - 1))
                    if j < self.limit(i)]
        return sorted(j for j in out if 0 < j < self.total)


def _lane_options(total: int, window: int, overlap: int, lead: int, lanes: int,
                  quiet: torch.Tensor | None) -> list[tuple[int, ...]]:
    """Candidate lane layouts (windows per lane) of a stretch of ``total`` frames with 1..``lanes`` lanes."""
    stride, first, gap = window - overlap, window - lead, window - 2 * overlap

    def covering(frames: int) -> int:  # windows of a lane that covers ``frames`` frames
        return 1 + max(0, math.ceil((frames - first) / stride))

    def even(lanes: int) -> int:  # windows per lane of ``lanes`` even lanes; 0 if they would be too short
        each = covering(math.ceil((total - (lanes - 1) * gap) / lanes))
        fits = each >= MIN_LANE_WINDOWS and (lanes - 1) * (first + (each - 1) * stride + gap) < total
        return each if lanes == 1 or fits else 0

    def place(lanes: int, each: int) -> tuple[int, ...]:  # boundaries moved out of silences, or dropped
        spacing = first + (each - 1) * stride + gap  # from one lane's start to the next, evenly
        reach = max(1, each // 4) * stride  # how far a boundary may move
        windows: list[int] = []
        start = 0  # of the lane being laid out
        for i in range(1, lanes):
            options = []
            for n in range(1, covering(total) + 1):
                nxt = start + first + (n - 1) * stride + gap  # the next lane's start after n windows of this one
                if abs(nxt - i * spacing) <= reach and nxt + first < total:
                    if quiet is None or not bool(quiet[max(0, nxt - gap) : nxt + 1].any()):
                        options.append((abs(nxt - i * spacing), n))
            if options:
                windows.append(min(options)[1])
                start += first + (windows[-1] - 1) * stride + gap
        return (*windows, covering(total - start))

    most = max(1, lanes) if overlap >= 1 and gap >= 1 else 1
    return [place(n, even(n)) for n in range(1, most + 1) if even(n)]


def window_layout(total: int, window: int, overlap: int, lanes: int = 1, exemplar: bool = True,
                  quiet: torch.Tensor | None = None, cuts: tuple[int, ...] | list[int] = ()) -> WindowLayout:
    """The layout of a render of ``total`` frames in windows of ``window`` frames continuing ``overlap`` context
    frames, in up to ``lanes`` lanes (``render.lanes``) of about equal length, each at least
    ``MIN_LANE_WINDOWS`` windows long.

    ``quiet`` (bool [T], ``settled_silence``) keeps bridges out of silences: a bridge joins two lanes that
    were generated apart, and the picture, at rest in a silence, would move there. Each lane boundary moves
    by up to a quarter of a lane from its even spot to where the bridge and both its joins fall in sound; a
    boundary with no such spot is dropped (one lane fewer, a longer one). Of such layouts for 1..``lanes``
    lanes, the one that takes the fewest batched samples wins (then the fewest lanes). Lanes need context to
    join through (overlap >= 1) and room for a bridge (window > 2 overlap); otherwise, or for a short song,
    there is one lane: windows one after another, as ``lanes=1`` gives.

    ``cuts`` (frames, ``render.sections``) split the song into segments that start in a look of their own:
    each is laid out as a song of its own, up to ``lanes`` lanes, no bridge across a cut. The longest segment
    decides how many batched samples the render takes; every other segment takes the fewest lanes that fit
    in as many.
    """
    overlap = max(0, min(overlap, window - 1))
    lead = overlap if exemplar else 0
    cuts = tuple(sorted({int(c) for c in cuts if 0 < c < total}))
    if not cuts:
        layouts = _lane_options(total, window, overlap, lead, lanes, quiet)
        best = min(layouts, key=lambda w: (max(w), len(w)))  # the fewest batched samples, then the fewest lanes
        return WindowLayout(total, window, overlap, lead, best)
    bounds = [0, *cuts, total]
    options = [_lane_options(b - a, window, overlap, lead, lanes, quiet[a:b] if quiet is not None else None)
               for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    rounds = max(min(max(w) for w in opts) for opts in options)
    chosen = [min((w for w in opts if max(w) <= rounds), key=len) for opts in options]
    return WindowLayout(total, window, overlap, lead, tuple(n for w in chosen for n in w), cuts,
                        tuple(len(w) for w in chosen))
