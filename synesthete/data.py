"""The infinite data engine: (music, features, frames) pairs generated in memory, never on disk.

The music is procedural, mixed with excerpts of real songs when ``data.music_dirs`` names folders of them
(``stream_clip``, ``synesthete.music``); the frames are the visualizers' drawing of that audio either way.

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

import contextlib
import hashlib
import math
import random
import signal
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import IterableDataset, get_worker_info

from synesthete.audio.features import FeatureExtractor, at_level, cached_extractor, frames_for
from synesthete.audio.synth import synthesize
from synesthete.media import to_uint8
from synesthete.music import LEVEL_JITTER_DB, SPEED, MusicLibrary, Song, excerpt, uses_music
from synesthete.settings import Settings
from synesthete.styles import clip_style, style_vector
from synesthete.visual import render_frames, sample_params

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
    duration = synth_overrides.pop("duration", None)
    wave, score = synthesize(seed, settings, duration=duration, **synth_overrides)  # [N]
    return draw_clip(seed, wave, score, settings, with_frames)


@torch.no_grad()
def make_music_clip(song: Song, seed: int, settings: Settings, with_frames: bool = True) -> dict:
    """One training pair from a real song: an augmented excerpt (``music.excerpt``) drawn as ``make_clip`` draws.

    ``meta["music"]`` says which file, where and how it was augmented; there are no exact beats.
    An excerpt louder than about ``render.level`` is turned down to it (``level_gain``, to a target drawn
    within ``LEVEL_JITTER_DB`` of it), before the visualizers draw it: render turns a song down the same way
    before the Brain hears it, so the Brain trains at the level it renders at. ``meta["music"]["level_db"]``
    is that gain (0 for an excerpt already under it).
    """
    wave, how = excerpt(song, seed, settings.audio.clip_seconds, settings.audio.sample_rate)
    num_frames = frames_for(wave.shape[0], settings.audio.sample_rate, settings.video.fps)
    extract = feature_extractor(settings)
    jitter = random.Random(f"synesthete-music-level:{seed}").uniform(-LEVEL_JITTER_DB, LEVEL_JITTER_DB)
    features, gain = at_level(lambda g: extract(wave * g, num_frames), settings,
                              settings.render.level * 10 ** (jitter / 20))
    how = {**how, "level_db": round(20 * math.log10(gain), 2)}
    return draw_clip(seed, wave * gain, {"music": how}, settings, with_frames, features)


def draw_clip(seed: int, wave: torch.Tensor, meta: dict, settings: Settings, with_frames: bool,
              features: torch.Tensor | None = None) -> dict:
    """Features [T, F] of ``wave`` [N] (``features``, if the caller has them) and, with ``with_frames``, the
    visualizers' frames in the look of ``seed``."""
    if features is None:
        num_frames = frames_for(wave.shape[0], settings.audio.sample_rate, settings.video.fps)
        features = feature_extractor(settings)(wave, num_frames)  # [T, F]
    params = sample_params(random.Random(f"synesthete-visual:{seed}"), settings)
    clip = {"seed": int(seed), "audio": wave, "features": features, "meta": {**meta, "visual": params}}
    if with_frames:
        frames = render_frames(features, wave, params, settings)  # [T, 3, H, W] float in [0, 1]
        clip["frames"] = to_uint8(frames)
    return clip


def music_library(settings: Settings) -> MusicLibrary | None:
    """The songs of ``data.music_dirs`` (None without any), scanned once per process and settings."""
    data = settings.data
    if not data.music_dirs:
        return None
    key = (tuple(str(p) for p in data.music_dirs), data.music_heldout, settings.audio.clip_seconds)
    if key not in _LIBRARIES:
        _LIBRARIES[key] = MusicLibrary.scan(list(data.music_dirs), data.music_heldout,
                                            min_seconds=settings.audio.clip_seconds * (1 + SPEED) + 0.2)
    return _LIBRARIES[key]


_LIBRARIES: dict[tuple, MusicLibrary] = {}


def stream_clip(seed: int, settings: Settings, split: str, library: MusicLibrary | None, with_frames: bool = True,
                **synth_overrides: Any) -> dict:
    """The stream's clip for ``seed``: a real-music excerpt for a ``data.music_share`` of the seeds when a
    library is given, else (and otherwise) the procedural clip."""
    if library is not None and not synth_overrides and uses_music(seed, settings.data.music_share):
        return make_music_clip(library.pick(seed, split), seed, settings, with_frames)
    return make_clip(seed, settings, with_frames=with_frames, **synth_overrides)


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
        self.music = music_library(settings)  # scanned here, in the main process: a bad folder fails at once

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
            yield stream_clip(seed, self.settings, self.split, self.music, self.with_frames, **self.synth_overrides)


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


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the data engine on one intra-op thread (its small tensor ops gain nothing from more).

    On a busy CPU, OpenMP's two-thread barriers wait for a descheduled thread at every small op, so a clip
    made on 2 threads under load took many times longer than on 1, while on an idle CPU the two are as fast
    (docs/experiments/2026-11-25-training-throughput.md). DataLoader workers already run single-threaded
    (``data.worker_init_fn``).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _init_worker(worker_id: int) -> None:
    worker_init_fn(worker_id)
    # DataLoader workers share the terminal's process group: let the main process handle Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# --------------------------------------------------------------------------------------------- clip pool
