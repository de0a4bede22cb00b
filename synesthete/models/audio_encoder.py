"""Frame-aligned audio encoder: feature timeline [B, W + 2*ctx, F] -> per-frame conditioning.

Each video frame gets:
- one vector [D] that mixes the frame's +-ctx neighbourhood (a valid 1-D convolution whose kernel spans
  exactly 2*ctx + 1 frames, so every offset has its own weights and "an onset here" differs from "an
  onset two frames ago"); it drives the DiT's per-frame adaLN modulation;
- K = 2*ctx + 2 tokens [K, D] for cross-attention: that contextual vector plus the per-frame embedding of
  every frame in the neighbourhood, tagged with a learned relative-offset embedding.

Nothing is normalised per clip or per frame: the features carry absolute loudness (silence is the zero
vector) and the encoder keeps that distinction intact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from synesthete.models.config import ModelConfig


class ResidualMLP(nn.Module):
    """x + Linear(SiLU(Linear(x))), applied on the last dimension."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [..., D]."""
        return x + self.fc2(F.silu(self.fc1(x)))


@dataclass(frozen=True)
class AudioEncoderConfig(ModelConfig):
    """What builds an audio encoder: feature width F, context frames on each side, output width D."""

    num_features: int
    context: int
    dim: int

    BOUNDS: ClassVar[dict[str, Any]] = {"num_features": (int, 1, 1024), "context": (int, 0, 256), "dim": (int, 1, 4096)}


class AudioEncoder(nn.Module):
    """Features [B, W + 2*ctx, F] -> (pooled [B, W, D], tokens [B, W, K, D]) with K = 2*ctx + 2."""

    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.context = cfg.context
        self.num_features = cfg.num_features
        dim = cfg.dim
        self.dim = dim
        span = 2 * self.context + 1
        self.num_tokens = span + 1
        # Per-frame embedding of the raw features (no normalisation: absolute loudness survives).
        self.frame_in = nn.Linear(self.num_features, dim)
        self.frame_mlp = ResidualMLP(dim, 2 * dim)
        # Context mixing: one valid conv over exactly the 2*ctx + 1 frames around each video frame.
        self.context_conv = nn.Conv1d(dim, dim, span)
        self.context_mlp = ResidualMLP(dim, 2 * dim)
        # Relative offset (-ctx .. +ctx) of each context token; the last row tags the contextual token.
        self.offset_embed = nn.Parameter(torch.randn(self.num_tokens, dim) * 0.02)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, W + 2*ctx, F] -> pooled [B, W, D], tokens [B, W, K, D]."""
        if features.ndim != 3 or features.shape[-1] != self.num_features:
            raise ValueError(f"features must be [B, T, {self.num_features}], got {tuple(features.shape)}")
        window = features.shape[1] - 2 * self.context
        if window < 1:
            raise ValueError(f"features have {features.shape[1]} frames, fewer than 2*audio_context + 1")
        local = self.frame_mlp(self.frame_in(features))  # [B, W + 2ctx, D]
        pooled = self.context_conv(local.transpose(1, 2)).transpose(1, 2)  # [B, W, D]
        pooled = self.context_mlp(pooled)
        neighbours = local.unfold(1, 2 * self.context + 1, 1).permute(0, 1, 3, 2)  # [B, W, 2ctx+1, D]
        tokens = torch.cat([neighbours, pooled.unsqueeze(2)], dim=2) + self.offset_embed  # [B, W, K, D]
        return pooled, tokens
