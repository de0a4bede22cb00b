"""`synesthete eval --video`: the sync, picture and section figures of any video file (``score_file``)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synesthete.audio.analysis import SongAnalysis, analyse_file
from synesthete.checkpoint import load_critic
from synesthete.device import resolve_device
from synesthete.errors import InputError
from synesthete.eval.picture import video_picture
from synesthete.media import load_audio, load_video
from synesthete.metrics.picture import LOOK_WINDOW, look_changes
from synesthete.metrics.sync import SyncAnalysis, analyse
from synesthete.models.critic import Critic
from synesthete.settings import Settings


def _load_pair(video: Path, audio: Path | None) -> tuple[torch.Tensor, float, torch.Tensor, int]:
    frames, fps = load_video(video)  # [T, 3, H, W] uint8
    source = audio if audio is not None else video
    try:
        wave, sr = load_audio(source, mono=True)  # [1, N]
    except InputError as exc:
        if audio is None:
            raise InputError(
                f"{video} has no usable audio track: pass the soundtrack with --audio song.wav"
            ) from exc
        raise
    if wave.shape[-1] == 0:
        raise InputError(f"{source} has no audio samples (empty audio)")
    return frames, fps, wave[0], sr


def manifest_clip(manifest: Path, video: Path, audio: Path | None = None) -> dict:
    """The line of a ``gen-audio`` manifest.jsonl that describes the clip being scored.

    It is the line whose ``wav`` or ``mp4`` has the file name of ``audio`` (when given) or of ``video``; a
    manifest of one clip needs no match. Its ``beats`` are the exact beat times (s) of the score.
    """
    manifest = Path(manifest)
    if manifest.is_dir():
        manifest = manifest / "manifest.jsonl"
    try:
        lines = [line for line in manifest.read_text().splitlines() if line.strip()]
        entries = [json.loads(line) for line in lines]
    except FileNotFoundError:
        raise InputError(f"--manifest {manifest} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"--manifest {manifest} is not a gen-audio manifest.jsonl: {exc}") from None
    if not entries or not all(isinstance(e, dict) and isinstance(e.get("beats"), list) for e in entries):
        raise InputError(f"--manifest {manifest} is not a gen-audio manifest.jsonl (no beats)")
    names = [Path(p).name for p in (audio, video) if p is not None]
    for name in names:
        for entry in entries:
            if name in (entry.get("wav"), entry.get("mp4")):
                return entry
    if len(entries) == 1:
        return entries[0]
    raise InputError(
        f"--manifest {manifest} lists no clip named {' or '.join(names)}: pass the clip's own file with --video "
        "or --audio (e.g. --audio clip_00003.wav for a render of it)"
    )


def score_video(
    settings: Settings, video: Path, audio: Path | None = None, manifest: Path | None = None
) -> tuple[dict, SyncAnalysis]:
    """Score an existing video file against its own audio track (or ``audio``) -> (results, analysis).

    With ``manifest`` (a ``gen-audio`` manifest.jsonl) the Beat Alignment Score uses the clip's exact beats
    and tempo instead of an estimate.
    """
    video = Path(video)
    clip = manifest_clip(manifest, video, audio) if manifest is not None else None
    frames, fps, wave, sr = _load_pair(video, Path(audio) if audio is not None else None)
    a = analyse(frames, wave, sr, fps, settings, beats=clip["beats"] if clip else None)
    result = {
        "mode": "video",
        "video": str(video),
        "audio": str(audio if audio is not None else video),
        "fps": fps,
        "frames": int(frames.shape[0]),
        "size": [int(frames.shape[-1]), int(frames.shape[-2])],
        "video_seconds": a.video_seconds,
        "audio_seconds": a.audio_seconds,
        "scored_seconds": a.duration,
        "strict": settings.eval.strict,
        "peak_threshold": 0.0 if settings.eval.strict else settings.eval.peak_threshold,
        "beats": f"{manifest} ({clip.get('wav') or clip.get('mp4')})" if clip else "estimated",
        "tempo_bpm": clip.get("tempo") if clip else a.tempo,
        "metrics": a.metrics(),
        "notes": a.notes,
        "_frames": frames,
    }
    return result, a


@dataclass(frozen=True)
class SyncScores:
    """How a video moves with its audio (``metrics.sync.SyncAnalysis.metrics``); NaN where undefined."""

    av_align: float  # AV-Align: matched audio/video peaks over their union
    audio_peaks: float  # counts (floats, as in the JSON)
    video_peaks: float
    matched_peaks: float
    bas: float  # Beat Alignment Score
    flicker: float  # motion in settled silence
    motion_silence: float  # mean motion (px/frame) in silence
    motion_sound: float  # and where there is sound
    silence_ratio: float  # motion_silence / motion_sound
    silent_fraction: float  # share of frames whose audio is silent


@dataclass(frozen=True)
class PictureScores:
    """The picture metrics of one video that need no oracle (``video_picture``, with the style critic)."""

    recognisability: float  # the critic's mean top-family confidence
    on_style: float  # share of frames on the requested style (NaN: none requested)
    top_family: str | None  # the family the critic sees most
    cut_rate: float  # share of frame pairs that jump (hard cuts)
    style_stability: float  # share of frames whose top family is the video's most common
    sharpness: float  # mean image gradient


@dataclass(frozen=True)
class SectionScores:
    """Whether a video's cuts follow its song: the look changes the style critic sees (``picture.look_changes``)
    against the downbeats the song analysis finds in the audio."""

    look_changes: int  # cuts from one look to another
    on_downbeats: int  # of them within one frame of a downbeat
    on_downbeat_share: float  # on_downbeats / look_changes (NaN without look changes)
    chance_share: float  # the share of frames within one frame of a downbeat: what cuts at random would score
    tempo: float  # BPM, of the analysis
    downbeats: int
    sections: int  # sections the analysis finds in the audio
    cut_frames: list[int] = dataclasses.field(default_factory=list)


def section_scores(feats: torch.Tensor, threshold: float, song: SongAnalysis, fps: float,
                   frames: int) -> SectionScores:
    """``SectionScores`` of a video's critic features [T, D] (cut ``threshold``) and its song's analysis."""
    cuts = look_changes(feats, threshold)
    down = np.asarray(song.downbeats, dtype=np.float64)

    def near(frame: int) -> bool:  # within one frame of a downbeat
        return bool(down.size) and float(np.abs(down - frame / fps).min()) <= 1.0 / fps + 1e-6

    on = sum(near(c) for c in cuts)
    candidates = range(LOOK_WINDOW, max(LOOK_WINDOW, frames - LOOK_WINDOW + 1))  # where a look change can be found
    chance = float(np.mean([near(i) for i in candidates])) if len(candidates) else math.nan
    return SectionScores(
        look_changes=len(cuts), on_downbeats=on, on_downbeat_share=on / len(cuts) if cuts else math.nan,
        chance_share=chance, tempo=float(song.tempo), downbeats=int(len(down)), sections=len(song.sections),
        cut_frames=cuts,
    )


@dataclass
class VideoScore:
    """The eval figures of one video file: what `synesthete eval --video` prints (``Synesthete.score``)."""

    video: Path
    audio: Path  # the soundtrack scored against (the video's own track unless another was given)
    fps: float
    frames: int
    width: int
    height: int
    video_seconds: float
    audio_seconds: float
    scored_seconds: float  # the overlap of video and audio
    strict: bool  # the published AV-Align peak rule, no noise floor
    peak_threshold: float
    beats: str  # "estimated", or the manifest and clip whose exact beats were used
    tempo_bpm: float | None
    sync: SyncScores
    picture: PictureScores
    notes: list[str] = dataclasses.field(default_factory=list)
    sections: SectionScores | None = None  # cuts against downbeats (with estimated beats: no manifest)

    def to_dict(self) -> dict[str, Any]:
        """The results as ``run_eval`` returns them and ``--json`` prints them."""
        return {
            "mode": "video", "video": str(self.video), "audio": str(self.audio), "fps": self.fps,
            "frames": self.frames, "size": [self.width, self.height], "video_seconds": self.video_seconds,
            "audio_seconds": self.audio_seconds, "scored_seconds": self.scored_seconds, "strict": self.strict,
            "peak_threshold": self.peak_threshold, "beats": self.beats, "tempo_bpm": self.tempo_bpm,
            "metrics": dataclasses.asdict(self.sync), "notes": list(self.notes), "kind": "video",
            "picture": dataclasses.asdict(self.picture),
            "sections": dataclasses.asdict(self.sections) if self.sections is not None else None,
        }


def score_file(
    settings: Settings, video: Path, audio: Path | None = None, manifest: Path | None = None,
    critic: Critic | None = None,
) -> tuple[VideoScore, torch.Tensor, SyncAnalysis]:
    """Sync and picture figures of a video file -> (scores, its frames uint8 [T, 3, H, W], the sync analysis).

    ``critic`` is the style critic (default: ``checkpoint.load_critic`` of ``settings.critic_path``). What
    `synesthete eval --video` and ``Synesthete.score`` both run.
    """
    if critic is None:
        critic = load_critic(settings.critic_path, resolve_device(settings.device))
    result, analysis = score_video(settings, Path(video), audio, manifest)
    frames = result.pop("_frames")
    outputs = critic.outputs(frames)
    song = analysis.song
    if song is None:  # exact beats from a manifest: the downbeats still come from the analysis of the audio
        song = analyse_file(Path(audio) if audio is not None else Path(video))
    sections = section_scores(outputs[1], critic.cut_threshold, song, result["fps"], result["frames"])
    score = VideoScore(
        video=Path(result["video"]), audio=Path(result["audio"]), fps=result["fps"], frames=result["frames"],
        width=result["size"][0], height=result["size"][1], video_seconds=result["video_seconds"],
        audio_seconds=result["audio_seconds"], scored_seconds=result["scored_seconds"], strict=result["strict"],
        peak_threshold=result["peak_threshold"], beats=result["beats"], tempo_bpm=result["tempo_bpm"],
        sync=SyncScores(**result["metrics"]), picture=PictureScores(**video_picture(critic, frames, outputs=outputs)),
        notes=list(result["notes"]), sections=sections,
    )
    return score, frames, analysis
