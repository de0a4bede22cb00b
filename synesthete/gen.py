"""``synesthete gen-audio``: write sample clips to disk for people to watch, hear and inspect.

The training engine never touches disk; this is the separate, inspectable path. Each clip is the very
``make_clip`` of the training stream (same seeds, same code), written as a 16-bit wav, an H.264 yuv420p +
AAC mp4 and one ``manifest.jsonl`` line with its full score and visual parameters.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from synesthete.console import err_console, make_progress
from synesthete.errors import InputError, OutputError, Terminated
from synesthete.files import atomic_path
from synesthete.settings import Settings, VideoSettings

MANIFEST = "manifest.jsonl"


def _video_settings(settings: Settings, width: int | None, height: int | None, fps: int | None) -> Settings:
    """Settings with the requested frame size and rate, checked for what H.264 yuv420p can encode.

    The model needs sizes that are multiples of 16 (the VAE downsamples 16x), and Settings enforces that;
    sample data only needs even sizes. So the size is validated here as a VideoSettings section (positive
    integers, plus evenness) and swapped into an unvalidated copy of the settings, without the 16x rule.
    """
    video = settings.video
    width = video.width if width is None else width
    height = video.height if height is None else height
    fps = video.fps if fps is None else fps
    for name, value in (("width", width), ("height", height), ("fps", fps)):
        if value <= 0:
            raise InputError(f"--{name} must be positive, got {value}")
    for name, value in (("width", width), ("height", height)):
        if value % 2:
            raise InputError(f"--{name} {value} is odd; H.264 yuv420p needs even frame sizes")
    return settings.model_copy(update={"video": VideoSettings(width=width, height=height, fps=fps)})


def _prepare_folder(out: Path, overwrite: bool) -> Path:
    """Create ``out`` (or accept an empty one); a non-empty folder needs ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputError(f"{out} is not empty (use --overwrite to write into it)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {out}: {exc.strerror or exc}") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {out}: permission denied")
    return out


def _visualizer_names(params: dict) -> list[str]:
    """Names of the visualizers a clip's parameters compose (for the manifest's quick-look field)."""
    layers = params.get("layers")
    if isinstance(layers, list):
        return [str(layer.get("name", layer.get("visualizer", "?"))) for layer in layers if isinstance(layer, dict)]
    name = params.get("visualizer", params.get("name"))
    return [str(name)] if name is not None else []


def generate_dataset(
    settings: Settings,
    num: int,
    out: Path,
    audio_only: bool = False,
    overwrite: bool = False,
    width: int | None = None,
    height: int | None = None,
    fps: int | None = None,
    form: bool = False,
    duration: float | None = None,
) -> dict[str, Any]:
    """Write ``num`` clips (wav, mp4 unless ``audio_only``) and ``manifest.jsonl`` into ``out``; return a summary.

    ``form``: each clip is a whole song of sections (``synthesize(form=True)``), ``duration`` seconds long if
    given, else as long as its form; the manifest adds its downbeats and sections. Without ``form`` a clip is
    ``audio.clip_seconds`` long, as the training stream's are.
    """
    if duration is not None and not duration > 0:
        raise InputError(f"--duration must be positive, got {duration}")
    if num <= 0:
        raise InputError(f"--num must be at least 1, got {num}")
    if settings.audio.clip_seconds <= 0:
        raise InputError(f"--duration must be positive, got {settings.audio.clip_seconds}")
    settings = _video_settings(settings, width, height, fps)
    out = _prepare_folder(out, overwrite)
    video = settings.video

    start = time.perf_counter()
    lines: list[str] = []
    synth = {"form": True, "duration": duration} if form else {}
    try:
        _write_clips(settings, num, out, audio_only, lines, synth)
    except (KeyboardInterrupt, Terminated):
        # Ctrl-C or SIGTERM: the clip being written was removed (atomic writes); the finished ones stay,
        # and the manifest lists exactly them.
        if lines:
            _write_manifest(out, lines)
            err_console.print(
                f"[yellow]stopped[/yellow] after {len(lines)} of {num} clips: {out / MANIFEST} lists them"
            )
        raise
    _write_manifest(out, lines)
    wall = time.perf_counter() - start
    return {
        "clips": num,
        "folder": str(out),
        "files": "wav + manifest" if audio_only else "wav + mp4 + manifest",
        "clip seconds": (duration or "a whole song each") if form else settings.audio.clip_seconds,
        **({"form": ", ".join(json.loads(line)["form"] for line in lines)} if form else {}),
        "size": "audio only" if audio_only else f"{video.width}x{video.height} @ {video.fps} fps",
        "stream seed (--seed)": settings.data.seed,
        "clip seeds": _seed_list([json.loads(line)["seed"] for line in lines]),
        "wall s": wall,
        "clips/s": num / wall,
    }


