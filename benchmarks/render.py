"""Render benchmark: real-time factor at the defaults, where the time goes, and peak RSS for long songs.

Prints JSON. Run: ``uv run python benchmarks/render.py [--seconds 10] [--long 30 300] [--rss-steps 2]``.

* ``rtf``: wall time / audio duration for ``render`` of a procedural song with the committed checkpoints, at the
  default settings, in this process (imports and model loading excluded, reported separately).
* ``breakdown``: seconds spent in the sampler (network steps), VAE decode, and the H.264/AAC encoder.
* ``peak_rss_mb``: peak resident memory of a fresh ``synesthete render`` process per song length. It must be flat:
  rendering streams window by window. These runs use ``--rss-steps`` sampler steps (memory does not depend on
  the step count; time does).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_song(path: Path, seconds: float) -> None:
    """A procedural song with drums, written as a 16 kHz wav."""
    from synesthete.audio.synth import synthesize
    from synesthete.media import write_wav
    from synesthete.settings import load_settings

    settings = load_settings()
    wave, _ = synthesize(11, settings, duration=seconds, drums=True, silence=False, dropout=False)
    write_wav(path, wave, settings.audio.sample_rate)


def timed_render(song: Path, out: Path) -> dict:
    """Render in-process with timers around the sampler, the VAE decode and the encoder."""
    import synesthete.media as media
    import synesthete.render as render
    import synesthete.sampling as sampling
    from synesthete.models.vae import VAE
    from synesthete.settings import load_settings

    spent = {"sampler": 0.0, "vae_decode": 0.0, "encode": 0.0}

    def wrap(owner, name, key):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t0

        setattr(owner, name, timed)

    wrap(sampling, "sample", "sampler")
    wrap(VAE, "decode", "vae_decode")
    wrap(media.VideoWriter, "add_frames", "encode")
    wrap(media.VideoWriter, "add_audio", "encode")
    settings = load_settings()
    summary = render.render_song(settings, song, out, overwrite=True, progress=False)
    return {"summary": summary, "breakdown_s": {k: round(v, 2) for k, v in spent.items()}}


def peak_rss(song: Path, out: Path, steps: int) -> float:
    """Peak RSS (MB) of a fresh `synesthete render` process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "synesthete", "render", str(song), "-o", str(out), "--overwrite", "--steps", str(steps)],
        cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "render failed")
    return usage.ru_maxrss / 1024


def main() -> None:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0, help="song length for the real-time factor")
    parser.add_argument("--long", type=float, nargs="*", default=[30.0, 300.0], help="song lengths for peak RSS")
    parser.add_argument("--rss-steps", type=int, default=2, help="sampler steps for the peak-RSS renders")
    args = parser.parse_args()
    result: dict = {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        song = tmp / "song.wav"
        make_song(song, args.seconds)
        t0 = time.perf_counter()
        timed = timed_render(song, tmp / "out.mp4")
        summary = timed["summary"]
        result.update(
            {
                "song_seconds": args.seconds,
                "rtf": summary["real-time factor"],
                "frames_per_s": round(summary["frames"] / summary["wall time (s)"], 2),
                "wall_s_including_model_load": round(time.perf_counter() - t0, 2),
                "breakdown_s": timed["breakdown_s"],
                "device": summary["device"],
            }
        )
        rss = {}
        for seconds in args.long:
            long_song = tmp / f"song_{int(seconds)}.wav"
            make_song(long_song, seconds)
            rss[f"{int(seconds)}s"] = round(peak_rss(long_song, tmp / "long.mp4", args.rss_steps), 1)
        result["peak_rss_mb"] = rss
        result["rss_sampler_steps"] = args.rss_steps
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
