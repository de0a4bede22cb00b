"""The windows pass of a render (``render.windows``, ``render.looks``) on tiny random-weight models: lanes sampled
side by side, the bridges between them, the anchor frame in every window's context, a look per section, and the
frames it counts as settled silence.

The real sampler runs; ``_record_samples`` keeps what each of its calls was given and returned.
"""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_checkpoints

import synesthete.sampling as sampling
from synesthete.checkpoint import Models, load_models
from synesthete.settings import Settings, load_settings


def _record_samples(monkeypatch) -> list[dict]:
    """From now on, every call of the real sampler (``sampling.sample``): its keyword arguments and its result
    (key "out"), in the order of the calls."""
    seen: list[dict] = []
    real = sampling.sample

    def recording(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append({**kwargs, "out": out})
        return out

    monkeypatch.setattr(sampling, "sample", recording)
    return seen


def _two_lanes(tmp_path) -> tuple[Models, Settings]:
    """Tiny random-weight models with an 8-frame window (saved in ``tmp_path``), and settings fitted to them
    that render 2 lanes with 2 overlap frames and 1 anchor."""
    s = load_settings("tiny", dit={"window": 8}).updated(render={"lanes": 2, "overlap": 2, "anchor": 1}, device="cpu")
    models = load_models(s, tiny_checkpoints(tmp_path, s), "cpu")
    return models, models.fitted(s)


@pytest.mark.parametrize("anchor", [0, 1])
def test_anchored_context_holds_the_exemplar_in_every_window(monkeypatch, ckpt_dir, anchor):
    """With render.anchor = a, every window's first a context frames are the exemplar's last a latents and the
    rest are the previous window's last frames; with 0 they are all the previous window's."""
    from synesthete.render import generate_frames, render_seed, style_exemplar

    s = load_settings("tiny").updated(render={"anchor": anchor, "overlap": 2}, device="cpu")
    models = load_models(s, ckpt_dir, "cpu")
    seen = _record_samples(monkeypatch)
    frames = generate_frames(models, torch.randn(s.audio.sample_rate) * 0.1, models.fitted(s), style=["tiles"])
    assert frames.shape[0] == s.video.fps
    exemplar = style_exemplar(models, models.fitted(s), ["tiles"], render_seed(models.fitted(s)))
    assert len(seen) > 3
    for i, call in enumerate(seen):
        past = exemplar[-2:] if i == 0 else seen[i - 1]["out"][0, -2:]
        expected = torch.cat([exemplar[-1:], past[1:]]) if anchor else past
        assert torch.allclose(call["context"][0, :2], expected.float(), atol=1e-6), i


def test_lanes_run_side_by_side_and_bridges_join_them(monkeypatch, tmp_path):
    """render.lanes = 2: every batched sample runs window m of both lanes, each lane starting from the exemplar;
    then one bridge window continues lane 0's end (after the anchor) and leads into lane 1's first frames, and
    its new frames are the ones between the lanes. The render is deterministic and as long as the song."""
    from synesthete.device import autocast
    from synesthete.render import generate_frames, render_seed, style_exemplar, window_layout

    models, s = _two_lanes(tmp_path)
    seen = _record_samples(monkeypatch)
    wave = torch.randn(int(3.5 * s.audio.sample_rate), generator=torch.Generator().manual_seed(0)) * 0.1
    frames = generate_frames(models, wave, s, style=["tiles"])
    total = round(3.5 * s.video.fps)
    assert frames.shape[0] == total
    layout = window_layout(total, 8, 2, 2, True)
    assert layout.lanes == 2 and len(seen) == max(layout.windows) + 1
    exemplar = style_exemplar(models, s, ["tiles"], render_seed(s))
    rounds, bridge = seen[:-1], seen[-1]
    for m, call in enumerate(rounds):
        lanes = sum(n > m for n in layout.windows)  # lane 1 may be a window shorter
        assert call["out"].shape[0] == lanes and lanes >= 1 + (m < min(layout.windows))
        assert call["context_mask"][:, :2].all() and not call["context_mask"][:, 2:].any()
        for lane in range(lanes):
            past = exemplar[-1] if m == 0 else rounds[m - 1]["out"][lane, -1]
            assert torch.allclose(call["context"][lane, 0], exemplar[-1]), (m, lane)  # the anchor
            assert torch.allclose(call["context"][lane, 1], past), (m, lane)
    mask = bridge["context_mask"]
    assert bridge["out"].shape[0] == 1 and mask[0].tolist() == [True, True, False, False, False, False, True, True]
    assert torch.allclose(bridge["context"][0, 0], exemplar[-1])
    assert torch.allclose(bridge["context"][0, 1], rounds[layout.windows[0] - 1]["out"][0, -1])  # lane 0's last
    assert torch.allclose(bridge["context"][0, 6:], rounds[0]["out"][1, 2:4])  # lane 1's first two frames
    start = layout.starts[1]
    with autocast(torch.device("cpu"), s.render.amp):
        between = models.decode(bridge["out"][0, 2:6]).float()
        lane1 = models.decode(rounds[0]["out"][1, 2:8]).float()
    assert torch.allclose(frames[start - 4 : start], between, atol=2e-2)
    assert torch.allclose(frames[start : start + 6], lane1, atol=2e-2)
    assert torch.equal(frames, generate_frames(models, wave, s, style=["tiles"]))


def test_settled_silence_follows_the_eval_definition():
    """settled_silence on a song's features marks the frames the eval counts as settled silence (sound, then
    1 s of digital silence, then sound): none before the silence has lasted eval.settle_seconds."""
    import numpy as np

    from synesthete.audio.features import FeatureExtractor
    from synesthete.metrics.quality import settled, silent_frames
    from synesthete.render import settled_silence

    s = load_settings()
    sr, fps = s.audio.sample_rate, s.video.fps
    wave = torch.randn(3 * sr, generator=torch.Generator().manual_seed(0)) * 0.2
    wave[sr : 2 * sr] = 0
    mine = settled_silence(FeatureExtractor(s.audio, fps)(wave), s).numpy()
    theirs = settled(silent_frames(wave, sr, fps, 3 * fps, s.eval.silence_db), round(s.eval.settle_seconds * fps))
    assert (mine == theirs).mean() >= 0.97 and 15 <= mine.sum() <= 30
    assert not mine[: fps + round(s.eval.settle_seconds * fps)].any() and not mine[2 * fps + 2 :].any()
    assert np.all(mine[fps + 12 : 2 * fps - 2])


def test_section_plan_cuts_on_the_downbeats_of_the_excerpt():
    """The sections that play in an excerpt, from the frame nearest the downbeat each starts on; slivers of a
    section at either end of the excerpt keep their neighbour's look."""
    from synesthete.audio.analysis import Section
    from synesthete.render import MIN_SECTION_FRAMES, section_plan

    class Song:
        sections = [Section(0.0, 10.0, "A"), Section(10.0, 20.0, "B"), Section(20.0, 30.0, "A")]

    plan = section_plan(Song, 8.0, 14.0, 30, 420)
    assert [(f, s.label) for f, s in plan] == [(0, "A"), (60, "B"), (360, "A")]
    assert [(f, s.label) for f, s in section_plan(Song, 9.9, 5.0, 30, 150)] == [(0, "B")]  # a 3-frame sliver of A
    tail = section_plan(Song, 15.0, 5.0 + (MIN_SECTION_FRAMES - 1) / 30, 30, 150 + MIN_SECTION_FRAMES - 1)
    assert [s.label for _, s in tail] == ["B"]
    assert [(f, s.label) for f, s in section_plan(Song, 0.0, 30.0, 30, 900)] == [(0, "A"), (300, "B"), (600, "A")]


@pytest.mark.slow
def test_each_section_starts_from_its_own_look(monkeypatch, tmp_path):
    """Two segments, two looks: the lanes of each are sampled with their look's style and start from (and hold as
    anchor) their look's exemplar, in the same batched samples; the render is as long as the song."""
    from synesthete.render import Look, iter_windows, style_exemplar, window_layout
    from synesthete.styles import style_vector

    models, s = _two_lanes(tmp_path)
    looks = [Look(["tiles"], style_exemplar(models, s, ["tiles"], 1), "A"),
             Look(["waveform"], style_exemplar(models, s, ["waveform"], 1), "B")]
    seen = _record_samples(monkeypatch)
    features = torch.rand(150, 12)
    layout = window_layout(150, 8, 2, 2, True, cuts=(70,))
    frames = torch.cat(list(iter_windows(models, features, s, torch.Generator().manual_seed(0), layout=layout,
                                         looks=looks)))
    assert frames.shape[0] == 150 and layout.lanes >= 2 and layout.cuts == (70,)
    rounds = seen[: max(layout.windows)]
    for m, call in enumerate(rounds):
        active = [lane for lane in range(layout.lanes) if layout.windows[lane] > m]
        for row, lane in enumerate(active):
            look = looks[layout.segment_of(lane)]
            assert torch.equal(call["style"][row], style_vector(look.style)), (m, lane)
            assert torch.allclose(call["context"][row, 0], look.exemplar[-1]), (m, lane)  # its own look's anchor
    for call in seen[max(layout.windows) :]:  # bridges (within segments) keep their segment's look
        assert call["style"].shape[0] == sum(layout.bridged(lane) for lane in range(layout.lanes))
