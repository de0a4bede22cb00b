"""The records of a render: ``RenderJob``, what ``plan_render`` checked and ``run_render`` runs, and
``RenderResult`` (with its ``RenderSection``s), what the render made and how."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from synesthete.media import AudioInfo, AudioReader
from synesthete.settings import Settings


@dataclass(frozen=True)
class RenderSection:
    """A section of the song in a render: [start, end) in song seconds, its label (A, B, ...; a repeated
    section shares its letter, and its look), the style it is drawn in, and the render frame it starts at."""

    start: float
    end: float
    label: str
    style: str
    frame: int


@dataclass
class RenderResult:
    """What one render made and how: the typed result of ``Synesthete.render`` (and ``render_song``).

    ``frames`` holds the video as uint8 [T, 3, H, W] (as ``media.load_video`` gives; ``media.to_unit`` makes
    floats in [0, 1]) when it was rendered to memory, and is ``None`` when it was written to ``output``.
    ``timings`` are seconds: "setup" (checking the song, loading the models when this call did), "analysis"
    (the song's beats and sections), "features", "network" (the DiT), "vae_decode", "encode_mux" (H.264 + AAC;
    0 in memory) and "other"; they add up to ``wall``. ``rtf`` (real-time factor) is ``wall`` over ``duration``.
    With ``render.sections``, ``sections`` are the song's sections in the excerpt, each with its look, and
    ``cuts`` the frames where the picture cuts to the next one (each on the downbeat that starts it).
    ``level_gain_db`` says how far the audio the Brain heard was turned down (``render.level``; 0 for a song
    at or under it); the video keeps the song's own sound.
    """

    output: Path | None
    frames: torch.Tensor | None
    fps: int
    num_frames: int
    width: int
    height: int
    start: float
    duration: float
    style: str
    seed: int
    sampler: str
    steps: int
    lanes: int  # lanes the song was generated in (``window_layout``: short songs get fewer than render.lanes)
    guidance: float
    style_guidance: float
    guidance_distilled: bool  # the DiT takes the audio scale as an input (one pass per step, not two)
    checkpoints: Path
    device: str
    precision: str  # "bf16" (autocast on hardware with native bf16) or "float32"
    threads: str | None  # how the CPU threads were chosen (``ThreadTuner.describe``); None off the CPU
    timings: dict[str, float]
    wall: float
    rtf: float
    seed_from_song: bool = False  # ``seed`` was drawn from the song's hash (no seed was given)
    tempo: float | None = None  # BPM, from the analysis (None without render.sections)
    sections: list[RenderSection] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)
    level_gain_db: float = 0.0  # how far the audio the Brain heard was turned down (render.level), in dB
    engine: str = "eager"  # what ran the DiT's forward: "eager" (PyTorch) or "onnxruntime" (render.engine)

    def __repr__(self) -> str:  # no tensor dump
        frames = "None" if self.frames is None else f"<{tuple(self.frames.shape)} {self.frames.dtype}>"
        return (f"RenderResult(output={self.output}, frames={frames}, fps={self.fps}, num_frames={self.num_frames}, "
                f"size={self.width}x{self.height}, style={self.style!r}, seed={self.seed}, "
                f"sampler={self.sampler!r}, steps={self.steps}, rtf={self.rtf:.3f})")


@dataclass
class RenderJob:
    """A render whose inputs are checked, ready to run (``plan_render``): no network is needed to make one."""

    song: Path
    out: Path | None  # None: render to memory
    start: float
    seconds: float  # length of the excerpt
    num_frames: int  # video frames it becomes: round(seconds x fps)
    info: AudioInfo  # of the song (its duration possibly cut to what decodes)
    style: list[str]  # the visualizer families, resolved (``auto`` drawn from the seed)
    options: dict[str, Any] = field(default_factory=dict)  # settings sections laid over the pipeline's
    seed: int = 0  # the render seed: render.seed, or drawn from the song's hash (``song_seed``)
    seed_from_song: bool = False

    def audio_reader(self, sample_rate: int, channels: int, settings: Settings) -> AudioReader:
        """An ``AudioReader`` of the excerpt at ``sample_rate`` and ``channels`` (the stream and its rate are
        known: no second probe)."""
        return AudioReader(self.song, sample_rate, channels, start=self.start, duration=self.seconds,
                           stream_index=self.info.stream_index, source_rate=self.info.sample_rate,
                           chunk_seconds=settings.render.chunk_seconds)
