"""The style critic: a small CNN that names the visualizer families drawn in a frame.

It is the feature network of the picture metrics (``metrics/picture.py``), as Inception is FID's: trained
on this world's frames, its penultimate features measure distance to *this* world. The output is
multi-label, one sigmoid per family (``styles.families()``): a composed frame carries several families,
and a frame with no recognisable family (a soft colour field) should score low on all of them.

Frames [B, 3, H, W] in [0, 1] are resized to ``critic.size`` and pass four stride-2 stages (conv, GroupNorm,
SiLU, twice each), global average pooling, and a linear head. The network is built from its small
``CriticConfig``, which its checkpoint carries, so any command can load any critic. A trained one travels
as a ``Critic`` (``checkpoint.load_critic``): the network and the cut threshold its training measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from synesthete.media import to_unit
from synesthete.models.config import ModelConfig, settings_dict
from synesthete.settings import Settings
from synesthete.styles import families

STAGES = 4
GROUPS = 8


def _block(cin: int, cout: int) -> nn.Sequential:
    """Stride-2 conv then a stride-1 conv, each with GroupNorm and SiLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(min(GROUPS, cout), cout), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(min(GROUPS, cout), cout), nn.SiLU(),
    )


@dataclass(frozen=True)
class CriticConfig(ModelConfig):
    """What builds a style critic: input size, first-stage width, feature width, families it names."""

    size: int
    width: int
    feature_dim: int
    num_families: int

    BOUNDS: ClassVar[dict[str, Any]] = {
        "size": (int, 8, 1024), "width": (int, 1, 1024), "feature_dim": (int, 1, 4096), "num_families": (int, 1, 1024),
    }

    @classmethod
    def from_settings(cls, settings: Settings | dict[str, Any]) -> CriticConfig:
        """The config of a new critic for ``settings`` (or a stored settings dict)."""
        c = settings_dict(settings)["critic"]
        return cls(size=c["size"], width=c["width"], feature_dim=c["feature_dim"], num_families=len(families()))


class StyleCritic(nn.Module):
    """Frames [B, 3, H, W] in [0, 1] -> (family logits [B, S], penultimate features [B, D])."""

    def __init__(self, cfg: CriticConfig) -> None:
        super().__init__()
        self.config = cfg
        self.size = cfg.size
        self.num_families = cfg.num_families
        widths = [min(cfg.width * 2**i, 4 * cfg.width) for i in range(STAGES)]
        layers, cin = [], 3
        for w in widths:
            layers.append(_block(cin, w))
            cin = w
        self.body = nn.Sequential(*layers)
        self.features = nn.Sequential(nn.Linear(cin, cfg.feature_dim), nn.SiLU())
        self.head = nn.Linear(cfg.feature_dim, self.num_families)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 3, H, W] -> logits [B, S], features [B, D]."""
        x = frames.float()
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="area")
        x = self.body(x * 2 - 1).mean((2, 3))  # [B, C]
        feats = self.features(x)
        return self.head(feats), feats


@torch.no_grad()
def critic_outputs(critic: nn.Module, frames: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Family probabilities [T, S] and features [T, D] of frames [T, 3, H, W] (uint8 or float in [0, 1])."""
    device = next(critic.parameters()).device
    probs, feats = [], []
    for part in frames.split(chunk):
        logits, f = critic(to_unit(part, device))
        probs.append(torch.sigmoid(logits.float()).cpu())
        feats.append(f.float().cpu())
    if not probs:
        return torch.zeros(0, len(families())), torch.zeros(0, 0)
    return torch.cat(probs), torch.cat(feats)


@dataclass(frozen=True)
class Critic:
    """A trained style critic, as the picture metrics use it (``checkpoint.load_critic``)."""

    network: StyleCritic  # frozen, float32, in eval mode
    cut_threshold: float  # feature distance between consecutive frames that is a cut (``metrics.picture.cut_rate``)

    def outputs(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Family probabilities [T, S] and features [T, D] of frames [T, 3, H, W] (``critic_outputs``)."""
        return critic_outputs(self.network, frames)
