"""The window layout (``render.layout``) on its own: pure geometry, checked against a frame-by-frame reference.

The reference places every window the way ``render.windows`` samples it (lane windows from
``starts[lane] - lead + m * stride``, bridges from ``starts[lane] - gap - overlap``) and follows which window
shows each song frame; the layout's own figures (starts, limits, joins, end) must agree with it.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from synesthete.render import layout as layout_module
from synesthete.render.layout import MIN_LANE_WINDOWS, WindowLayout, window_layout

TOTALS = (1, 2, 5, 7, 8, 9, 15, 60, 61, 180, 301, 1801)


def _owners(layout: WindowLayout) -> dict[int, list[tuple]]:
    """Song frame -> the windows that show it: ("lane", lane, m) or ("bridge", lane), each window's new
    frames being those after its context, up to where the lane's frames stop being shown."""
    owners: dict[int, list[tuple]] = {}
    for lane, start in enumerate(layout.starts):
        shown = min(layout.limit(lane), layout.total)
        if layout.bridged(lane):
            first = start - layout.gap - layout.overlap  # the bridge window's frame 0
            for f in range(first + layout.overlap, first + layout.window - layout.overlap):  # between contexts
                owners.setdefault(f, []).append(("bridge", lane))
        for m in range(layout.windows[lane]):
            first = start - layout.lead + m * layout.stride  # the window's frame 0, as render.windows samples it
            context = layout.lead if m == 0 else layout.overlap
            for f in range(max(first + context, 0), min(first + layout.window, shown)):
                owners.setdefault(f, []).append(("lane", lane, m))
    return owners


def _layouts(asked: list[int] | None = None):
    """Layouts of a grid of songs (very short ones too), windows, overlaps, lane counts and exemplar or not;
    ``asked`` (if given) hears the lane count each was asked for."""
    for total, window, overlap, lanes, exemplar in itertools.product(TOTALS, (8, 16), (0, 1, 2, 4, 7), (1, 2, 4),
                                                                     (True, False)):
        if asked is not None:
            asked.append(lanes)
        yield window_layout(total, window, overlap, lanes, exemplar)


def test_every_frame_is_shown_by_exactly_one_window():
    for layout in _layouts():
        owners = _owners(layout)
        assert sorted(owners) == list(range(layout.total)), layout
        assert all(len(o) == 1 for o in owners.values()), layout


def test_joins_are_where_the_showing_window_changes():
    """A join is a frame whose window is not its predecessor's: inside lanes, and on both sides of a bridge."""
    for layout in _layouts():
        owners = _owners(layout)
        changes = [f for f in range(1, layout.total) if owners[f] != owners[f - 1]]
        assert layout.joins() == changes, layout


def test_lanes_are_laid_end_to_end_with_a_bridge_of_gap_frames_between():
    """A bridged lane starts gap frames after the lane before ends; the bridge window's context is that lane's
    last ``overlap`` frames and this lane's first ``overlap``, so it spans exactly one window."""
    for layout in _layouts():
        assert layout.gap + 2 * layout.overlap == layout.window
        for lane in range(1, layout.lanes):
            if not layout.bridged(lane):
                continue
            before_end = layout.starts[lane - 1] + layout.lane_frames(lane - 1)
            assert layout.starts[lane] == before_end + layout.gap
            assert layout.limit(lane - 1) == before_end  # nothing of the lane before is dropped
            bridge = layout.starts[lane] - layout.gap - layout.overlap
            assert bridge == before_end - layout.overlap  # its first context frames: the end of the lane before
            assert bridge + layout.window - layout.overlap == layout.starts[lane]  # its last: this lane's start
            assert layout.lane_frames(lane) >= layout.overlap


def test_consecutive_windows_of_a_lane_share_overlap_frames():
    for layout in _layouts():
        assert layout.stride == layout.window - layout.overlap
        for lane, start in enumerate(layout.starts):
            firsts = [start - layout.lead + m * layout.stride for m in range(layout.windows[lane])]
            assert all(b - a == layout.window - layout.overlap for a, b in itertools.pairwise(firsts))
            new_end = firsts[-1] + layout.window  # the lane's frames end where its last window does
            assert new_end == start + layout.lane_frames(lane)


def test_the_last_lane_reaches_the_end_without_a_spare_window():
    for layout in _layouts():
        last = layout.lanes - 1
        made_end = layout.starts[last] + layout.lane_frames(last)
        assert layout.limit(last) == layout.total and layout.end == made_end >= layout.total
        spare = layout.stride if layout.windows[last] > 1 else layout.first
        assert made_end - layout.total < spare, layout


def test_lane_counts_and_lengths():
    """At most the lanes asked for; more than one only with room for a bridge and at least MIN_LANE_WINDOWS
    windows each; the lanes are even (the last may be shorter)."""
    asked: list[int] = []
    for layout in _layouts(asked):
        assert 1 <= layout.lanes <= asked[-1]
        if layout.lanes > 1:
            assert layout.overlap >= 1 and layout.gap >= 1
            assert min(layout.windows[:-1]) >= MIN_LANE_WINDOWS
            assert len(set(layout.windows[:-1])) == 1 and layout.windows[-1] <= layout.windows[0]


