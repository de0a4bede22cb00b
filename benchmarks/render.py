"""Render benchmark: real-time factor and where the time goes, memory for long songs, seeking, renders under load.

Prints JSON. Run: ``uv run python benchmarks/render.py`` (everything), or pick parts with ``--parts``:

* ``rtf``: wall time / audio duration of ``render_song`` on a procedural song (``--seconds``, 20 s) with the
  committed checkpoints, in this process (imports excluded; model loading included and also reported on
  its own), once per precision path in ``--paths`` (``float32``: ``render.amp`` off, what every CPU runs;
  ``amp``: ``render.amp`` on, bf16 where the CPU has it natively, else float32 again), with its breakdown:
  set-up (audio checks, model loading), features, network (the DiT passes), VAE decode, encode+mux, and the
  lanes used; each once per engine in ``--engines`` (``auto,eager``: ONNX Runtime where it runs, and eager
  PyTorch; each row says which ran). ``--sampler``/``--steps`` override the defaults; ``--grid``
  measures several ``sampler:steps[:lanes[:checkpoints]]`` settings one after the other (``:10:1``: 10 steps,
  one lane; ``::4:/tmp/teacher``: the defaults with 4 lanes and the checkpoints of that folder).
* ``setup``: a fresh process loads the models with ``Synesthete.from_pretrained()`` and renders 2 s twice:
  the load, each render's ``setup`` (checks and planning, after the models are loaded) and each render's
  time outside the network and the VAE decoder; the first render pays whatever is set up lazily.
* ``rss``: peak resident memory of a fresh ``synesthete render`` process (its own VmHWM on Linux) for each
  length in ``--long`` (30 s and 10 min). These renders use ``--rss-steps`` sampler steps (1): memory does
  not depend on the step count, time does.
* ``seek``: ``render --start 0 --duration 20`` against ``--start 360 --duration 20`` on a 7-minute mp3 and
  ogg made here with the ffmpeg program; also the audio decoding alone, seeking (``media.AudioReader``)
  against torchcodec, which decodes from the file's start.
* ``paired``: one ``synesthete render`` process alone, then two started together, each timed; the slowdown
  is the slower paired wall time over the solo one, for each thread policy in ``--paired-policies``:
  ``tuned`` (the defaults), ``tuned-spin`` (the tuner with GNU OpenMP's default spinning), ``tuned-passive``
  (the tuner with ``OMP_WAIT_POLICY=PASSIVE``, the previous default), ``old`` (before:
  2 threads, default spinning: ``OMP_NUM_THREADS=2 GOMP_SPINCOUNT=300000``), ``one`` (1 thread each).

What else runs on the machine changes every figure: say what did when you quote them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# The project's modules are imported inside the functions (after sys.path below): main() sets the OpenMP wait
# policy first (threads.prepare_openmp), which is read only when torch loads its OpenMP runtime.

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_song(path: Path, seconds: float, seed: int = 11) -> None:
    """A procedural song with drums, written as a 16 kHz wav."""
    from synesthete.audio.synth import synthesize
    from synesthete.media import write_wav
    from synesthete.settings import load_settings

    settings = load_settings()
    wave, _ = synthesize(seed, settings, duration=seconds, drums=True, silence=False, dropout=False)
    write_wav(path, wave, settings.audio.sample_rate)


def make_compressed(folder: Path, seconds: float = 420.0) -> dict[str, Path]:
    """A ``seconds`` long stereo 44.1 kHz song as mp3 and ogg: a 60 s procedural loop, encoded by ffmpeg."""
    loop = folder / "loop.wav"
    make_song(loop, 60.0, seed=5)
    out = {}
    for ext, codec in (("mp3", "libmp3lame"), ("ogg", "libvorbis")):
        out[ext] = folder / f"song7.{ext}"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(loop), "-t", str(seconds),
             "-ac", "2", "-ar", "44100", "-c:a", codec, str(out[ext])], check=True,
        )
    return out


def render_stats(song: Path, out: Path, start: float = 0.0, duration: float | None = None, lanes: int | None = None,
                 checkpoints: str | None = None, amp: bool | None = None, engine: str | None = None,
                 **sampling) -> dict:
    """``render_song`` in this process; its numeric stats (wall time, RTF, time split, threads, lanes)."""
    import synesthete.render as render
    from synesthete.settings import load_settings

    settings = load_settings()
    if sampling:
        settings = settings.updated(sampling={k: v for k, v in sampling.items() if v is not None})
    if lanes is not None:
        settings = settings.updated(render={"lanes": lanes})
    if checkpoints:
        settings = settings.updated(paths={"checkpoints": checkpoints})
    if amp is not None:
        settings = settings.updated(render={"amp": amp})
    if engine is not None:
        settings = settings.updated(render={"engine": engine})
    result = render.render_song(settings, song, out, start=start, duration=duration, overwrite=True, progress=False)
    return {"wall_s": result.wall, "seconds": result.duration, "frames": result.num_frames, "rtf": result.rtf,
            "split_s": dict(result.timings), "threads": result.threads, "sampler": f"{result.sampler} {result.steps}",
            "lanes": result.lanes, "checkpoints": str(result.checkpoints),
            "guidance_distilled": result.guidance_distilled, "engine": result.engine}


def _rounded(stats: dict) -> dict:
    return {
        "sampler": stats["sampler"],
        "engine": stats["engine"],
        "lanes": stats["lanes"],
        "checkpoints": stats["checkpoints"],
        "guidance_distilled": stats["guidance_distilled"],
        "rtf": round(stats["rtf"], 3),
        "rtf_without_setup": round((stats["wall_s"] - stats["split_s"]["setup"]) / stats["seconds"], 3),
        "frames_per_s": round(stats["frames"] / stats["wall_s"], 2),
        "wall_s": round(stats["wall_s"], 2),
        "breakdown_s": {k: round(v, 2) for k, v in stats["split_s"].items()},
        "threads": stats["threads"],
    }


def cli_render(song: Path, out: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """Start ``synesthete render`` in a fresh process (its wall time and peak RSS come from ``finish``)."""
    openmp = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # each process chooses its own
    full_env = {k: v for k, v in os.environ.items() if k not in openmp}
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "synesthete", "render", str(song), "-o", str(out), "--overwrite", *args]
    proc = subprocess.Popen(cmd, cwd=str(ROOT), env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc.started = time.perf_counter()  # type: ignore[attr-defined]
    proc.peak_kb = 0  # type: ignore[attr-defined]
    watcher = threading.Thread(target=_watch_peak, args=(proc,), daemon=True)
    watcher.start()
    proc.watcher = watcher  # type: ignore[attr-defined]
    return proc


def _watch_peak(proc: subprocess.Popen) -> None:
    """Keep the process's own peak RSS (VmHWM, Linux) in ``proc.peak_kb`` while it runs.

    ``ru_maxrss`` from ``wait4`` is not the child's own figure on Linux: a forked child starts with its
    parent's high-water mark and keeps it across ``exec``, so a render started by a parent that had rendered
    in-process (the ``rtf`` part) reported the parent's 1.2 GB. VmHWM is reset by ``exec``.
    """
    status = Path(f"/proc/{proc.pid}/status")
    while proc.returncode is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    proc.peak_kb = max(proc.peak_kb, int(line.split()[1]))  # type: ignore[attr-defined]
        except (OSError, ValueError):  # gone, or not Linux
            return
        time.sleep(0.02)


def finish(proc: subprocess.Popen) -> dict:
    """Wait for a ``cli_render`` process: wall seconds and its own peak RSS (MB; ``ru_maxrss`` off Linux)."""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - proc.started  # type: ignore[attr-defined]
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.watcher.join()  # type: ignore[attr-defined]
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "render failed")
    peak_kb = proc.peak_kb or usage.ru_maxrss  # type: ignore[attr-defined]
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(peak_kb / 1024, 1),
            "ru_maxrss_mb": round(usage.ru_maxrss / 1024, 1)}


def part_rtf(tmp: Path, args) -> dict:
    song = tmp / "song.wav"
    make_song(song, args.seconds)
    render_stats(song, tmp / "warm.mp4", duration=2.0, steps=1)  # first-call costs (and the ONNX export) out of the way
    grid = args.grid or [f"{args.sampler or ''}:{args.steps or ''}"]
    rows = []
    for path in args.paths.split(","):
        amp = {"float32": False, "amp": True}[path.strip()]
        for item in grid:
            sampler, steps, lanes, checkpoints = (item.split(":", 3) + ["", "", ""])[:4]
            for engine in args.engines.split(","):
                stats = render_stats(song, tmp / "out.mp4", sampler=sampler or None, checkpoints=checkpoints or None,
                                     steps=int(steps) if steps else None, lanes=int(lanes) if lanes else None,
                                     amp=amp, engine=engine.strip())
                rows.append({"path": path.strip(), **_rounded(stats)})
    return {"song_seconds": args.seconds, "runs": rows}


SETUP_SCRIPT = '''
import json, sys, time
from synesthete import Synesthete
t = time.perf_counter()
pipe = Synesthete.from_pretrained()
out = {"load_s": time.perf_counter() - t, "renders": []}
for _ in range(2):
    t = time.perf_counter()
    r = pipe.render(sys.argv[1], duration=2.0, seed=0)
    wall = time.perf_counter() - t
    out["renders"].append({"wall_s": wall, "setup_s": r.timings["setup"],
                           "outside_network_and_decoder_s": wall - r.timings["network"] - r.timings["vae_decode"],
                           "precision": r.precision, "engine": r.engine})
print(json.dumps(out))
'''


def part_setup(tmp: Path, args) -> dict:
    song = tmp / "song.wav"
    if not song.exists():
        make_song(song, args.seconds)
    env = {**os.environ, "SYNESTHETE_RENDER__AMP": "false"}
    runs = []
    for _ in range(args.setup_runs):
        proc = subprocess.run([sys.executable, "-c", SETUP_SCRIPT, str(song)], cwd=str(ROOT), env=env,
                              capture_output=True, text=True, check=True)
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
        runs.append({"load_s": round(figures["load_s"], 2),
                     "renders": [{k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}
                                 for r in figures["renders"]]})
    first = sorted(r["renders"][0]["setup_s"] for r in runs)
    return {"path": "float32", "runs": runs, "first_render_setup_s_median": first[len(first) // 2]}


def part_rss(tmp: Path, args) -> dict:
    out = {}
    for seconds in args.long:
        song = tmp / f"song_{int(seconds)}.wav"
        make_song(song, seconds)
        result = finish(cli_render(song, tmp / "long.mp4", "--steps", str(args.rss_steps)))
        out[f"{int(seconds)}s"] = result
        song.unlink()
    values = [v["peak_rss_mb"] for v in out.values()]
    ratio = round(values[-1] / values[0], 3)
    return {"sampler_steps": args.rss_steps, "renders": out, "ratio_longest_to_shortest": ratio}


def part_seek(tmp: Path, args) -> dict:
    from synesthete.media import AudioReader, audio_info, load_audio

    songs = make_compressed(tmp)
    result: dict = {}
    for ext, song in songs.items():
        info = audio_info(song)
        row: dict = {"file_seconds": round(info.duration, 1)}
        for start in (0.0, 360.0):
            t0 = time.perf_counter()
            with AudioReader(song, 16000, 1, start=start, duration=20.0, stream_index=info.stream_index,
                             source_rate=info.sample_rate) as reader:
                sum(b.shape[-1] for b in reader.blocks(160000))
            row[f"decode_20s_at_{int(start)}_s"] = round(time.perf_counter() - t0, 3)
            t0 = time.perf_counter()
            load_audio(song, sample_rate=16000, mono=True, start=start, duration=20.0)
            row[f"torchcodec_decode_20s_at_{int(start)}_s"] = round(time.perf_counter() - t0, 3)
        for start in (0.0, 360.0):
            stats = render_stats(song, tmp / "seek.mp4", start=start, duration=20.0, sampler=args.sampler,
                                 steps=args.steps)
            row[f"render_20s_at_{int(start)}"] = {
                "wall_s": round(stats["wall_s"], 2),
                "setup_and_features_s": round(stats["split_s"]["setup"] + stats["split_s"]["features"], 2),
                "breakdown_s": {k: round(v, 2) for k, v in stats["split_s"].items()},
            }
        result[ext] = row
    return result


def part_paired(tmp: Path, args) -> dict:
    song = tmp / "paired.wav"
    make_song(song, args.paired_seconds)
    extra = ["--sampler", args.sampler] if args.sampler else []
    if args.steps:
        extra += ["--steps", str(args.steps)]
    out = {"song_seconds": args.paired_seconds}
    for name in args.paired_policies.split(","):
        env = POLICIES[name]
        solo = finish(cli_render(song, tmp / "solo.mp4", *extra, env=env))
        a = cli_render(song, tmp / "a.mp4", *extra, env=env)
        b = cli_render(song, tmp / "b.mp4", *extra, env=env)
        pair = [finish(a), finish(b)]
        out[name] = {
            "solo_wall_s": solo["wall_s"],
            "paired_wall_s": [p["wall_s"] for p in pair],
            "slowdown": round(max(p["wall_s"] for p in pair) / solo["wall_s"], 2),
        }
    return out


# Thread policies for the paired part: environment of each render process.
POLICIES = {
    "tuned": {},  # the defaults: ThreadTuner, a short OpenMP spin (GOMP_SPINCOUNT=3000)
    "tuned-passive": {"OMP_WAIT_POLICY": "PASSIVE"},  # the tuner with workers that sleep at once
    "tuned-spin": {"GOMP_SPINCOUNT": "300000"},  # the tuner with GNU OpenMP's default spinning
    "old": {"OMP_NUM_THREADS": "2", "GOMP_SPINCOUNT": "300000"},  # before: 2 threads, default spinning
    "one": {"OMP_NUM_THREADS": "1"},  # one thread each
}

PARTS = {"rtf": part_rtf, "setup": part_setup, "rss": part_rss, "seek": part_seek, "paired": part_paired}


def main() -> None:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="rtf,setup,rss,seek,paired", help="comma-separated: " + ", ".join(PARTS))
    parser.add_argument("--seconds", type=float, default=20.0, help="song length for the real-time factor")
    parser.add_argument("--paths", default="float32,amp",
                        help="precision paths of the rtf part: float32 (render.amp off), amp (render.amp on)")
    parser.add_argument("--setup-runs", type=int, default=3, help="fresh processes timed by the setup part")
    parser.add_argument("--engines", default="auto,eager",
                        help="render.engine values the rtf part renders with, one after the other for each path "
                        "and grid item (auto: ONNX Runtime on the CPU's float32 path where installed)")
    parser.add_argument("--sampler", default=None, help="sampler (default: the settings')")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the settings')")
    parser.add_argument("--grid", nargs="*", default=None,
                        help="sampler:steps[:lanes[:checkpoints]] for the rtf part, e.g. ddim:20, dpm++:10:1 or "
                        "::4:/tmp/teacher")
    parser.add_argument("--long", type=float, nargs="*", default=[30.0, 600.0], help="song lengths for peak RSS")
    parser.add_argument("--rss-steps", type=int, default=1, help="sampler steps for the peak-RSS renders")
    parser.add_argument("--paired-seconds", type=float, default=10.0, help="song length of the paired renders")
    parser.add_argument("--paired-policies", default="tuned,old",
                        help="comma-separated thread policies for the paired part: " + ", ".join(POLICIES))
    args = parser.parse_args()
    from synesthete import threads

    threads.prepare_openmp()  # as the CLI does, before torch loads OpenMP
    import torch

    from synesthete.device import cpu_features

    result: dict = {
        "cpu": cpu_features(),
        "usable_cores": threads.usable_cores(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.parts.split(","):
            t0 = time.perf_counter()
            result[name.strip()] = PARTS[name.strip()](Path(tmp), args)
            result[name.strip()]["bench_wall_s"] = round(time.perf_counter() - t0, 1)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