def _seed_list(seeds: list[int]) -> str:
    """The clips' own seeds as the manifest has them: "a, b, c", or "a ... b (n consecutive)"."""
    if len(seeds) <= 3:
        return ", ".join(str(s) for s in seeds)
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]} ... {seeds[-1]} ({len(seeds)} consecutive)"
    return f"{seeds[0]}, {seeds[1]}, ... {seeds[-1]} (see the manifest)"


def _write_manifest(out: Path, lines: list[str]) -> None:
    with atomic_path(out / MANIFEST) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _write_clips(settings: Settings, num: int, out: Path, audio_only: bool, lines: list[str],
                 synth: dict[str, Any]) -> None:
    """Write the clips one by one, appending each finished clip's manifest line to ``lines``; ``synth`` are
    ``synthesize`` overrides (a song form)."""
    # start-up: the CLI imports this module; the clip engine (torch) loads only after generate_dataset's checks
    from synesthete.audio.synth import synthesize
    from synesthete.data import make_clip, seed_for
    from synesthete.media import write_video, write_wav

    sr, video = settings.audio.sample_rate, settings.video
    with make_progress() as progress:
        task = progress.add_task("gen-audio", total=num, info="")
        for i in range(num):
            seed = seed_for(i, settings, "train")
            stem = f"clip_{i:05d}"
            entry: dict[str, Any] = {"index": i, "seed": seed, "wav": f"{stem}.wav"}
            written: list[Path] = []
            line: str | None = None
            try:
                if audio_only:
                    wave, score = synthesize(seed, settings, **synth)  # [N]
                    meta = score
                else:
                    clip = make_clip(seed, settings, **synth)
                    wave, meta = clip["audio"], clip["meta"]
                    written.append(out / f"{stem}.mp4")  # before it exists: a signal may land right after
                    write_video(out / f"{stem}.mp4", clip["frames"], video.fps, audio=wave, sample_rate=sr)
                    entry.update(
                        mp4=f"{stem}.mp4", frames=int(clip["frames"].shape[0]), fps=video.fps,
                        width=video.width, height=video.height, visualizer=_visualizer_names(meta["visual"]),
                    )
                entry.update(meta)
                entry["seed"] = seed
                line = json.dumps(entry)
                (out / f"{stem}.wav").unlink(missing_ok=True)  # an older run's (--overwrite) is not this clip
                write_wav(out / f"{stem}.wav", wave, sr)  # the clip's last file, renamed into place whole
                lines.append(line)
            except BaseException:
                # A clip whose wav is in place is finished (a signal can land between the wav's rename and
                # the line above): the manifest lists it. An unfinished clip leaves nothing: not its mp4
                # without its wav, nor a file the manifest does not list.
                if len(lines) == i:
                    if line is not None and (out / f"{stem}.wav").exists():
                        lines.append(line)
                    else:
                        for path in written:
                            path.unlink(missing_ok=True)
                raise
            progress.update(task, advance=1, info=f"{meta['tempo']:.0f} BPM {meta['scale']}")
