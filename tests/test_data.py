"""The infinite data engine: clips, seeding across workers and ranks, the held-out range, exact resume."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch.utils.data import DataLoader

from synesthete.audio.features import num_features
from synesthete.data import ClipStream, collate_clips, make_clip, seed_for, worker_init_fn
from synesthete.settings import load_settings


def _seeds(stream: ClipStream, clips: int, batch_size: int, num_workers: int) -> list[int]:
    """Seeds of the first ``clips`` clips a real DataLoader hands back."""
    loader = DataLoader(
        stream, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_clips,
        worker_init_fn=worker_init_fn,
    )
    seeds: list[int] = []
    for batch in itertools.islice(loader, clips // batch_size):
        seeds.extend(batch["seed"].tolist())
    return seeds


def test_make_clip_shapes_and_determinism(tiny):
    clip = make_clip(7, tiny)
    frames_per_clip = tiny.clip_frames
    n = round(tiny.audio.clip_seconds * tiny.audio.sample_rate)
    assert clip["seed"] == 7
    assert clip["audio"].shape == (n,) and clip["audio"].dtype == torch.float32
    assert clip["features"].shape == (frames_per_clip, num_features(tiny.audio))
    assert clip["frames"].shape == (frames_per_clip, 3, tiny.video.height, tiny.video.width)
    assert clip["frames"].dtype == torch.uint8
    meta = json.loads(json.dumps(clip["meta"]))
    assert meta["seed"] == 7 and "visual" in meta and meta["onsets"] and "beats" in meta
    again = make_clip(7, tiny)
    assert torch.equal(clip["audio"], again["audio"])
    assert torch.equal(clip["features"], again["features"])
    assert torch.equal(clip["frames"], again["frames"])
    assert clip["meta"] == again["meta"]
    other = make_clip(8, tiny)
    assert not torch.equal(clip["audio"], other["audio"])
    assert "frames" not in make_clip(7, tiny, with_frames=False)
    # Overrides reach the synthesiser (probes for eval).
    probe = make_clip(7, tiny, with_frames=False, drums=True, silence=True, duration=2.0)
    assert probe["meta"]["silences"] and probe["meta"]["onsets"]["kick"]
    assert probe["features"].shape[0] == round(2.0 * tiny.video.fps)


def test_seed_ranges_train_and_heldout_never_meet(tiny):
    start = tiny.data.heldout_seed_start
    train = [seed_for(i, tiny) for i in range(20000)]
    assert len(set(train)) == len(train)
    assert all(0 <= s < start for s in train)
    assert [seed_for(i, tiny, "heldout") for i in range(5)] == [start + i for i in range(5)]
    # Another base seed: another stream, same held-out clips.
    other = tiny.updated(data={"seed": 1})
    assert [seed_for(i, other) for i in range(100)] != train[:100]
    assert seed_for(3, other, "heldout") == seed_for(3, tiny, "heldout")
    # A small held-out boundary wraps the train stream below it instead of crossing it.
    small = tiny.updated(data={"heldout_seed_start": 50})
    wrapped = [seed_for(i, small) for i in range(500)]
    assert max(wrapped) < 50 and len(set(wrapped[:50])) == 50
    heldout_stream = ClipStream(small, split="heldout", with_frames=False)
    assert all(clip["seed"] >= 50 for clip in itertools.islice(iter(heldout_stream), 3))
    with pytest.raises(ValueError):
        seed_for(0, tiny, "test")


def test_workers_give_distinct_streams_in_index_order(tiny):
    batch_size, clips = 3, 12
    stream = ClipStream(tiny, with_frames=True, batch_size=batch_size, rank=0, world_size=1)
    with_workers = _seeds(stream, clips, batch_size, num_workers=2)
    assert len(set(with_workers)) == clips
    # Two workers hand back exactly the single-process stream, in index order.
    assert with_workers == [seed_for(i, tiny) for i in range(clips)]
    assert _seeds(stream, clips, batch_size, num_workers=0) == with_workers


def test_ranks_give_distinct_streams(tiny):
    per_rank = 6
    rank_seeds = [
        [clip["seed"] for clip in itertools.islice(iter(ClipStream(tiny, with_frames=False, rank=r, world_size=2)),
                                                    per_rank)]
        for r in range(2)
    ]
    assert not set(rank_seeds[0]) & set(rank_seeds[1])
    # Together the ranks cover the first 2 * per_rank global indices.
    assert sorted(rank_seeds[0] + rank_seeds[1]) == sorted(seed_for(i, tiny) for i in range(2 * per_rank))
    with pytest.raises(ValueError):
        ClipStream(tiny, rank=2, world_size=2)


def test_start_index_resumes_the_stream_exactly(tiny):
    batch_size = 2
    full = ClipStream(tiny, with_frames=False, batch_size=batch_size, rank=1, world_size=2)
    uninterrupted = _seeds(full, 10, batch_size, num_workers=2)
    # Stop after 3 batches (not a multiple of the worker count) and resume from the clips consumed.
    resumed = ClipStream(tiny, with_frames=False, batch_size=batch_size, rank=1, world_size=2, start_index=6)
    assert _seeds(resumed, 4, batch_size, num_workers=2) == uninterrupted[6:]
    first = next(iter(resumed))
    assert torch.equal(first["audio"], make_clip(uninterrupted[6], tiny, with_frames=False)["audio"])


def test_collate_stacks_a_batch(tiny):
    batch = collate_clips([make_clip(s, tiny) for s in (1, 2)])
    t = tiny.clip_frames
    assert batch["audio"].shape == (2, round(tiny.audio.clip_seconds * tiny.audio.sample_rate))
    assert batch["features"].shape == (2, t, num_features(tiny.audio))
    assert batch["frames"].shape == (2, t, 3, tiny.video.height, tiny.video.width)
    assert batch["seed"].tolist() == [1, 2] and batch["seed"].dtype == torch.long
    assert [m["seed"] for m in batch["meta"]] == [1, 2]


def test_env_override_changes_the_clip_length(monkeypatch):
    monkeypatch.setenv("SYNESTHETE_AUDIO__CLIP_SECONDS", "0.5")
    settings = load_settings("tiny")
    assert settings.audio.clip_seconds == 0.5
    clip = make_clip(3, settings)
    assert clip["audio"].shape == (8000,)
    assert clip["frames"].shape[0] == 15 == settings.clip_frames


def test_pool_windows_carry_an_anchor_frame_from_their_own_clip(tiny):
    """ClipPool.windows gives each window a frame of its own clip (the training anchor), at random moments."""
    from synesthete.data import ClipPool

    s = tiny.updated(train={"clip_pool": 3, "fresh_clips": 1})
    pool = ClipPool(s, 3, 0, 1, print)
    gen = torch.Generator().manual_seed(0)
    frames, feats, styles, anchors = pool.windows(12, s.dit.window, s.dit.audio_context, gen)
    assert anchors.shape == (12, *frames.shape[2:]) and anchors.dtype == torch.uint8
    for window, anchor in zip(frames, anchors, strict=True):
        (clip,) = [c for c in pool.clips if any(torch.equal(window[0], f) for f in c["frames"])]
        assert any(torch.equal(anchor, f) for f in clip["frames"])
    assert len({a.float().sum().item() for a in anchors}) > 1
