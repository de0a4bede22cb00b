"""Shared machinery of the visualizers: coordinate grids, audio drive signals, colours, splatting.

Every visualizer is a pure function ``render(ctx, params) -> [T, 3, H, W]``. The :class:`Context` gives it
a :class:`Canvas` (static per-pixel coordinate grids, built once per call) and a :class:`Drive` (per-frame
``[T]`` / ``[T, n]`` signals derived from the shared audio features). A visualizer computes a handful of
per-frame parameters, broadcasts them against the static grids to ``[T, H, W]`` and colourises: no Python
loop ever runs over frames or pixels.

Beat reactions all come from one place, :meth:`Drive.envelope` (a peak-hold exponential decay of the
onset channel, so a hit shows at once and fades over ``decay`` seconds) and :attr:`Drive.events` (discrete
onset peaks, for effects that restart on a beat). Loudness-driven motion integrates the absolute level, so
in silence (level 0, no onsets) every visualizer stops moving.
"""

from __future__ import annotations

import colorsys
import ctypes
import ctypes.util
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F

from synesthete.audio.features import BASE_FEATURES, cached_extractor, feature_names
from synesthete.settings import Settings

# --- How features become drive signals (fixed: they define what the ground truth reacts to) -----------------
ONSET_FLOOR = 0.12  # onset (spectral flux / 20 dB) below this is steady-state wobble, not a hit
ONSET_FULL = 1.2  # onset at which a hit reaches full strength (snares ~1.6, kicks ~1.0, hats ~0.6)
EVENT_MIN = 0.25  # minimum hit strength of a discrete event (a local peak of the hit curve)
LEVEL_RELEASE = 0.06  # seconds: loudness level is peak-held with this decay, so RMS ripple does not jitter
BAND_FLOOR = 0.15  # band energies (dB mapped 0..1) below this draw nothing; quiet music sits near 0.3-0.8
BAND_RANGE = 0.65  # band energy span mapped onto a full bar
DECAY_CUTOFF = 1e-3  # decaying kernels are truncated where they fall below this
NO_EVENT_AGE = 1e4  # "frames since the last event" before the first event: far in the past
# glibc mallopt parameters (see retain_freed_memory).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's upper limit on 64-bit
TRIM_THRESHOLD = 1 << 30
_MEMORY_TUNED = False


# ----------------------------------------------------------------------------------------------- signal tools
def decay_peak(x: torch.Tensor, decay_frames: float) -> torch.Tensor:
    """Peak-hold exponential decay along the last (frame) axis: ``y[t] = max_k x[t-k] * exp(-k / decay)``.

    A causal filter computed as a windowed max over ``[..., T, K]`` (no loop over frames).
    """
    decay_frames = max(float(decay_frames), 1e-3)
    taps = max(1, math.ceil(decay_frames * math.log(1 / DECAY_CUTOFF)))
    weights = torch.exp(-torch.arange(taps, -1, -1, device=x.device, dtype=x.dtype) / decay_frames)  # [K+1]
    windows = F.pad(x, (taps, 0)).unfold(-1, taps + 1, 1)  # [..., T, K+1], last entry is x[t]
    return (windows * weights).amax(-1)


def hash01(*keys: torch.Tensor | int) -> torch.Tensor:
    """Deterministic pseudo-random floats in [0, 1) from integer keys (a 32-bit integer hash, any device)."""
    mask = 0xFFFFFFFF
    h: torch.Tensor | int = 0x2545F491
    for i, key in enumerate(keys):
        h = (h ^ (key * (0x9E3779B1 + 0x632BE5AB * i))) & mask
        h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & mask
        h = ((h ^ (h >> 12)) * 0x297A2D39) & mask
        h = h ^ (h >> 15)
    if not isinstance(h, torch.Tensor):
        h = torch.tensor(h)
    return (h & 0xFFFFFF).float() / float(1 << 24)


def coverage(signed_distance: torch.Tensor, pixel: float) -> torch.Tensor:
    """Anti-aliased coverage of ``distance < 0`` with a one-pixel soft edge."""
    return torch.mul(signed_distance, -1.0 / pixel).add_(0.5).clamp_(0, 1)


