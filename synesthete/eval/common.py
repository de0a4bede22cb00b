"""What the eval modules share: the visualizers' drawing of audio (the oracle), the look a held-out render
starts from, and JSON output."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synesthete.data import feature_extractor
from synesthete.files import atomic_path
from synesthete.media import to_uint8
from synesthete.settings import Settings
from synesthete.visual import render_frames


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


def visualizers(wave: torch.Tensor, params: dict, settings: Settings, frames: int | None = None) -> torch.Tensor:
    """The visualizers of ``params`` (a visual spec) driven by mono audio ``wave`` -> uint8 [T, 3, H, W]
    (T = ``frames`` if given, else what the audio's length makes)."""
    return to_uint8(render_frames(feature_extractor(settings)(wave, frames), wave, params, settings))


def clip_look(clip: dict, settings: Settings) -> dict | None:
    """The look (visual parameters) a held-out clip's render starts from: the clip's own with
    ``eval.clip_look`` (as the FSD floor assumes), else None (the render seed's, as ``render`` draws it)."""
    return clip["meta"]["visual"] if settings.eval.clip_look else None