@pytest.mark.parametrize("total", [1, 2, 7, 8, 9, 15])
def test_very_short_songs_take_one_lane(total):
    layout = window_layout(total, 8, 2, 4, True)
    assert layout.lanes == 1 and layout.starts == [0] and not layout.bridged(0)
    assert layout.windows == (1 + max(0, -(-(total - layout.first) // layout.stride)),)
    assert layout.joins() == [f for f in range(1, total) if f >= layout.first and (f - layout.first) % 6 == 0]
    one = window_layout(1, 8, 2, 4, False)
    assert one.windows == (1,) and one.first == 8 and one.end == 8 and one.joins() == []


def test_a_short_song_gets_fewer_lanes_than_asked():
    """Lanes come one by one as the song grows: the shortest song with n lanes has lanes of MIN_LANE_WINDOWS."""
    layouts = [window_layout(total, 8, 2, 4, True) for total in range(1, 400)]
    lanes = [layout.lanes for layout in layouts]
    assert lanes == sorted(lanes) and lanes[0] == 1 and lanes[-1] == 4
    for n in (2, 3, 4):
        shortest = layouts[lanes.index(n)]
        assert shortest.windows[:-1] == (MIN_LANE_WINDOWS,) * (n - 1), shortest


def test_context_is_clamped_and_bridges_need_room():
    assert window_layout(100, 8, 20).overlap == 7  # at most window - 1 context frames
    assert window_layout(300, 8, 0, 4).lanes == 1  # no context to join lanes through
    assert window_layout(300, 8, 4, 4).lanes == 1  # 4 + 4 context frames leave no room for a bridge
    assert window_layout(300, 8, 2, 1, False).joins()[:3] == [8, 14, 20]  # no exemplar: the first window gives 8


def test_more_lanes_never_take_more_batched_samples():
    """The layout takes the fewest batched samples (its longest lane) of 1..lanes lanes, then the fewest lanes."""
    for total in (60, 180, 301, 600, 1801):
        rounds = [max(window_layout(total, 8, 2, n, True).windows) for n in range(1, 7)]
        assert rounds == sorted(rounds, reverse=True)
        assert window_layout(total, 8, 2, 6, True).lanes == min(
            n for n in range(1, 7) if max(window_layout(total, 8, 2, n, True).windows) == rounds[-1])


@pytest.mark.parametrize("cuts", [(200, 430), (50,), (400, 900, 1500), (30, 60), (1, 2), (599,)])
def test_cuts_start_segments_without_bridges(cuts):
    total = 1801 if max(cuts) > 600 else 600
    layout = window_layout(total, 8, 2, 4, True, cuts=cuts)
    assert layout.cuts == cuts and sum(layout.segment_lanes) == layout.lanes
    firsts = [lane for lane in range(layout.lanes) if not layout.bridged(lane)]
    assert [layout.starts[lane] for lane in firsts] == [0, *cuts]
    assert [layout.segment_of(lane) for lane in firsts] == list(range(len(cuts) + 1))
    assert all(layout.limit(lane - 1) == layout.starts[lane] for lane in firsts[1:])  # a cut ends the segment
    owners = _owners(layout)
    assert sorted(owners) == list(range(total)) and all(len(o) == 1 for o in owners.values())
    assert not set(cuts) & set(layout.joins())
    bounds = [0, *cuts, total]
    alone = [window_layout(b - a, 8, 2, 4, True) for a, b in itertools.pairwise(bounds)]
    assert max(layout.windows) == max(max(seg.windows) for seg in alone)  # the longest segment sets the rounds


def test_cuts_outside_the_song_are_dropped_and_sorted():
    layout = window_layout(600, 8, 2, 4, True, cuts=[430, 0, 200, 200, 600, 900, -5])
    assert layout.cuts == (200, 430)
    assert window_layout(600, 8, 2, 4, True, cuts=()) == window_layout(600, 8, 2, 4, True)


def test_bridges_stay_out_of_silences_given_as_any_bool_array():
    """``quiet`` may be a numpy array: the layout needs no torch. A bridge and both its joins fall in sound."""
    even = window_layout(600, 8, 2, 4, True)
    quiet = np.zeros(600, dtype=bool)
    quiet[even.starts[2] - 10 : even.starts[2] + 10] = True
    moved = window_layout(600, 8, 2, 4, True, quiet)
    assert moved.lanes == 4 and moved.starts[2] != even.starts[2]
    assert all(not quiet[s - moved.gap : s + 1].any() for s in moved.starts[1:])
    owners = _owners(moved)
    assert sorted(owners) == list(range(600)) and all(len(o) == 1 for o in owners.values())


def test_the_layout_module_is_pure():
    """Geometry only: at run time the module imports numpy and the standard library, nothing of the project
    (no model, no settings, no I/O) and not torch (only for annotations)."""
    tree = ast.parse(Path(layout_module.__file__).read_text())
    imported = set()
    for node in tree.body:  # module level; ``if TYPE_CHECKING:`` blocks are not run
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "math", "dataclasses", "typing", "numpy"}, imported
    assert "torch" not in vars(layout_module)


def _made_and_joins(layout):
    """Every frame a layout makes, in order of making within lanes and bridges, and where windows begin."""
    made, joins = [], []
    for i, start in enumerate(layout.starts):
        if i:
            made += range(start - layout.gap, start)  # the bridge
            joins += [start - layout.gap, start]
        made += range(start, start + layout.first)
        for m in range(1, layout.windows[i]):
            joins.append(start + layout.first + (m - 1) * layout.stride)
            made += range(joins[-1], joins[-1] + layout.stride)
    return made, joins


@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("exemplar", [True, False])
def test_window_layout_covers_every_frame_once(lanes, exemplar):
    """Lanes and bridges tile the song: every frame is made exactly once, and the joins are where a new window's
    frames begin; a short song gets fewer lanes, each of at least MIN_LANE_WINDOWS windows."""
    for total in (5, 60, 180, 300, 1801):
        layout = window_layout(total, 8, 2, lanes, exemplar)
        assert 1 <= layout.lanes <= lanes and (layout.lanes == 1 or min(layout.windows) >= MIN_LANE_WINDOWS)
        made, joins = _made_and_joins(layout)
        assert [f for f in made if f < total] == list(range(total)), (total, lanes)
        assert layout.joins() == sorted(j for j in joins if 0 < j < total)
        assert len(set(layout.windows[:-1])) <= 1 and layout.windows[-1] <= layout.windows[0]  # even lanes
    assert window_layout(300, 8, 2, 4, True).lanes == 4
    assert window_layout(300, 8, 4, 4, True).lanes == 1  # no room for a bridge between 4 + 4 context frames
    assert window_layout(300, 8, 2, 1, False).joins()[:3] == [8, 14, 20]  # no exemplar: the first window gives 8


def test_bridges_stay_out_of_silences():
    """A bridge would fall in a silence: it moves to where the music plays, or, if the silence is too long to
    leave, that boundary goes and the lanes are fewer. Either way every frame is still made once."""
    even = window_layout(600, 8, 2, 4, True)
    quiet = torch.zeros(600, dtype=torch.bool)
    quiet[even.starts[2] - 10 : even.starts[2] + 10] = True  # a short silence over the second boundary
    moved = window_layout(600, 8, 2, 4, True, quiet)
    assert moved.lanes == 4 and moved.starts[1] == even.starts[1] and moved.starts[2] != even.starts[2]
    for start in moved.starts[1:]:
        assert not quiet[start - moved.gap : start + 1].any()
    quiet[even.starts[2] - 60 : even.starts[2] + 60] = True  # too long to leave within a quarter of a lane
    fewer = window_layout(600, 8, 2, 4, True, quiet)
    assert fewer.lanes == 3 and all(not quiet[s - fewer.gap : s + 1].any() for s in fewer.starts[1:])
    for layout in (moved, fewer):
        made, _ = _made_and_joins(layout)
        assert [f for f in made if f < 600] == list(range(600))


def _shown(layout):
    """The song frames each lane (with the bridge into it) puts on screen, lane by lane."""
    out = []
    for lane, start in enumerate(layout.starts):
        first = start - (layout.gap if layout.bridged(lane) else 0)
        out.append(list(range(first, min(layout.limit(lane), layout.total))))
    return out


def test_cut_layout_tiles_every_frame_once_and_never_bridges_a_cut():
    """With cuts (sections) every frame is still shown once; a segment's first lane starts on its cut with no
    bridge into it (the picture cuts there); no join is listed at a cut; the longest segment sets the number
    of batched samples and shorter segments use no more lanes than that needs."""
    for total, cuts in ((600, (200, 430)), (300, (50,)), (1801, (400, 900, 1500)), (90, (30, 60))):
        layout = window_layout(total, 8, 2, 4, True, cuts=cuts)
        assert layout.cuts == cuts and sum(layout.segment_lanes) == layout.lanes
        assert [f for lane in _shown(layout) for f in lane] == list(range(total)), (total, cuts)
        firsts = [lane for lane in range(layout.lanes) if not layout.bridged(lane)]
        assert [layout.starts[lane] for lane in firsts] == [0, *cuts]
        assert not set(cuts) & set(layout.joins())
        bounds = [0, *cuts, total]
        rounds = max(max(window_layout(b - a, 8, 2, 4, True).windows) for a, b in zip(bounds, bounds[1:], strict=False))
        assert max(layout.windows) == rounds
    assert window_layout(600, 8, 2, 4, True, cuts=()) == window_layout(600, 8, 2, 4, True)
