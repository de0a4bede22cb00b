"""Scoring speed of the sync metrics: seconds of video scored per second of wall time, as JSON.

    uv run python benchmarks/eval.py [--seconds 20] [--size 128] [--repeats 3] [--device cpu]

Scores a synthetic 30 fps video (a disc jumping on every drum-like hit, on a textured background) against
its audio with ``metrics.analyse``: optical flow, onset envelope and peak picking, AV-Align, BAS (with the
tempo/beat estimate, as for an arbitrary file), flicker and silence response. The best of ``--repeats``
runs is reported, because the machine may be shared. It also writes that video to an H.264 mp4 (crf 20),
reads it back and reports AV-Align with the published strict peak rule and with the default noise threshold.
It also times the picture metrics (style critic inference, FSD, cut rate, stability, sharpness, seam score)
on the same video, with the committed critic, and reports them as a fraction of the sync metrics' time.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_metrics import FPS, SR, burst_audio, jump_video, random_onsets  # noqa: E402

from synesthete import media  # noqa: E402
from synesthete.checkpoint import load_critic  # noqa: E402
from synesthete.device import best_seconds, resolve_device  # noqa: E402
from synesthete.eval import video_picture  # noqa: E402
from synesthete.metrics import analyse, audio_peaks, motion_curve  # noqa: E402
from synesthete.metrics.picture import frechet_distance, seam_score  # noqa: E402
from synesthete.render import window_layout  # noqa: E402
from synesthete.settings import load_settings  # noqa: E402


def encoded_scores(frames: torch.Tensor, wave: torch.Tensor, settings) -> dict:
    """AV-Align of ``frames`` after an H.264 round trip, strict rule vs default threshold."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "jump.mp4"
        media.write_video(path, frames.cpu(), FPS, audio=wave, sample_rate=SR)
        decoded, fps = media.load_video(path)
        audio, sr = media.load_audio(path, mono=True)
    motion = motion_curve(decoded, settings.eval).numpy()
    out = {}
    for name, strict in (("strict", True), ("default", False)):
        a = analyse(decoded, audio, sr, fps, settings, strict=strict, motion=motion)
        out[name] = {"av_align": round(a.av.score, 3), "video_peaks": len(a.av.video_peaks),
                     "audio_peaks": len(a.av.audio_peaks), "matched": a.av.matches}
    return out


def picture_metrics(frames: torch.Tensor, settings, device) -> dict:
    """Every picture metric of one video (critic loaded once, outside the timing)."""
    critic = CRITIC.setdefault("critic", load_critic(settings.critic_path, device))
    out = video_picture(critic, frames)
    feats = critic.outputs(frames)[1]
    half = feats.shape[0] // 2
    out["fsd_halves"] = frechet_distance(feats[:half], feats[half:])
    joins = window_layout(frames.shape[0], settings.dit.window, 2, exemplar=False).joins()
    out["seam_score"] = seam_score(frames, joins)
    return out


CRITIC: dict = {}


def main() -> None:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="Video length to score.")
    parser.add_argument("--size", type=int, default=128, help="Frame side in pixels.")
    parser.add_argument("--repeats", type=int, default=3, help="Runs; the fastest is reported.")
    parser.add_argument("--device", default="cpu", help="Device for the optical flow (cpu, cuda, mps, auto).")
    args = parser.parse_args()

    settings = load_settings()
    device = resolve_device(args.device)
    onsets = random_onsets(args.seconds)
    wave = burst_audio(onsets, args.seconds)
    frames = (jump_video(onsets, int(args.seconds * FPS), size=args.size) * 255).round().to(torch.uint8)
    frames = frames.to(device)

    motion = motion_curve(frames, settings.eval).numpy()  # warm-up
    score = analyse(frames, wave, SR, FPS, settings, motion=motion).av.score
    total = best_seconds(lambda: analyse(frames, wave, SR, FPS, settings), args.repeats, device)
    flow = best_seconds(lambda: motion_curve(frames, settings.eval), args.repeats, device)
    audio = best_seconds(lambda: audio_peaks(wave, SR), args.repeats, device)
    picture_s = best_seconds(lambda: picture_metrics(frames, settings, device), args.repeats, device)
    print(json.dumps({
        "video_seconds": args.seconds,
        "size": args.size,
        "fps": FPS,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "wall_seconds": round(total, 3),
        "video_seconds_per_second": round(args.seconds / total, 1),
        "flow_seconds": round(flow, 3),
        "audio_onset_seconds": round(audio, 3),
        "other_seconds": round(max(total - flow - audio, 0.0), 3),
        "av_align_of_benchmark_video": round(float(score), 3),
        "frames": int(frames.shape[0]),
        "motion_mean_px": round(float(np.mean(motion)), 4),
        "encoded_h264_crf20": encoded_scores(frames, wave, settings),
        "peak_threshold": settings.eval.peak_threshold,
        "picture_metrics_seconds": round(picture_s, 3),
        "picture_over_sync_time": round(picture_s / total, 3),
    }, indent=2))


if __name__ == "__main__":
    main()
