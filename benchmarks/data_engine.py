"""Data engine throughput: clips/s and frames/s of make_clip, a per-stage breakdown, and a DataLoader figure.

Usage: ``uv run python benchmarks/data_engine.py [--clips 60] [--workers 2] [--preset cpu] [--threads N]
[--music DIR ...]``; prints JSON. With ``--music`` it also times real-music clips (``data.make_music_clip``: a
seek-decoded, augmented excerpt drawn by the visualizers) and gives the feature quantiles per channel of the
procedural stream, of the folders' songs as they are, and of the augmented excerpts the stream trains on.
The figures are only meaningful on an otherwise idle machine: with more runnable processes than cores,
torch's multi-threaded ops wait on descheduled threads and every stage slows down many-fold.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import statistics
import time

import torch
from torch.utils.data import DataLoader

from synesthete.audio.features import feature_names, frames_for
from synesthete.audio.synth import synthesize
from synesthete.data import (
    ClipStream,
    collate_clips,
    feature_extractor,
    make_clip,
    make_music_clip,
    music_library,
    seed_for,
    worker_init_fn,
)
from synesthete.media import to_uint8
from synesthete.music import excerpt
from synesthete.settings import load_settings
from synesthete.visual import render_frames, sample_params


def _stage_times(settings, seeds: list[int], clock=time.perf_counter) -> dict[str, float]:
    """Mean milliseconds per clip of each stage: synth, features, visual (params + render + uint8)."""
    totals = {"synth_ms": 0.0, "features_ms": 0.0, "visual_ms": 0.0}
    extractor = feature_extractor(settings)
    with torch.no_grad():
        for seed in seeds:
            t0 = clock()
            wave, _ = synthesize(seed, settings)
            t1 = clock()
            features = extractor(wave, frames_for(wave.shape[0], settings.audio.sample_rate, settings.video.fps))
            t2 = clock()
            params = sample_params(random.Random(f"synesthete-visual:{seed}"), settings)
            to_uint8(render_frames(features, wave, params, settings))
            t3 = clock()
            totals["synth_ms"] += (t1 - t0) * 1000
            totals["features_ms"] += (t2 - t1) * 1000
            totals["visual_ms"] += (t3 - t2) * 1000
    return {key: round(value / len(seeds), 2) for key, value in totals.items()}


def _per_visualizer(settings, seeds: list[int]) -> dict[str, float]:
    """Mean visual ms per clip, grouped by the clip's visualizer name(s)."""
    from synesthete.gen import _visualizer_names

    times: dict[str, list[float]] = {}
    extractor = feature_extractor(settings)
    with torch.no_grad():
        for seed in seeds:
            wave, _ = synthesize(seed, settings)
            features = extractor(wave, frames_for(wave.shape[0], settings.audio.sample_rate, settings.video.fps))
            params = sample_params(random.Random(f"synesthete-visual:{seed}"), settings)
            start = time.perf_counter()
            to_uint8(render_frames(features, wave, params, settings))
            key = "+".join(_visualizer_names(params)) or "?"
            times.setdefault(key, []).append((time.perf_counter() - start) * 1000)
    return {key: round(sum(v) / len(v), 2) for key, v in sorted(times.items())}


QUANTILES = (0.5, 0.9, 0.99)


def _quantiles(features: list[torch.Tensor], names: list[str]) -> dict[str, dict[str, float]]:
    """Per feature channel, the 50/90/99th percentiles over every frame of ``features`` ([T, F] each)."""
    frames = torch.cat(features)
    q = torch.quantile(frames, torch.tensor(QUANTILES), dim=0)  # [3, F]
    return {name: {f"p{round(p * 100)}": round(float(q[i, c]), 3) for i, p in enumerate(QUANTILES)}
            for c, name in enumerate(names)}


