"""`synesthete eval`: score audio-visual sync of the model, of the procedural visualizers, or of any video.

Default mode renders K held-out procedural clips (drums, silences and drop-outs forced on) with the
current checkpoints and prints, side by side, the model with its own audio, the model's video paired with
mismatched audio (another held-out clip, and its own audio delayed by half a beat), the oracle (the
visualizers' own video) under the same pairings, and a static-frame floor. ``--video`` scores any file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synesthete.console import make_progress
from synesthete.errors import InputError, OutputError
from synesthete.files import atomic_path, check_output
from synesthete.media import load_audio, load_video, to_unit
from synesthete.metrics.flow import motion_curve
from synesthete.metrics.quality import nanmean, psnr, ssim
from synesthete.metrics.sync import SyncAnalysis, analyse
from synesthete.settings import Settings

# Row names of the held-out table (video, paired audio), in display order, and their JSON keys.
MODEL, MODEL_OTHER, MODEL_SHIFT = "model", "model, other audio", "model, ½-beat shift"
ORACLE, ORACLE_OTHER, ORACLE_SHIFT = "oracle", "oracle, other audio", "oracle, ½-beat shift"
STATIC = "static floor"
ROW_KEYS = {
    MODEL: "model", MODEL_OTHER: "model_other_audio", MODEL_SHIFT: "model_half_beat_shift",
    ORACLE: "oracle", ORACLE_OTHER: "oracle_other_audio", ORACLE_SHIFT: "oracle_half_beat_shift",
    STATIC: "static",
}



# --------------------------------------------------------------------------------------------- helpers
def json_safe(obj: Any) -> Any:
    """NaN/inf -> None, numpy -> Python, recursively (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_safe(data), indent=2) + "\n")


def delay(wave: torch.Tensor, seconds: float, sample_rate: int) -> torch.Tensor:
    """``wave`` [N] delayed by ``seconds`` (silence in front), same length."""
    shift = min(wave.shape[-1], int(round(seconds * sample_rate)))
    return torch.cat([wave.new_zeros(shift), wave[: wave.shape[-1] - shift]])


# --------------------------------------------------------------------------------------------- --video
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


def section_scores(feats: torch.Tensor, threshold: float, song: Any, fps: float, frames: int) -> SectionScores:
    """``SectionScores`` of a video's critic features [T, D] (cut ``threshold``) and its song's analysis."""
    from synesthete.metrics.picture import LOOK_WINDOW, look_changes

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
    critic: Any | None = None,
) -> tuple[VideoScore, torch.Tensor, SyncAnalysis]:
    """Sync and picture figures of a video file -> (scores, its frames uint8 [T, 3, H, W], the sync analysis).

    ``critic`` is ``(network, checkpoint)`` from ``metrics.picture.load_critic`` (default: loaded from
    ``settings.critic_path``). What `synesthete eval --video` and ``Synesthete.score`` both run.
    """
    if critic is None:
        from synesthete.device import resolve_device
        from synesthete.metrics.picture import load_critic

        critic = load_critic(settings.critic_path, resolve_device(settings.device))
    result, analysis = score_video(settings, Path(video), audio, manifest)
    frames = result.pop("_frames")
    outputs = _critic_view(critic, frames)
    song = analysis.song
    if song is None:  # exact beats from a manifest: the downbeats still come from the analysis of the audio
        from synesthete.audio.analysis import analyse_file

        song = analyse_file(Path(audio) if audio is not None else Path(video))
    sections = section_scores(outputs[1], float(critic[1]["cut_threshold"]), song, result["fps"], result["frames"])
    score = VideoScore(
        video=Path(result["video"]), audio=Path(result["audio"]), fps=result["fps"], frames=result["frames"],
        width=result["size"][0], height=result["size"][1], video_seconds=result["video_seconds"],
        audio_seconds=result["audio_seconds"], scored_seconds=result["scored_seconds"], strict=result["strict"],
        peak_threshold=result["peak_threshold"], beats=result["beats"], tempo_bpm=result["tempo_bpm"],
        sync=SyncScores(**result["metrics"]), picture=PictureScores(**video_picture(critic, frames, outputs=outputs)),
        notes=list(result["notes"]), sections=sections,
    )
    return score, frames, analysis