class ClipPool:
    """The last ``train.clip_pool`` clips of this rank's stream; each step adds ``train.fresh_clips`` new ones.

    The data engine makes a 3 s clip (90 frames) far more slowly than the networks consume frames, and the
    frames of one clip are alike. So batches draw frames (VAE) or windows (diffusion) at random from every
    clip in the pool, and each step replaces only the oldest clip(s): a batch spans many clips and music,
    and each clip is still used for about ``batch_size / fresh_clips`` samples in its lifetime.

    The pool is a pure function of the stream position: a resumed run re-makes the clips the pool held
    (positions ``[position - clip_pool, position)``), so the batches continue exactly.
    """

    def __init__(
        self,
        settings: Settings,
        start_index: int,
        rank: int,
        world_size: int,
        print_fn: Callable[[str], None],
        transform: Callable[[dict, int], dict] | None = None,
    ) -> None:
        cfg = settings.train
        self.size, self.fresh, self.overfit = cfg.clip_pool, cfg.fresh_clips, cfg.overfit
        self.clips: deque[dict[str, torch.Tensor]] = deque(maxlen=self.size)
        first = max(0, start_index - self.size)
        stream = ClipStream(settings, split="train", start_index=first, rank=rank, world_size=world_size)
        workers = settings.data.num_workers
        # One clip per item: the workers hand clips back in stream order whatever their number.
        loader = torch.utils.data.DataLoader(
            stream, batch_size=None, num_workers=workers, worker_init_fn=_init_worker if workers else None,
        )
        self._iter: Iterator[dict[str, Any]] = iter(loader)
        self._in_process = workers == 0
        self.transform = transform  # (clip, stream position) -> clip, applied as a clip enters the pool
        self.position = first
        if start_index > first:
            print_fn(f"re-making the {start_index - first} clips the pool held at stream position {start_index}")
        while self.position < start_index:
            self._pull()

    def _pull(self) -> None:
        with one_thread() if self._in_process else contextlib.nullcontext():
            clip = next(self._iter)
        style = style_vector(clip_style(clip["meta"]))  # [S] multi-hot visualizer families
        entry = {"frames": clip["frames"], "features": clip["features"], "style": style}
        if self.transform is not None:
            with one_thread() if self._in_process else contextlib.nullcontext():
                entry = self.transform(entry, self.position)
        self.clips.append(entry)
        self.position += 1

    def refresh(self) -> None:
        """Add this step's fresh clips (only the first step's in ``train.overfit`` mode)."""
        if self.overfit and self.position > 0:
            return
        for _ in range(self.fresh):
            self._pull()

    def frames(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` random frames of random pool clips: uint8 [count, 3, H, W]."""
        return self.labelled_frames(count, generator)[0]

    def labelled_frames(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` random frames of random pool clips, uint8 [count, 3, H, W], and their clips' styles [count, S]."""
        clip_idx = torch.randint(0, len(self.clips), (count,), generator=generator).tolist()
        frame_idx = torch.randint(0, 2**62, (count,), generator=generator).tolist()
        picked = []
        for c, f in zip(clip_idx, frame_idx, strict=True):
            frames = self.clips[c]["frames"]
            picked.append(frames[f % frames.shape[0]])
        return torch.stack(picked), torch.stack([self.clips[c]["style"] for c in clip_idx])

    def windows(
        self, count: int, window: int, context: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``count`` random windows: frames uint8 [count, W, 3, H, W], features [count, W + 2*ctx, F], the
        clips' multi-hot styles [count, S], and one anchor frame per window, uint8 [count, 3, H, W]: a random
        frame of the same clip (the same look at another moment, as a render's style exemplar is).

        A window's features cover [s - ctx, s + W + ctx), zero-padded beyond the clip's edges (as render
        pads a song).
        """
        clip_idx = torch.randint(0, len(self.clips), (count,), generator=generator).tolist()
        offsets = torch.randint(0, 2**62, (count,), generator=generator).tolist()
        anchor_idx = torch.randint(0, 2**62, (count,), generator=generator).tolist()
        frames, feats, styles, anchors = [], [], [], []
        for c, offset, a in zip(clip_idx, offsets, anchor_idx, strict=True):
            clip = self.clips[c]
            t = clip["frames"].shape[0]
            if t < window:
                raise ValueError(f"clips have {t} frames, fewer than the DiT's window of {window}")
            s = offset % (t - window + 1)
            frames.append(clip["frames"][s : s + window])
            # In the padded timeline frame s sits at s + ctx, so its context [s - ctx, s + ctx] starts at s.
            feats.append(F.pad(clip["features"], (0, 0, context, context))[s : s + window + 2 * context])
            styles.append(clip["style"])
            anchors.append(clip["frames"][a % t])
        return torch.stack(frames), torch.stack(feats), torch.stack(styles), torch.stack(anchors)
