"""The infinite data engine: procedural (music, features, frames) pairs generated in memory, never on disk.

A clip is a pure function of its seed and the settings (``make_clip``). The stream (``ClipStream``) maps a
global clip index to a seed (``seed_for``) and deals the indices out to ``torchrun`` ranks and DataLoader
workers so that no two of them ever make the same clip:

* rank ``r`` of ``W`` owns the global indices ``j * W + r`` for its local positions ``j = 0, 1, 2, ...``;
* DataLoader workers take whole batches of local positions in turn (worker ``w`` of ``K`` makes batches
  ``w, w + K, w + 2K, ...``, counted from ``start_index``), which is exactly the order in which the
  DataLoader hands batches back.
  So a rank sees its clips in local-position order whatever the worker count, and a run that consumed
  ``n`` clips resumes exactly with ``start_index=n``.

Training seeds live below ``data.heldout_seed_start``; the held-out range above it is for evaluation only.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from synesthete.audio.features import FeatureExtractor, cached_extractor, frames_for
from synesthete.audio.synth import synthesize
from synesthete.media import to_uint8
from synesthete.settings import Settings

SPLITS = ("train", "heldout")


def _stream_offset(base_seed: int, modulus: int) -> int:
    """Where the training stream of ``base_seed`` starts inside [0, modulus): a fixed hash, not Python's."""
    digest = hashlib.sha256(f"synesthete-stream:{base_seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % modulus


def seed_for(index: int, settings: Settings, split: str = "train") -> int:
    """Seed of the ``index``-th clip of a split: train seeds stay below the held-out range, held-out above.

    Train seeds are ``(offset(data.seed) + index) mod heldout_seed_start``: distinct for every index below
    ``heldout_seed_start`` and a different stretch of seeds for each base seed. Held-out seeds are
    ``heldout_seed_start + index`` whatever the base seed, so every run is scored on the same clips.
    """
    if index < 0:
        raise ValueError(f"clip index must be >= 0, got {index}")
    start = settings.data.heldout_seed_start
    if split == "train":
        return (_stream_offset(settings.data.seed, start) + index) % start
    if split == "heldout":
        return start + index
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def feature_extractor(settings: Settings) -> FeatureExtractor:
    """The process's cached FeatureExtractor for these audio settings and frame rate (CPU)."""
    return cached_extractor(settings.audio, settings.video.fps)


@torch.no_grad()
def make_clip(seed: int, settings: Settings, with_frames: bool = True, **synth_overrides: Any) -> dict:
    """One training pair for ``seed``: audio [N], features [T, F], uint8 frames [T, 3, H, W] and metadata.

    ``synth_overrides`` go to ``synthesize`` (e.g. ``drums=True``, ``silence=True``, ``duration=6.0``).
    """
    from synesthete.visual import render_frames, sample_params

    duration = synth_overrides.pop("duration", None)
    wave, score = synthesize(seed, settings, duration=duration, **synth_overrides)  # [N]
    num_frames = frames_for(wave.shape[0], settings.audio.sample_rate, settings.video.fps)
    features = feature_extractor(settings)(wave, num_frames)  # [T, F]
    params = sample_params(random.Random(f"synesthete-visual:{seed}"), settings)
    clip = {"seed": int(seed), "audio": wave, "features": features, "meta": {**score, "visual": params}}
    if with_frames:
        frames = render_frames(features, wave, params, settings)  # [T, 3, H, W] float in [0, 1]
        clip["frames"] = to_uint8(frames)
    return clip


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker setup: one intra-op thread per worker, so workers do not fight over the cores."""
    torch.set_num_threads(1)


class ClipStream(IterableDataset):
    """Infinite stream of ``make_clip`` dicts, sharded over ranks and DataLoader workers without repeats.

    ``batch_size`` should equal the DataLoader's: workers then take whole batches in turn, so the clips
    come out in the rank's index order for any ``num_workers``, and ``start_index`` (clips this rank has
    already consumed) resumes the stream exactly.
    """

    def __init__(
        self,
        settings: Settings,
        split: str = "train",
        start_index: int = 0,
        with_frames: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        batch_size: int = 1,
        **synth_overrides: Any,
    ) -> None:
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if start_index < 0 or batch_size < 1:
            raise ValueError(f"need start_index >= 0 and batch_size >= 1, got {start_index}, {batch_size}")
        if rank is None or world_size is None:
            dist = torch.distributed
            initialised = dist.is_available() and dist.is_initialized()
            rank = (dist.get_rank() if initialised else 0) if rank is None else rank
            world_size = (dist.get_world_size() if initialised else 1) if world_size is None else world_size
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.settings = settings
        self.split = split
        self.start_index = start_index
        self.with_frames = with_frames
        self.rank, self.world_size = rank, world_size
        self.batch_size = batch_size
        self.synth_overrides = synth_overrides

    def positions(self, worker: int = 0, num_workers: int = 1) -> Iterator[int]:
        """Local stream positions (>= start_index) that DataLoader worker ``worker`` of ``num_workers`` makes."""
        batch = worker  # batches counted from start_index; the DataLoader asks workers in turn
        while True:
            first = self.start_index + batch * self.batch_size
            yield from range(first, first + self.batch_size)
            batch += num_workers

    def global_index(self, position: int) -> int:
        """Global clip index of this rank's local stream position."""
        return position * self.world_size + self.rank

    def __iter__(self) -> Iterator[dict]:
        """Yield clips forever (this worker's share)."""
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for position in self.positions(worker, num_workers):
            seed = seed_for(self.global_index(position), self.settings, self.split)
            yield make_clip(seed, self.settings, with_frames=self.with_frames, **self.synth_overrides)


def collate_clips(batch: list[dict]) -> dict:
    """Stack clips: audio [B, N], features [B, T, F], frames [B, T, 3, H, W] (if present), seed [B], meta list."""
    out: dict[str, Any] = {
        "audio": torch.stack([clip["audio"] for clip in batch]),
        "features": torch.stack([clip["features"] for clip in batch]),
        "seed": torch.tensor([clip["seed"] for clip in batch], dtype=torch.long),
        "meta": [clip["meta"] for clip in batch],
    }
    if all("frames" in clip for clip in batch):
        out["frames"] = torch.stack([clip["frames"] for clip in batch])
    return out