def heldout_clips(settings: Settings, count: int) -> list[dict]:
    """The first ``count`` held-out procedural clips, with drums, silences and drop-outs forced on."""
    from synesthete.data import make_clip, seed_for

    return [
        make_clip(
            seed_for(i, settings, "heldout"), settings, with_frames=True,
            drums=True, silence=True, dropout=True, duration=settings.eval.clip_seconds,
        )
        for i in range(count)
    ]


def _visualizers(wave: torch.Tensor, params: dict, settings: Settings, frames: int | None = None) -> torch.Tensor:
    """The visualizers of ``params`` (a visual spec) driven by mono audio ``wave`` -> uint8 [T, 3, H, W]
    (T = ``frames`` if given, else what the audio's length makes)."""
    from synesthete.data import feature_extractor
    from synesthete.media import to_uint8
    from synesthete.visual import render_frames

    return to_uint8(render_frames(feature_extractor(settings)(wave, frames), wave, params, settings))


def _oracle_for_audio(clip: dict, other: dict, settings: Settings) -> torch.Tensor:
    """The clip's visualizer (same parameters) driven by ``other``'s audio -> uint8 [T, 3, H, W]."""
    return _visualizers(other["audio"], clip["meta"]["visual"], settings, clip["features"].shape[0])


@torch.no_grad()
def _latents(models: Any, frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Standardised VAE latent means of frames [T, 3, H, W] -> [T, C, h, w] (batched, on CPU)."""
    return torch.cat([models.encode(chunk).float().cpu() for chunk in torch.split(frames, 64)])


def _pixel_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute pixel difference of two videos, as a fraction of full scale."""
    t = min(a.shape[0], b.shape[0])
    return float((to_unit(a[:t]) - to_unit(b[:t])).abs().mean())


class _HeldoutTally:
    """What the held-out eval accumulates: per-row sync metrics, shuffle gaps, VAE quality, clip 0's analyses."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rows: dict[str, list[dict]] = {name: [] for name in ROW_KEYS}
        self.gaps: dict[str, dict[str, list[float]]] = {"model": {}, "oracle": {}}
        self.psnrs: list[float] = []
        self.ssims: list[float] = []
        self.per_clip: list[dict] = []
        self.plot_panels: dict[str, SyncAnalysis] = {}

    def score(self, name: str, frames: torch.Tensor, audio: torch.Tensor, beats: list[float], motion: np.ndarray,
              clip_rows: dict, first: bool) -> None:
        """Analyse one (video, audio) row of a clip and record it under ``name``."""
        s = self.settings
        a = analyse(frames, audio, s.audio.sample_rate, s.video.fps, s, beats=beats, strict=s.eval.strict,
                    motion=motion)
        clip_rows[ROW_KEYS[name]] = a.metrics()
        self.rows[name].append(a.metrics())
        if first:
            self.plot_panels[name] = a

    def gap(self, who: str, kind: str, value: float) -> None:
        self.gaps[who].setdefault(kind, []).append(value)

    def summary(self) -> tuple[dict, dict]:
        """(mean metrics per row, shuffle gaps per video source)."""
        names = [n for n in ROW_KEYS if self.rows[n]]
        summary = {ROW_KEYS[n]: {key: nanmean([r[key] for r in self.rows[n]]) for key in self.rows[n][0]}
                   for n in names}
        gap_out: dict[str, dict[str, float]] = {}
        for who in ("model", "oracle"):
            if who not in summary:
                continue
            gap_out[who] = {
                "av_align_vs_other_audio": summary[who]["av_align"] - summary[f"{who}_other_audio"]["av_align"],
                "av_align_vs_half_beat_shift":
                    summary[who]["av_align"] - summary[f"{who}_half_beat_shift"]["av_align"],
                **{f"{kind}_difference": nanmean(vals) for kind, vals in self.gaps[who].items()},
            }
        return summary, gap_out


def clip_look(clip: dict, settings: Settings) -> dict | None:
    """The look (visual parameters) a held-out clip's render starts from: the clip's own with
    ``eval.clip_look`` (as the FSD floor assumes), else None (the render seed's, as ``render`` draws it)."""
    return clip["meta"]["visual"] if settings.eval.clip_look else None


SEED_LOOK = "visualizers_in_the_seed_look"  # eval's FSD reference: what a perfect model in render's look scores


VAE_ROUNDTRIP = "vae_reconstructions_of_the_oracle"  # FSD reference: what the Eye alone keeps of the oracle


@torch.no_grad()
def _vae_roundtrip(models: Any, frames: torch.Tensor, device: torch.device, batch: int = 64) -> torch.Tensor:
    """decode(encode(x)) of every oracle frame [T, 3, H, W] uint8 -> uint8: the best picture the DiT could
    give through this VAE."""
    from synesthete.media import to_uint8

    return torch.cat([to_uint8(models.vae.decode(models.vae.encode(to_unit(part, device))[0]))
                      for part in frames.split(batch)])


def _seed_look_oracle(clips: list[dict], settings: Settings) -> list[torch.Tensor]:
    """Each clip's audio drawn by its style's visualizers in the look the render seed picks (``render.seed_look``),
    not the clip's own: the FSD of a perfect model that renders in that look, as ``render --style`` does."""
    from synesthete.render import render_seed, seed_look
    from synesthete.styles import clip_style

    seed = render_seed(settings)
    return [_visualizers(clip["audio"], seed_look(clip_style(clip["meta"]), seed, settings), settings)
            for clip in clips]


def _render_heldout(models: Any, clips: list[dict], settings: Settings, bar: Any) -> list[torch.Tensor]:
    """The model's video of every clip, each with the same noise seed and the clip's true style."""
    from synesthete.render import generate_frames
    from synesthete.styles import clip_style

    task = bar.add_task("rendering", total=len(clips), info="")
    renders = []
    for clip in clips:
        renders.append(generate_frames(models, clip["audio"], settings, style=clip_style(clip["meta"]),
                                       look=clip_look(clip, settings)))
        bar.advance(task)
    return renders


def _vae_quality(models: Any, oracle: torch.Tensor, device: torch.device, frames: int) -> tuple[float, float]:
    """PSNR and SSIM of the VAE's reconstruction of ``frames`` oracle frames, evenly spaced through the clip."""
    idx = torch.linspace(0, oracle.shape[0] - 1, min(frames, oracle.shape[0]))
    x = to_unit(oracle[idx.round().long()], device)
    with torch.no_grad():
        recon = models.vae.decode(models.vae.encode(x)[0]).clamp(0, 1).float().cpu()
    return psnr(x.cpu(), recon), ssim(x.cpu(), recon)


def _score_clip(
    tally: _HeldoutTally, clip: dict, other: dict, first: bool, settings: Settings,
    models: Any | None = None, video: torch.Tensor | None = None, other_video: torch.Tensor | None = None,
    device: torch.device | None = None,
) -> dict:
    """Score one held-out clip: the oracle (and, with ``models``, the model's ``video``) against its own audio,
    another clip's and its own shifted by half a beat, plus the static floor and the shuffle gaps."""
    sr = settings.audio.sample_rate
    wave, beats = clip["audio"], clip["meta"]["beats"]
    half_beat = 30.0 / float(clip["meta"]["tempo"])
    shifted, shifted_beats = delay(wave, half_beat, sr), [b + half_beat for b in beats]
    clip_rows: dict[str, dict] = {}

    def rows_for(frames: torch.Tensor, names: tuple[str, str, str]) -> None:
        motion = motion_curve(frames, settings.eval).numpy()
        tally.score(names[0], frames, wave, beats, motion, clip_rows, first)
        tally.score(names[1], frames, other["audio"], other["meta"]["beats"], motion, clip_rows, first)
        tally.score(names[2], frames, shifted, shifted_beats, motion, clip_rows, first)

    oracle = clip["frames"]  # [T, 3, H, W] uint8
    rows_for(oracle, (ORACLE, ORACLE_OTHER, ORACLE_SHIFT))
    tally.score(STATIC, oracle[:1].expand_as(oracle), wave, beats, np.zeros(oracle.shape[0]), clip_rows, first)
    oracle_swapped = _oracle_for_audio(clip, other, settings)
    tally.gap("oracle", "pixel", _pixel_gap(oracle, oracle_swapped))

    if models is not None:
        rows_for(video, (MODEL, MODEL_OTHER, MODEL_SHIFT))
        tally.gap("model", "pixel", _pixel_gap(video, other_video))
        z_a, z_b = _latents(models, video, device), _latents(models, other_video, device)
        tally.gap("model", "latent", float((z_a - z_b).abs().mean()))
        z_o, z_s = _latents(models, oracle, device), _latents(models, oracle_swapped, device)
        tally.gap("oracle", "latent", float((z_o - z_s).abs().mean()))
        p, q = _vae_quality(models, oracle, device, settings.eval.quality_frames)
        tally.psnrs.append(p)
        tally.ssims.append(q)
    return clip_rows


def evaluate_heldout(
    settings: Settings, models: Any | None = None, device: torch.device | str = "cpu", progress: bool = True,
    critic: Any | None = None,
    videos: dict[str, list[torch.Tensor]] | None = None,
) -> tuple[dict, dict[str, SyncAnalysis]]:
    """Score ``settings.eval.clips`` held-out clips -> (results, analyses of clip 0 for the plot).

    With ``models`` (``checkpoint.load_models``) the model rows and the VAE quality are included; without,
    only the oracle and the static floor (useful before any training). With ``critic`` (``(network,
    checkpoint)`` from ``metrics.picture.load_critic``) the picture metrics are added under "picture".
    A ``videos`` dict receives the model's renders and the oracle's frames (for the contact sheet).
    """
    device = torch.device(device)
    k, strict = settings.eval.clips, settings.eval.strict
    clips = heldout_clips(settings, max(k, 2))  # mismatched audio needs a second clip even when K = 1
    partner = [(i + 1) % len(clips) for i in range(len(clips))]
    tally = _HeldoutTally(settings)
    t_start = time.perf_counter()

    with make_progress(disable=not progress) as bar:
        renders = _render_heldout(models, clips, settings, bar) if models is not None else []
        task = bar.add_task("scoring", total=k, info="")
        for i in range(k):
            clip, j = clips[i], partner[i]
            clip_rows = _score_clip(
                tally, clip, clips[j], i == 0, settings, models,
                video=renders[i] if renders else None, other_video=renders[j] if renders else None, device=device,
            )
            tally.per_clip.append({"seed": int(clip["seed"]), "tempo": clip["meta"]["tempo"], "rows": clip_rows})
            bar.update(task, advance=1, info=f"oracle AV-Align {clip_rows['oracle']['av_align']:.2f}")

    summary, gap_out = tally.summary()
    oracle_av = summary["oracle"]["av_align"]
    result = {
        "mode": "heldout",
        "clips": k,
        "clip_seconds": settings.eval.clip_seconds,
        "seeds": [int(c["seed"]) for c in clips[:k]],
        "fps": settings.video.fps,
        "size": [settings.video.width, settings.video.height],
        "strict": strict,
        "peak_threshold": 0.0 if strict else settings.eval.peak_threshold,
        "rows": summary,
        "ratio_to_oracle": {
            name: (summary[name]["av_align"] / oracle_av if oracle_av > 0 else math.nan) for name in summary
        },
        "gaps": gap_out,
        "quality": ({"vae_psnr_db": nanmean(tally.psnrs), "vae_ssim": nanmean(tally.ssims)}
                    if models is not None else {}),
        "per_clip": tally.per_clip,
        "seconds": time.perf_counter() - t_start,
    }
    if critic is not None:
        t_picture = time.perf_counter()
        references = {SEED_LOOK: _seed_look_oracle(clips[:k], settings)}
        if models is not None:
            references[VAE_ROUNDTRIP] = [_vae_roundtrip(models, c["frames"], device) for c in clips[:k]]
        result["picture"] = heldout_picture(critic, renders[:k], clips[:k], settings, references=references)
        result["picture"]["seconds"] = time.perf_counter() - t_picture
    if videos is not None:
        videos.update(model=renders[:k], oracle=[c["frames"] for c in clips[:k]])
    return result, tally.plot_panels


# --------------------------------------------------------------------------------------------- picture
def _critic_view(critic: Any, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from synesthete.train.critic import critic_outputs

    return critic_outputs(critic[0], video)


def video_picture(
    critic: Any, frames: torch.Tensor, requested: list[str] | None = None,
    outputs: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, float]:
    """Picture metrics of one video that need no oracle: recognisability, cut rate, stability, sharpness.

    ``outputs`` are the critic's (probs, features) of ``frames`` when the caller already has them.
    """
    from synesthete.metrics import picture
    from synesthete.styles import families

    probs, feats = outputs if outputs is not None else _critic_view(critic, frames)
    wanted = [families().index(n) for n in requested] if requested else None
    rec = picture.recognisability(probs, wanted)
    return {
        "recognisability": rec["confidence"],
        "on_style": rec["on_style"],
        "top_family": families()[int(probs.argmax(1).mode().values)] if probs.shape[0] else None,
        "cut_rate": picture.cut_rate(feats, float(critic[1]["cut_threshold"])),
        "style_stability": picture.style_stability(probs),
        "sharpness": picture.sharpness(frames),
    }


def heldout_picture(critic: Any, renders: list[torch.Tensor], clips: list[dict], settings: Settings,
                    references: dict[str, list[torch.Tensor]] | None = None) -> dict:
    """Picture metrics of the model's renders beside the oracle's frames of the same held-out clips.

    FSD compares the model's frames from the first half of every clip with the oracle's frames from the second
    half (and vice versa, averaged); its floor is the oracle's first halves against the oracle's second halves,
    the same comparison with perfect imitation. So model and floor share sample sizes, clips and styles, and
    no frame is compared with itself. ``references`` (name -> a video per clip) are scored the same way as the
    model, under ``fsd["references"]`` as ratios to the floor.
    """
    from synesthete.metrics import picture
    from synesthete.styles import clip_style

    out: dict[str, Any] = {"cut_threshold": float(critic[1]["cut_threshold"])}
    feats: dict[str, list[torch.Tensor]] = {"model": [], "oracle": []}
    rows: dict[str, list[dict]] = {"model": [], "oracle": [], "oracle_shuffled_in_time": []}
    for render, clip in zip(renders, clips, strict=True):
        style = clip_style(clip["meta"])
        for who, video in (("model", render), ("oracle", clip["frames"])):
            outputs = _critic_view(critic, video)  # the critic runs once per video
            rows[who].append(video_picture(critic, video, style, outputs))
            feats[who].append(outputs[1])
        order = torch.randperm(clip["frames"].shape[0], generator=torch.Generator().manual_seed(clip["seed"]))
        rows["oracle_shuffled_in_time"].append(video_picture(critic, clip["frames"][order], style))
    for who, per_clip in rows.items():
        out[who] = {key: nanmean([r[key] for r in per_clip]) for key in per_clip[0] if key != "top_family"}

    def half(who: str, part: int) -> torch.Tensor:
        return torch.cat([f[: len(f) // 2] if part == 0 else f[len(f) // 2 :] for f in feats[who]])

    def against_oracle(who: str) -> float:
        return (picture.frechet_distance(half(who, 0), half("oracle", 1))
                + picture.frechet_distance(half(who, 1), half("oracle", 0))) / 2

    def ratio(value: float) -> float:
        return value / floor if floor and math.isfinite(floor) and floor > 0 else math.nan

    floor = picture.frechet_distance(half("oracle", 0), half("oracle", 1))
    fsd = against_oracle("model")
    out["fsd"] = {"model": fsd, "floor_oracle_vs_oracle": floor, "ratio_to_floor": ratio(fsd)}
    if references:
        for name, videos in references.items():
            feats[name] = [_critic_view(critic, video)[1] for video in videos]
        out["fsd"]["references"] = {name: ratio(against_oracle(name)) for name in references}
    oracle_sharp = out["oracle"]["sharpness"]
    out["sharpness_ratio"] = out["model"]["sharpness"] / oracle_sharp if oracle_sharp > 0 else math.nan
    return out


def long_picture(models: Any, critic: Any, settings: Settings, progress: bool = True) -> dict:
    """Long renders: style stability and cut rate over ``eval.long_seconds`` of a held-out song, and the seam
    score on ``eval.probe_seconds`` of an aperiodic probe (noise, random hits), beside the oracle's."""
    from synesthete.data import feature_extractor, make_clip, seed_for
    from synesthete.metrics import picture
    from synesthete.render import generate_frames, song_layout
    from synesthete.styles import clip_style, style_name

    ev = settings.eval
    out: dict[str, Any] = {}
    # A held-out seed past the scored clips, so the long song is not one of them.
    seed = seed_for(ev.clips + 1, settings, "heldout")
    extract = feature_extractor(settings)

    def joins_of(wave: torch.Tensor) -> list[int]:  # where render's windows of this audio join
        return song_layout(extract(wave), settings, models.config.window, settings.render.exemplar).joins()

    if ev.long_seconds > 0:
        clip = make_clip(seed, settings, with_frames=True, drums=True, duration=ev.long_seconds)
        style = clip_style(clip["meta"])
        video = generate_frames(models, clip["audio"], settings, progress=progress, style=style,
                                look=clip_look(clip, settings))
        out["long"] = {
            "seconds": ev.long_seconds, "style": style_name(style),
            "model": {**video_picture(critic, video, style),
                      "seam_score": picture.seam_score(video, joins_of(clip["audio"]))},
            "oracle": video_picture(critic, clip["frames"], style),
        }
        out["_long_video"] = video
    if ev.probe_seconds > 0:
        clip = make_clip(seed, settings, with_frames=False)
        style = clip_style(clip["meta"])
        wave = picture.aperiodic_probe(ev.probe_seconds, settings.audio.sample_rate, seed=seed)
        video = generate_frames(models, wave, settings, progress=progress, style=style, look=clip_look(clip, settings))
        oracle = _visualizers(wave, clip["meta"]["visual"], settings)
        out["probe"] = {
            "seconds": ev.probe_seconds, "style": style_name(style),
            "model": {"seam_score": picture.seam_score(video, joins_of(wave)),
                      "style_stability": picture.style_stability(_critic_view(critic, video)[0])},
            "oracle": {"seam_score": picture.seam_score(oracle, joins_of(wave))},
        }
    return out


def heldout_sheet_rows(videos: dict[str, list[torch.Tensor]], settings: Settings) -> list[torch.Tensor]:
    """Per held-out clip a row of model frames, then a row of oracle frames at the same times."""
    from synesthete.metrics.picture import sheet_times

    rows = []
    for model, oracle in zip(videos["model"], videos["oracle"], strict=True):
        idx = sheet_times(min(len(model), len(oracle)), settings.eval.sheet_frames)
        rows += [to_unit(model[idx]), to_unit(oracle[idx])]
    return rows


def write_heldout_sheet(path: Path, videos: dict[str, list[torch.Tensor]], settings: Settings) -> None:
    """Contact sheet PNG of ``heldout_sheet_rows``."""
    from synesthete.metrics.picture import write_sheet

    write_sheet(path, heldout_sheet_rows(videos, settings), group=2)


def write_video_sheet(path: Path, frames: torch.Tensor, settings: Settings, rows: int = 4) -> None:
    """Contact sheet of one video: ``rows`` rows of ``eval.sheet_frames`` frames spread over the video."""
    from synesthete.metrics.picture import sheet_times, write_sheet

    n = settings.eval.sheet_frames
    idx = sheet_times(frames.shape[0], n * rows)
    picked = to_unit(frames[idx])
    write_sheet(path, [picked[r * n : (r + 1) * n] for r in range(rows)], group=rows)


# --------------------------------------------------------------------------------------------- command
def run_eval(
    settings: Settings,
    video: Path | None = None,
    audio: Path | None = None,
    json_out: Path | None = None,
    plot: Path | None = None,
    overwrite: bool = False,
    sheet: Path | None = None,
    manifest: Path | None = None,
) -> tuple[dict, list[Path]]:
    """`synesthete eval`: score ``video`` (with its own track or ``audio``), or the checkpoints on held-out clips.

    Sync and picture metrics both; ``sheet`` writes a contact sheet PNG (model above oracle per held-out
    clip, or frames of ``video``); ``json_out`` writes the results as JSON; ``manifest`` gives ``video`` the
    exact beats of its gen-audio clip. Returns the results (``result["kind"]`` is "video" or "heldout") and
    the files written; printing them is the CLI's job (``synesthete.tables``).
    """
    from synesthete.device import resolve_device
    from synesthete.metrics.picture import load_critic

    if sheet is not None and Path(sheet).suffix.lower() != ".png":
        raise OutputError(f"{sheet}: the contact sheet must be a .png file")
    for out in (json_out, plot, sheet):
        if out is not None:
            check_output(Path(out), overwrite)
    if video is None and audio is not None:
        raise InputError("--audio only applies to --video: pass the video to score with --video")
    if video is None and manifest is not None:
        raise InputError("--manifest only applies to --video: held-out clips know their beats already")
    device = resolve_device(settings.device)
    critic = load_critic(settings.critic_path, device)  # checked before any heavy work

    if video is not None:
        score, frames, analysis = score_file(settings, Path(video), audio, manifest, critic)
        result = score.to_dict()
        panels = [(Path(video).name, analysis)]
        if sheet is not None:
            write_video_sheet(Path(sheet), frames, settings)
    else:
        from synesthete.checkpoint import load_models

        models = load_models(settings, settings.paths.checkpoints, device)
        settings = models.fitted(settings)
        videos: dict[str, list[torch.Tensor]] = {}
        result, found = evaluate_heldout(settings, models=models, device=device, critic=critic, videos=videos)
        result["kind"] = "heldout"
        t_long = time.perf_counter()
        long = long_picture(models, critic, settings)
        long.pop("_long_video", None)
        result["picture"].update(long)
        result["picture"]["seconds"] += time.perf_counter() - t_long
        result["checkpoints"] = str(settings.paths.checkpoints)
        result["critic"] = str(settings.critic_path)
        panels = [(f"{name} (held-out clip 0)", found[name]) for name in (MODEL, ORACLE) if name in found]
        if sheet is not None:
            write_heldout_sheet(Path(sheet), videos, settings)

    written = []
    if json_out is not None:
        write_json(Path(json_out), result)
        written.append(Path(json_out))
    if plot is not None:
        from synesthete.metrics.plot import plot_sync

        plot_sync(Path(plot), panels)
        written.append(Path(plot))
    if sheet is not None:
        written.append(Path(sheet))
    return result, written
