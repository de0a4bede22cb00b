"""Song analysis benchmark: accuracy against exact answers on procedural songs with a form, and speed.

Prints JSON. Run: ``uv run python benchmarks/analysis.py`` (30 held-out songs), ``--songs N``, ``--first I`` (from
the I-th song of the split on), ``--split train``
(the songs the analysis was tuned on, seeds of the training stream; the held-out ones were not looked at while
tuning), ``--music DIR`` (also a report on real songs: tempo, sections per song, speed; repeatable).

Procedural songs: ``synthesize(seed, settings, form=True)`` for held-out seeds (``data.seed_for(i, "heldout")``:
a range training never draws), each a whole song of 4-6 sections of 4 or 8 bars at 70-180 BPM, with its exact
beats, downbeats and sections. Figures:

* ``beat_f``, ``downbeat_f``: F-measure with a 70 ms window, per song, then the mean (and the worst);
* ``tempo_ok``: share of songs whose tempo is within 4 % of the truth; ``tempo_octave``: ... of the truth x2 or /2;
* ``boundary_hit_rate``: share of the true section boundaries with a detected boundary within one bar;
  ``boundary_precision``: share of the detected boundaries with a true one within one bar;
* ``label_pairwise_f``: pairwise F-measure of the section labels, beat by beat (repeats found);
* ``speed_x_realtime``: seconds of audio analysed per second of wall time, in this process (the wave in
  memory: frames, tempo, beats, downbeats, sections), summed over the songs; ``--music`` reports the speed of
  ``analyse_file`` too (FFmpeg decoding included).
* ``--renders N``: N held-out songs with a form, ``--render-seconds`` long, rendered with the shipped
  checkpoints (``--render-steps`` sampler steps): the share of their cuts within one frame of a downbeat the
  render's analysis found (the bar: 100 %), of an exact downbeat, and the look changes the style critic sees
  in the frames and how many land on a downbeat (what `synesthete eval --video` reports).

What else runs on the machine changes the speed: say what did when you quote it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def procedural(songs: int, split: str, first: int = 0) -> dict:
    """Accuracy and speed of the analysis on ``songs`` procedural songs of ``split`` from index ``first`` on."""
    import numpy as np

    from synesthete.audio.analysis import analyse_wave
    from synesthete.audio.synth import synthesize
    from synesthete.data import seed_for
    from synesthete.metrics.beats import boundary_hits, f_measure, labels_at, pairwise_label_f
    from synesthete.settings import load_settings

    settings = load_settings()
    sr = settings.audio.sample_rate
    rows, audio_s, wall_s = [], 0.0, 0.0
    for i in range(first, first + songs):
        seed = seed_for(i, settings, split)
        wave, score = synthesize(seed, settings, form=True)
        t0 = time.perf_counter()
        a = analyse_wave(wave, sr)
        wall_s += time.perf_counter() - t0
        audio_s += score["duration"]
        bar = 4 * 60.0 / score["tempo"]
        truth = np.array([s["start"] for s in score["sections"][1:]])
        found = np.array([s.start for s in a.sections[1:]])
        hit, precision = boundary_hits(truth, found, bar)
        beat_times = np.array(score["beats"])
        ref_labels = labels_at(beat_times, [(s["start"], s["end"], s["label"]) for s in score["sections"]])
        det_labels = labels_at(beat_times, [(s.start, s.end, s.label) for s in a.sections])
        ratio = a.tempo / score["tempo"]
        rows.append({
            "seed": seed, "tempo": score["tempo"], "found_tempo": round(a.tempo, 2), "seconds": score["duration"],
            "beat_f": f_measure(score["beats"], a.beats), "downbeat_f": f_measure(score["downbeats"], a.downbeats),
            "tempo_ok": abs(ratio - 1) <= 0.04, "tempo_octave": min(abs(ratio - 2), abs(ratio - 0.5)) <= 0.08,
            "boundaries": len(truth), "found_boundaries": len(found), "hit": hit, "precision": precision,
            "form": score["form"], "found_form": "".join(s.label for s in a.sections),
            "label_f": pairwise_label_f(ref_labels, det_labels),
        })

    def mean(key: str) -> float:
        values = [float(r[key]) for r in rows if r[key] == r[key]]  # NaN-free
        return round(statistics.fmean(values), 4) if values else float("nan")

    # Boundary figures pooled over songs (each boundary counts once), not averaged per song.
    hits = sum(round(r["hit"] * r["boundaries"]) for r in rows if r["boundaries"])
    found_hits = sum(round(r["precision"] * r["found_boundaries"]) for r in rows if r["found_boundaries"])
    return {
        "split": split, "first": first, "songs": songs, "audio_seconds": round(audio_s, 1),
        "beat_f": mean("beat_f"), "beat_f_worst": round(min(r["beat_f"] for r in rows), 3),
        "downbeat_f": mean("downbeat_f"), "downbeat_f_worst": round(min(r["downbeat_f"] for r in rows), 3),
        "tempo_ok": mean("tempo_ok"), "tempo_octave": mean("tempo_octave"),
        "boundary_hit_rate": round(hits / max(1, sum(r["boundaries"] for r in rows)), 4),
        "boundary_precision": round(found_hits / max(1, sum(r["found_boundaries"] for r in rows)), 4),
        "label_pairwise_f": mean("label_f"),
        "speed_x_realtime": round(audio_s / wall_s, 1),
        "per_song": rows,
    }


def renders(count: int, seconds: float, steps: int) -> dict:
    """Cuts of renders of ``count`` held-out songs with a form (``seconds`` long each) with the shipped
    checkpoints: on the render's own downbeats (the bar), on the exact ones, and as `eval --video` sees them
    (look changes found by the style critic, against the downbeats of the analysis of the audio)."""
    import tempfile

    import numpy as np

    from synesthete.audio.analysis import analyse_file
    from synesthete.audio.synth import synthesize
    from synesthete.checkpoint import load_critic
    from synesthete.data import seed_for
    from synesthete.eval import section_scores
    from synesthete.media import write_wav
    from synesthete.pipeline import Synesthete
    from synesthete.settings import load_settings

    settings = load_settings()
    pipe = Synesthete.from_pretrained(device="cpu", sampling={"steps": steps})
    critic = load_critic(pipe.settings.critic_path)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(count):
            seed = seed_for(i, settings, "heldout")
            wave, score = synthesize(seed, settings, form=True, duration=seconds)
            path = Path(folder) / f"song{i}.wav"
            write_wav(path, wave, settings.audio.sample_rate)
            result = pipe.render(path)
            fps = result.fps
            detected = analyse_file(path).downbeats  # what the render cut on (the same analysis)

            def on(frames: list[int], downbeats, fps: float = fps) -> int:
                d = np.asarray(downbeats, dtype=float)
                return sum(bool(d.size) and float(np.abs(d - f / fps).min()) <= 1 / fps + 1e-6 for f in frames)

            seen = section_scores(critic.outputs(result.frames)[1], critic.cut_threshold,
                                  analyse_file(path), fps, result.num_frames)
            rows.append({"seed": seed, "tempo": score["tempo"], "form": score["form"], "cuts": result.cuts,
                         "on_detected_downbeat": on(result.cuts, detected),
                         "on_exact_downbeat": on(result.cuts, score["downbeats"]),
                         "true_boundaries": [round(s["start"] * fps) for s in score["sections"][1:]],
                         "look_changes_seen": seen.cut_frames, "seen_on_downbeat": seen.on_downbeats,
                         "rtf": round(result.rtf, 2)})
    cuts = sum(len(r["cuts"]) for r in rows)
    seen = sum(len(r["look_changes_seen"]) for r in rows)
    return {"songs": count, "seconds": seconds, "steps": steps, "cuts": cuts,
            "cuts_on_detected_downbeats": round(sum(r["on_detected_downbeat"] for r in rows) / max(cuts, 1), 4),
            "cuts_on_exact_downbeats": round(sum(r["on_exact_downbeat"] for r in rows) / max(cuts, 1), 4),
            "look_changes_seen_by_eval": seen,
            "seen_on_downbeats": round(sum(r["seen_on_downbeat"] for r in rows) / max(seen, 1), 4),
            "per_song": rows}


def real_music(folders: list[Path], plot: Path | None) -> dict:
    """Tempo, sections and speed of ``analyse_file`` on every song under ``folders``."""
    from synesthete.audio.analysis import analyse_file
    from synesthete.errors import InputError
    from synesthete.files import find_music

    rows, skipped, audio_s, wall_s = [], [], 0.0, 0.0
    for folder in folders:
        for path in find_music(folder):
            t0 = time.perf_counter()
            try:
                a = analyse_file(path)
            except InputError as exc:  # a file FFmpeg cannot decode: listed, not analysed
                skipped.append(f"{folder.name}/{path.name}: {exc}")
                continue
            wall_s += time.perf_counter() - t0
            audio_s += a.duration
            rows.append({"song": f"{folder.name}/{path.name}", "seconds": round(a.duration, 1),
                         "tempo": round(a.tempo, 1), "sections": len(a.sections),
                         "form": "".join(s.label for s in a.sections), "beats": len(a.beats),
                         "downbeats": len(a.downbeats)})
            if plot is not None and len(rows) == 1:
                from synesthete.metrics.plot import plot_analysis

                plot_analysis(plot, a, title=rows[0]["song"])
    return {"songs": len(rows), "skipped": skipped, "audio_seconds": round(audio_s, 1),
            "speed_x_realtime_with_decoding": round(audio_s / wall_s, 1) if wall_s else None,
            "sections_per_song": round(statistics.fmean(r["sections"] for r in rows), 2) if rows else None,
            "per_song": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=30)
    parser.add_argument("--split", choices=("heldout", "train"), default="heldout")
    parser.add_argument("--first", type=int, default=0, help="index of the first song of the split")
    parser.add_argument("--music", type=Path, action="append", default=[], help="a folder of real songs")
    parser.add_argument("--plot", type=Path, help="with --music: the analysis plot of its first song")
    parser.add_argument("--renders", type=int, default=0,
                        help="also render this many held-out songs with the shipped checkpoints and score their cuts")
    parser.add_argument("--render-seconds", type=float, default=20.0)
    parser.add_argument("--render-steps", type=int, default=4)
    parser.add_argument("--brief", action="store_true", help="leave out the per-song rows")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    out = {"procedural": procedural(args.songs, args.split, args.first)} if args.songs else {}
    if args.renders:
        out["renders"] = renders(args.renders, args.render_seconds, args.render_steps)
    if args.music:
        out["music"] = real_music(args.music, args.plot)
    if args.brief:
        for part in out.values():
            part.pop("per_song", None)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
