"""Per-visualizer render time and beat sync: ``uv run python -m synesthete.visual.bench [--threads 1] [--sync]``.

Renders ``--clips`` random parameter draws of every visualizer (and of the default mix, compositions
included) on one procedural clip at the default settings and prints JSON with the mean ms per clip: wall
time, and the process CPU time (which, on a machine shared with other jobs, is the better estimate of the
cost when the CPU is not contended; with one thread the two agree on an idle machine).

``--sync`` also renders every draw on a probe signal (a steady hum with noise bursts on known frames and a
silent stretch) and reports the motion ratio: mean frame-to-frame change at the bursts (+-1 frame) over the
mean change elsewhere, and the change left once a silence has lasted half a second.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

from synesthete.audio.features import FeatureExtractor
from synesthete.audio.synth import synthesize
from synesthete.device import synchronize
from synesthete.settings import Settings, load_settings
from synesthete.visual import core
from synesthete.visual.compose import VISUALIZERS, render_frames, sample_params

PROBE_BURSTS = (10, 25, 38, 75)  # frames where the probe's noise bursts start
PROBE_SILENCE = (45, 68)  # frames of digital silence in the probe


def probe_signal(settings: Settings, seconds: float = 3.0) -> torch.Tensor:
    """A steady two-tone hum with noise bursts at PROBE_BURSTS and silence over PROBE_SILENCE: [N]."""
    sr, fps = settings.audio.sample_rate, settings.video.fps
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(round(seconds * sr)) / sr
    wave = 0.2 * torch.sin(2 * math.pi * 110 * t) + 0.1 * torch.sin(2 * math.pi * 330 * t)
    for frame in PROBE_BURSTS:
        start, length = round(frame / fps * sr), round(0.06 * sr)
        wave[start : start + length] += 0.6 * torch.randn(length, generator=gen) * torch.exp(
            -torch.arange(length) / (0.015 * sr)
        )
    wave[round(PROBE_SILENCE[0] / fps * sr) : round(PROBE_SILENCE[1] / fps * sr)] = 0
    return wave


def sync_report(settings: Settings, params: list[dict], device: torch.device) -> dict:
    """Motion ratio at the probe's bursts (min and median over ``params``) and settled-silence motion."""
    wave = probe_signal(settings).to(device)
    features = FeatureExtractor(settings.audio, settings.video.fps).to(device)(wave)
    elsewhere = torch.ones(features.shape[0], dtype=torch.bool)
    for frame in PROBE_BURSTS:
        elsewhere[frame - 1 : frame + 2] = False
    elsewhere[:2] = False
    elsewhere[PROBE_SILENCE[0] - 1 : PROBE_SILENCE[1] + 2] = False  # sound stopping/starting are onsets too
    settle = PROBE_SILENCE[0] + round(0.5 * settings.video.fps)
    ratios, settled = [], []
    for p in params:
        frames = render_frames(features, wave, p, settings).cpu()
        motion = torch.zeros(frames.shape[0])
        motion[1:] = (frames[1:] - frames[:-1]).abs().mean((1, 2, 3))
        peaks = torch.stack([motion[f - 1 : f + 2].max() for f in PROBE_BURSTS])
        ratios.append((peaks.mean() / motion[elsewhere].mean()).item())
        # (the last silent frame is left out: the features' RMS window already hears the sound coming back)
        settled.append(motion[settle : PROBE_SILENCE[1] - 1].max().item())
    ratios.sort()
    return {"ratio_min": round(ratios[0], 2), "ratio_median": round(ratios[len(ratios) // 2], 2),
            "settled_silence_max": round(max(settled), 5)}


def write_sheet(path: Path, videos: list[torch.Tensor], columns: int = 10) -> None:
    """Save a contact sheet: one row per video [T, 3, H, W], ``columns`` evenly spaced frames."""
    import matplotlib.pyplot as plt

    rows = []
    for frames in videos:
        index = torch.linspace(0, frames.shape[0] - 1, columns).long()
        rows.append(torch.cat(list(frames[index].permute(0, 2, 3, 1).cpu()), 1))  # [H, columns*W, 3]
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, torch.cat(rows, 0).clamp(0, 1).numpy())


def main() -> None:
    """Measure and print mean render ms per clip for each visualizer and for the default mix."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=50, help="random parameter draws per visualizer")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    parser.add_argument("--preset", default=None, help="settings preset (default: cpu, 128x128 at 30 fps)")
    parser.add_argument("--device", default="cpu", help="device to render on")
    parser.add_argument(
        "--default-malloc", action="store_true", help="skip retain_freed_memory() (to measure what it saves)"
    )
    parser.add_argument("--sync", action="store_true", help="also measure motion at onsets on a probe signal")
    parser.add_argument("--sheets", type=Path, default=None, help="also write a PNG contact sheet per visualizer here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.default_malloc:
        core._MEMORY_TUNED = True  # pretend it already ran, so glibc keeps its defaults
    settings = load_settings(args.preset)
    device = torch.device(args.device)
    wave, _ = synthesize(0, settings, drums=True)
    wave = wave.to(device)
    features = FeatureExtractor(settings.audio, settings.video.fps).to(device)(wave)  # [T, F]
    groups = {name: [name] for name in VISUALIZERS} | {"mix": []}
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    sync: dict[str, dict] = {}
    for group, names in groups.items():
        # One visualizer alone (no composition), or the default mix (compositions included).
        run_settings = settings.updated(data={"visualizers": names, "compose_prob": 0.0}) if names else settings
        rng = random.Random(f"bench:{group}")
        params = [sample_params(rng, run_settings) for _ in range(args.clips)]
        render_frames(features, wave, params[0], run_settings)  # warm-up (caches, allocator)
        synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        for p in params:
            render_frames(features, wave, p, run_settings)
        synchronize(device)
        wall[group] = round((time.perf_counter() - start) / len(params) * 1000, 2)
        cpu[group] = round((time.process_time() - start_cpu) / len(params) * 1000, 2)
        if args.sync:
            sync[group] = sync_report(run_settings, params, device)
        if args.sheets is not None:
            videos = [render_frames(features, wave, p, run_settings) for p in params[:6]]
            write_sheet(args.sheets / f"{group}.png", videos)
    report = {
        "wall_ms_per_clip": wall, "cpu_ms_per_clip": cpu, "frames": int(features.shape[0]),
        "size": [settings.video.height, settings.video.width], "threads": torch.get_num_threads(),
        "device": str(device), "clips": args.clips,
    }
    if sync:
        report["sync"] = sync
    print(json.dumps(report))


if __name__ == "__main__":
    main()