def _music(settings, folders: list[str], clips: int) -> dict:
    """Real-music clips: their speed beside procedural ones, and the feature quantiles of three sources."""
    settings = settings.updated(data={"music_dirs": folders})
    t = time.perf_counter()
    library = music_library(settings)
    scan_s = time.perf_counter() - t
    seeds = [seed_for(i, settings) for i in range(clips)]
    songs = [library.pick(seed, "train") for seed in seeds]
    make_music_clip(songs[0], seeds[0], settings)  # warm-up
    per_clip, augmented = [], []
    for song, seed in zip(songs, seeds, strict=True):
        t = time.perf_counter()
        augmented.append(make_music_clip(song, seed, settings)["features"])
        per_clip.append(time.perf_counter() - t)
    extract, sr = feature_extractor(settings), settings.audio.sample_rate
    as_is = [extract(excerpt(song, seed, settings.audio.clip_seconds, sr, augment=False)[0])
             for song, seed in zip(songs, seeds, strict=True)]
    procedural = [make_clip(seed, settings, with_frames=False)["features"] for seed in seeds]
    names = feature_names(settings.audio)
    return {
        "songs": library.describe(),
        "scan_s": round(scan_s, 2),
        "clips": clips,
        "music_median_ms_per_clip": round(statistics.median(per_clip) * 1000, 2),
        "feature_quantiles": {
            "procedural": _quantiles(procedural, names),
            "real_as_is": _quantiles(as_is, names),
            "real_augmented": _quantiles(augmented, names),
        },
    }


def main() -> None:
    """Run the benchmark and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=60, help="Clips per single-process measurement.")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers.")
    parser.add_argument("--batch-size", type=int, default=8, help="DataLoader batch size.")
    parser.add_argument("--batches", type=int, default=12, help="DataLoader batches timed after the first.")
    parser.add_argument("--preset", default="cpu", help="Settings preset (default: the shipped cpu defaults).")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default).")
    parser.add_argument("--music", action="append", default=[], help="A folder of real songs (repeatable).")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = load_settings(args.preset)
    seeds = [seed_for(i, settings) for i in range(args.clips)]
    for seed in seeds[:3]:  # warm-up: allocator, FFT plans, lazy imports
        make_clip(seed, settings)

    start, start_cpu = time.perf_counter(), time.process_time()
    frames, per_clip = 0, []
    for seed in seeds:
        t = time.perf_counter()
        frames += make_clip(seed, settings)["frames"].shape[0]
        per_clip.append(time.perf_counter() - t)
    single, single_cpu = time.perf_counter() - start, time.process_time() - start_cpu

    stream = ClipStream(settings, batch_size=args.batch_size, rank=0, world_size=1)
    loader = DataLoader(
        stream, batch_size=args.batch_size, num_workers=args.workers, collate_fn=collate_clips,
        worker_init_fn=worker_init_fn if args.workers else None,
    )
    batches = iter(loader)
    t0 = time.perf_counter()
    next(batches)  # includes worker start-up
    t1 = time.perf_counter()
    loader_frames = sum(b["frames"].shape[0] * b["frames"].shape[1] for b in itertools.islice(batches, args.batches))
    t2 = time.perf_counter()
    del batches

    result = {
        "settings": {
            "preset": args.preset, "size": f"{settings.video.width}x{settings.video.height}",
            "fps": settings.video.fps, "clip_seconds": settings.audio.clip_seconds,
        },
        "machine": {
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        },
        "single_process": {
            "clips": args.clips,
            "clips_per_s": round(args.clips / single, 2),
            "frames_per_s": round(frames / single, 1),
            "ms_per_clip": round(single / args.clips * 1000, 2),
            # The median is robust to the stalls other processes cause on a shared machine.
            "median_ms_per_clip": round(statistics.median(per_clip) * 1000, 2),
            # CPU time of this process: with --threads 1 on a busy machine, the wall time it would take idle.
            "cpu_ms_per_clip": round(single_cpu / args.clips * 1000, 2),
        },
        "breakdown_ms_per_clip": _stage_times(settings, seeds[: min(30, args.clips)]),
        "breakdown_cpu_ms_per_clip": _stage_times(settings, seeds[: min(30, args.clips)], time.process_time),
        "visual_ms_by_visualizer": _per_visualizer(settings, seeds[: min(30, args.clips)]),
        "dataloader": {
            "workers": args.workers,
            "batch_size": args.batch_size,
            "first_batch_s": round(t1 - t0, 3),
            "clips_per_s": round(args.batches * args.batch_size / (t2 - t1), 2),
            "frames_per_s": round(loader_frames / (t2 - t1), 1),
        },
    }
    if args.music:
        result["music"] = _music(settings, args.music, args.clips)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
