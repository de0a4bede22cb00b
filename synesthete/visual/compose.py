"""Clip-level visual parameters: which visualizer(s), their composition and the augmentation.

``sample_params`` draws one visualizer (or, with probability ``data.compose_prob``, a stack of 2-3
different ones blended additively, by screen or by alpha) with all its randomised parameters, plus light
augmentation (flips, hue rotation, colour gains). ``render_frames`` turns features + audio + those
parameters into frames. Both are pure functions: the params dict is JSON-serialisable and fully
determines the video.
"""

from __future__ import annotations

import random

import torch

from synesthete.errors import InputError
from synesthete.settings import Settings
from synesthete.visual.classic import CLASSIC
from synesthete.visual.core import Canvas, Context, Drive, Visualizer, hue_rotation, retain_freed_memory
from synesthete.visual.motion import MOTION
from synesthete.visual.patterns import PATTERNS

VISUALIZERS: dict[str, Visualizer] = {**CLASSIC, **MOTION, **PATTERNS}
BLENDS = ("add", "screen", "alpha")
PARAMS_VERSION = 1
# Light augmentation: probabilities and ranges (recorded in the params, so a clip can be re-rendered).
FLIP_X_PROB = 0.5
FLIP_Y_PROB = 0.25
HUE_DEGREES = 30.0  # hue rotation drawn from [-HUE_DEGREES, HUE_DEGREES]
GAIN_JITTER = 0.08  # per-channel colour gains drawn from [1 - j, 1 + j]
ALPHA_OPACITY = (0.6, 0.9)  # opacity of an alpha-blended layer
ALPHA_COVER = 2.0  # an alpha layer covers fully where its brightest channel exceeds 1 / ALPHA_COVER


def available(settings: Settings) -> list[str]:
    """The visualizer names to draw from (``data.visualizers``, or all registered ones); a name may repeat."""
    names = list(settings.data.visualizers) or list(VISUALIZERS)
    unknown = [n for n in names if n not in VISUALIZERS]
    if unknown:
        raise InputError(f"unknown visualizer(s) {', '.join(unknown)}; choose from {', '.join(VISUALIZERS)}")
    return names


def sample_params(rng: random.Random, settings: Settings) -> dict:
    """Draw a clip's visual parameters (JSON-serialisable) from ``rng``."""
    names = available(settings)
    count = 1
    if rng.random() < settings.data.compose_prob:
        count = rng.choice([2, 3])
    if len(set(names)) < len(names):  # a name listed n times is drawn n times as often
        chosen = _weighted_distinct(names, count, rng)
    else:
        chosen = rng.sample(names, count) if count <= len(names) else [rng.choice(names) for _ in range(count)]
    return params_for(chosen, rng, settings)


def _weighted_distinct(names: list[str], count: int, rng: random.Random) -> list[str]:
    """``count`` different names (fewer if there are fewer), each draw weighted by how often a name is listed."""
    chosen: list[str] = []
    pool = list(names)
    while pool and len(chosen) < count:
        name = rng.choice(pool)
        chosen.append(name)
        pool = [n for n in pool if n != name]
    return chosen


def params_for(chosen: list[str], rng: random.Random, settings: Settings) -> dict:
    """Visual parameters (JSON-serialisable) for the visualizers ``chosen``, everything else drawn from ``rng``."""
    count = len(chosen)
    layers = [{"name": name, "params": VISUALIZERS[name].sample(rng, settings)} for name in chosen]
    augment = {"flip_x": False, "flip_y": False, "hue": 0.0, "gains": [1.0, 1.0, 1.0]}
    if settings.data.augment:
        augment = {
            "flip_x": rng.random() < FLIP_X_PROB,
            "flip_y": rng.random() < FLIP_Y_PROB,
            "hue": round(rng.uniform(-HUE_DEGREES, HUE_DEGREES), 2),
            "gains": [round(rng.uniform(1 - GAIN_JITTER, 1 + GAIN_JITTER), 3) for _ in range(3)],
        }
    return {
        "version": PARAMS_VERSION,
        "visualizer": "+".join(chosen),
        "layers": layers,
        "blend": rng.choice(BLENDS) if count > 1 else "none",
        "opacity": round(rng.uniform(*ALPHA_OPACITY), 3),
        "augment": augment,
    }


def blend(base: torch.Tensor, top: torch.Tensor, mode: str, opacity: float) -> torch.Tensor:
    """Blend layer ``top`` over ``base`` (both [T, 3, H, W] in [0, 1])."""
    if mode == "add":
        return base.add_(top).clamp_(0, 1)
    if mode == "screen":  # 1 - (1 - a)(1 - b) = a + b - ab
        product = base * top
        return base.add_(top).sub_(product)
    if mode == "alpha":  # the top layer covers where it is bright; its dark background stays see-through
        cover = top.amax(1, keepdim=True).mul_(ALPHA_COVER * opacity).clamp_(max=opacity)  # [T, 1, H, W]
        return base.lerp_(top, cover)
    raise InputError(f"unknown blend mode {mode!r}; choose from {', '.join(BLENDS)}")


@torch.no_grad()
def render_frames(features: torch.Tensor, audio: torch.Tensor, params: dict, settings: Settings) -> torch.Tensor:
    """Render a clip: features [T, F] + audio [N] + params -> frames [T, 3, H, W] float in [0, 1]."""
    retain_freed_memory()
    if features.shape[0] == 0:
        return features.new_zeros(0, 3, settings.video.height, settings.video.width)
    augment = params.get("augment", {})
    canvas = Canvas(settings.video.height, settings.video.width, features.device,
                    flip_x=bool(augment.get("flip_x", False)), flip_y=bool(augment.get("flip_y", False)))
    gains = torch.tensor(augment.get("gains", [1.0, 1.0, 1.0]), dtype=torch.float32)
    matrix = torch.diag(gains) @ hue_rotation(float(augment.get("hue", 0.0)))
    ctx = Context(canvas, Drive(features, audio, settings), matrix)
    out = None
    for layer in params["layers"]:
        name = layer["name"]
        if name not in VISUALIZERS:
            raise InputError(f"unknown visualizer {name!r} in params; choose from {', '.join(VISUALIZERS)}")
        frames = VISUALIZERS[name].render(ctx, layer["params"])  # [T, 3, H, W]
        out = frames if out is None else blend(out, frames, params.get("blend", "screen"), params.get("opacity", 1.0))
    return out.clamp_(0, 1)