# --------------------------------------------------------------------------------------------------- colours
def hsv(h: float, s: float, v: float) -> list[float]:
    """An RGB list (rounded for JSON) from hue, saturation and value in [0, 1]."""
    return [round(c, 4) for c in colorsys.hsv_to_rgb(h % 1.0, s, v)]


def bright_color(rng: random.Random) -> list[float]:
    """A saturated, bright foreground colour."""
    return hsv(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.8, 1.0))


def dark_color(rng: random.Random) -> list[float]:
    """A dark background colour (value at most 0.18)."""
    return hsv(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.0, 0.18))


def hue_rotation(degrees: float) -> torch.Tensor:
    """3x3 RGB matrix rotating hue by ``degrees`` about the grey axis (Rodrigues' formula)."""
    a = math.radians(degrees)
    cos, sin = math.cos(a), math.sin(a)
    k = 1 / math.sqrt(3)
    cross = torch.tensor([[0, -k, k], [k, 0, -k], [-k, k, 0]])
    outer = torch.full((3, 3), k * k)
    return cos * torch.eye(3) + sin * cross + (1 - cos) * outer


# ---------------------------------------------------------------------------------------------------- canvas
class Canvas:
    """Static pixel-centre coordinates of one frame: x right, y up, y in [-1, 1], x scaled by the aspect.

    Flips (augmentation) negate an axis here, so every visualizer is mirrored for free.
    """

    def __init__(self, height: int, width: int, device: torch.device, flip_x: bool = False, flip_y: bool = False):
        self.height, self.width, self.device = height, width, device
        self.aspect = width / height
        xs = ((torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 - 1) * self.aspect
        ys = 1 - (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * 2
        self.xs = -xs if flip_x else xs  # [W]
        self.ys = -ys if flip_y else ys  # [H]
        self.x = self.xs[None, :]  # [1, W]
        self.y = self.ys[:, None]  # [H, 1]
        self.pixel = 2.0 / height  # one pixel in coordinate units

    @cached_property
    def r(self) -> torch.Tensor:
        """Distance from the centre, [H, W]."""
        return torch.sqrt(self.x**2 + self.y**2)

    @cached_property
    def theta(self) -> torch.Tensor:
        """Angle in (-pi, pi], [H, W]."""
        return torch.atan2(self.y.expand(self.height, self.width), self.x.expand(self.height, self.width))

    def splat(self, px: torch.Tensor, py: torch.Tensor, sigma: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Sum of soft round blobs: points [T, P] (coords, size sigma, weight) -> intensity [T, H, W].

        Each blob is the separable bump ``(1 - dx^2/R^2)^2 (1 - dy^2/R^2)^2`` with R = 2 sigma (close to a
        Gaussian of std sigma, but with compact support and no ``exp``), so the sum over P points is one
        batched matmul ``[T,H,P] @ [T,P,W]``: far cheaper than a convolution and linear in the weights.
        """
        inv = 0.25 / sigma.clamp(min=0.35 * self.pixel) ** 2  # [T, P] 1 / R^2
        gx = _bump((self.xs - px[..., None]).square_().mul_(inv[..., None]))  # [T, P, W]
        gy = _bump((self.ys - py[..., None]).square_().mul_(inv[..., None])).mul_(weight[..., None])  # [T, P, H]
        return torch.bmm(gy.transpose(1, 2), gx)  # [T, H, W]


def _bump(q: torch.Tensor) -> torch.Tensor:
    """(1 - q)^2 for q < 1, else 0, in place (q is a squared normalised distance)."""
    return q.neg_().add_(1).clamp_(min=0).square_()


def retain_freed_memory() -> None:
    """Ask glibc to keep freed memory instead of returning it to the OS (once per process; no-op elsewhere).

    A clip's frames are tens of MB; by default glibc serves such blocks with fresh ``mmap`` pages that the
    kernel must zero on first touch, which made system time a large part of the render time
    (docs/visualizers.md, "Allocator"). Pinning the mmap threshold at its maximum (32 MB) and disabling heap
    trimming lets freed blocks be reused.
    """
    global _MEMORY_TUNED
    if _MEMORY_TUNED:
        return
    _MEMORY_TUNED = True
    if sys.platform != "linux":
        return
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def shape_distance(kind: str, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Distance-like field whose level sets are the shape ``kind`` (circle, square, diamond) of radius 1."""
    if kind == "circle":
        return torch.sqrt(dx**2 + dy**2)
    if kind == "square":
        return torch.maximum(dx.abs(), dy.abs())
    if kind == "diamond":
        return (dx.abs() + dy.abs()) * (1 / math.sqrt(2))
    raise ValueError(f"unknown shape {kind!r}")


SHAPES = ("circle", "square", "diamond")


# ----------------------------------------------------------------------------------------------------- drive
class Drive:
    """Per-frame audio signals derived from the shared features (and raw audio) of one clip."""

    def __init__(self, features: torch.Tensor, audio: torch.Tensor, settings: Settings):
        names = feature_names(settings.audio)
        if features.ndim != 2 or features.shape[1] != len(names):
            raise ValueError(
                f"features must be [T, {len(names)}] for these audio settings, got {tuple(features.shape)}"
            )
        self.settings = settings
        self.features = features.float()  # [T, F]
        self.audio = audio.to(features.device).float().reshape(-1)  # [N]
        self.fps = float(settings.video.fps)
        self.frames = features.shape[0]
        channel = {name: i for i, name in enumerate(names)}
        self.rms = self.features[:, channel["rms"]]  # [T] absolute RMS (x4)
        self.loudness = self.features[:, channel["loudness"]]  # [T] dB mapped 0..1
        self.onset = self.features[:, channel["onset"]]  # [T] spectral flux 0..2
        self.centroid = self.features[:, channel["centroid"]]  # [T] 0..1
        self.native_bands = self.features[:, len(BASE_FEATURES):]  # [T, n_bands]
        # Loudness level in [0, 1]: peak-held briefly so the RMS ripple of a steady tone does not jitter.
        self.level = decay_peak(self.rms.clamp(0, 1), LEVEL_RELEASE * self.fps)  # [T]
        # Hit strength in [0, 1]: the onset channel above its steady-state floor.
        self.hit = ((self.onset - ONSET_FLOOR) / (ONSET_FULL - ONSET_FLOOR)).clamp(0, 1)  # [T]
        prev = F.pad(self.hit, (1, 0))[:-1]
        nxt = F.pad(self.hit, (0, 1))[1:]
        self.events = (self.hit >= EVENT_MIN) & (self.hit > prev) & (self.hit >= nxt)  # [T] bool
        self.event_index = torch.cumsum(self.events.long(), 0)  # [T] events so far (0 before the first)
        frame = torch.arange(self.frames, device=features.device)
        self.event_frames = frame[self.events]  # [E]
        self._cache: dict[Any, torch.Tensor] = {}

    def envelope(self, decay_seconds: float) -> torch.Tensor:
        """Beat envelope [T]: jumps to the hit strength at an onset, decays over ``decay_seconds``."""
        key = ("env", round(decay_seconds, 6))
        if key not in self._cache:
            self._cache[key] = decay_peak(self.hit, decay_seconds * self.fps)
        return self._cache[key]

    def band_levels(self, n: int) -> torch.Tensor:
        """Band energies [T, n] mapped to bar heights in [0, 1] (computed by the shared feature module)."""
        key = ("bands", n)
        if key not in self._cache:
            if n == self.native_bands.shape[1]:
                bands = self.native_bands
            else:
                bands = _band_energies(self.audio, self.settings, n, self.frames)
            self._cache[key] = ((bands - BAND_FLOOR) / BAND_RANGE).clamp(0, 1)
        return self._cache[key]

    def signal(self, name: str) -> torch.Tensor:
        """A named level signal [T] in [0, 1]: ``level`` (loudness) or ``band_k`` (native band k)."""
        if name == "level":
            return self.level
        if name.startswith("band_"):
            k = min(int(name[5:]), self.native_bands.shape[1] - 1)
            return self.band_levels(self.native_bands.shape[1])[:, k]
        raise ValueError(f"unknown drive signal {name!r}")

    def integrate(self, rate: torch.Tensor) -> torch.Tensor:
        """Running integral (cumulative sum / fps) of a per-frame rate [T, ...] (rate per second)."""
        return torch.cumsum(rate, 0) / self.fps

    def since_event(self, back: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For every frame, the ``back``-th most recent event: (event number >= 1, age in frames, valid)."""
        number = self.event_index - back  # [T]
        valid = number >= 1
        if self.event_frames.numel() == 0:
            zeros = torch.zeros_like(number)
            return zeros, torch.full_like(number, int(NO_EVENT_AGE)), valid
        at = self.event_frames[(number - 1).clamp(0, self.event_frames.numel() - 1)]  # [T]
        age = torch.where(valid, torch.arange(self.frames, device=number.device) - at, int(NO_EVENT_AGE))
        return number.clamp(min=0), age, valid

    def frame_audio(self, length: int) -> torch.Tensor:
        """Raw audio of each frame [T, length], starting at the frame's start time (zero-padded)."""
        sr = self.settings.audio.sample_rate
        starts = torch.floor(torch.arange(self.frames, device=self.audio.device) * (sr / self.fps)).long()
        index = starts[:, None] + torch.arange(length, device=self.audio.device)  # [T, L]
        padded = F.pad(self.audio, (0, max(0, int(index.max()) + 1 - self.audio.numel())))
        return padded[index]


def _band_energies(audio: torch.Tensor, settings: Settings, n: int, frames: int) -> torch.Tensor:
    """Band energies [T, n] (dB mapped 0..1) from the shared FeatureExtractor with ``n_bands = n``."""
    audio_settings = settings.audio.model_copy(update={"n_bands": n})
    feats = cached_extractor(audio_settings, settings.video.fps, audio.device)(audio, frames)  # [T, 4 + n]
    return feats[:, len(BASE_FEATURES):]


# --------------------------------------------------------------------------------------------------- context
@dataclass
class Context:
    """Everything a visualizer needs: the canvas, the drive signals and the colour augmentation."""

    canvas: Canvas
    drive: Drive
    color_matrix: torch.Tensor = field(default_factory=lambda: torch.eye(3))  # [3, 3] hue rotation x gains

    @property
    def frames(self) -> int:
        """Number of frames T."""
        return self.drive.frames

    @property
    def device(self) -> torch.device:
        """Device of the frames."""
        return self.canvas.device

    def color(self, rgb: list[float]) -> torch.Tensor:
        """A parameter colour [3] on the device, with the clip's colour augmentation applied."""
        c = torch.tensor(rgb, dtype=torch.float32)
        return (self.color_matrix @ c).clamp(0, 1).to(self.device)

    def flash(self, rgb: list[float], amount: torch.Tensor) -> torch.Tensor:
        """Per-frame colour [T, 3]: ``rgb`` pushed towards white by ``amount`` [T] (0..1)."""
        c = self.color(rgb)
        return c + (1 - c) * amount.clamp(0, 1)[:, None]


def paint(base: torch.Tensor, mask: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    """Paint ``color`` over ``base`` with coverage ``mask`` (in place when ``base`` is a frame tensor).

    base: [3] or [T, 3] (a flat colour) or [T, 3, H, W]; mask: [T, H, W]; color: [3] or [T, 3].
    Returns [T, 3, H, W].
    """
    color = color.reshape(-1, 3)[:, :, None, None]  # [T|1, 3, 1, 1]
    if base.ndim <= 2:
        base = base.reshape(-1, 3)[:, :, None, None]
        # (written as mul + add_: a broadcasting addcmul with a new output is much slower on CPU; docs/visualizers.md)
        return (mask[:, None] * (color - base)).add_(base)
    return base.lerp_(color, mask[:, None])


@dataclass(frozen=True)
class Visualizer:
    """A registered visualizer: a parameter sampler and a vectorised renderer."""

    name: str
    description: str
    sample: Callable[[random.Random, Settings], dict]
    render: Callable[[Context, dict], torch.Tensor]  # -> [T, 3, H, W]
