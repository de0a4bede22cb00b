"""The spatial VAE ("the Eye"): RGB frames [B, 3, H, W] in [0, 1] <-> latents [B, C, H/16, W/16].

Fully convolutional, four stride-2 stages (128 -> 64 -> 32 -> 16 -> 8). Channels start at
``vae.base_channels`` and double per stage up to ``vae.max_channels``. It is kept cheap for a 2-core CPU:
the first convolution already downsamples, every stage has one residual block at its *reduced*
resolution, and the decoder upsamples with 4x4 transposed convolutions, so no 3x3 convolution ever runs
at full resolution. See docs/model_architecture.md for the measured figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from synesthete.models.config import ConfigBoundsError, ModelConfig, settings_dict
from synesthete.settings import Settings

NUM_STAGES = 4  # four stride-2 stages: H -> H / 16
LOGVAR_RANGE = (-30.0, 20.0)  # clamp of the predicted log-variance, for numerical safety


def norm_groups(channels: int, min_group_size: int = 4, max_groups: int = 32) -> int:
    """Largest GroupNorm group count dividing ``channels`` with at least ``min_group_size`` channels per group."""
    for groups in range(min(max_groups, channels // min_group_size), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


@dataclass(frozen=True)
class VAEConfig(ModelConfig):
    """What builds a VAE: the frame size it encodes and its widths."""

    height: int
    width: int
    latent_channels: int
    base_channels: int
    max_channels: int

    BOUNDS: ClassVar[dict[str, Any]] = {
        "height": (int, 16, 8192), "width": (int, 16, 8192), "latent_channels": (int, 1, 256),
        "base_channels": (int, 1, 1024), "max_channels": (int, 1, 4096),
    }

    def check(self) -> None:
        """Each field (``BOUNDS``), then the frame size the four stride-2 stages need."""
        super().check()
        for name in ("height", "width"):
            if getattr(self, name) % 2**NUM_STAGES:
                raise ConfigBoundsError(f"VAEConfig.{name}={getattr(self, name)} must be a multiple of "
                                        f"{2**NUM_STAGES}")

    @classmethod
    def from_settings(cls, settings: Settings | dict[str, Any]) -> VAEConfig:
        """The config of a new VAE for ``settings`` (or a stored settings dict)."""
        s = settings_dict(settings)
        video, vae = s["video"], s["vae"]
        return cls(
            height=video["height"], width=video["width"], latent_channels=vae["latent_channels"],
            base_channels=vae["base_channels"], max_channels=vae["max_channels"],
        )

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one frame's latent."""
        return self.latent_channels, self.height // 2**NUM_STAGES, self.width // 2**NUM_STAGES


def stage_channels(cfg: VAEConfig) -> list[int]:
    """Channels of the four encoder stages (the decoder mirrors them)."""
    return [min(cfg.base_channels * 2**i, cfg.max_channels) for i in range(NUM_STAGES)]


class ResBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, SiLU, 3x3 conv) twice, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_groups(channels), channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(norm_groups(channels), channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, C, H, W]."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class Encoder(nn.Module):
    """Frames [B, 3, H, W] -> (mean, logvar), each [B, C, H/16, W/16]."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        chans = stage_channels(cfg)
        stages: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate(chans):
            # The stride-2 conv changes the width; a residual block then works at the reduced size, except
            # after the first stage (H/2), where it would cost more than the rest of the encoder together.
            stages.append(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1))
            if i > 0:
                stages.append(ResBlock(c_out))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.norm_out = nn.GroupNorm(norm_groups(c_in), c_in)
        self.conv_out = nn.Conv2d(c_in, 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 3, H, W] in [0, 1] -> mean, logvar [B, C, h, w]."""
        h = self.stages(x * 2 - 1)  # centre the pixels
        mean, logvar = self.conv_out(F.silu(self.norm_out(h))).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)


class Decoder(nn.Module):
    """Latents [B, C, h, w] -> frames [B, 3, 16h, 16w] in [0, 1]."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        chans = stage_channels(cfg)[::-1]  # deepest first
        self.conv_in = nn.Conv2d(cfg.latent_channels, chans[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, c in enumerate(chans):
            c_next = chans[i + 1] if i + 1 < len(chans) else None
            if c_next is not None:
                layers.append(ResBlock(c))
                layers.append(nn.ConvTranspose2d(c, c_next, 4, stride=2, padding=1))
        self.stages = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(norm_groups(chans[-1]), chans[-1])
        # The last upsampling goes straight to RGB: no convolution at full resolution.
        self.conv_out = nn.ConvTranspose2d(chans[-1], 3, 4, stride=2, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] -> [B, 3, 16h, 16w] in [0, 1]."""
        h = self.stages(self.conv_in(z))
        raw = (self.conv_out(F.silu(self.norm_out(h))) + 1) / 2
        # Clamp with a straight-through gradient: outputs stay in [0, 1] without sigmoid saturation,
        # so pure black and white backgrounds are reachable and still get a useful gradient.
        return raw + (raw.clamp(0, 1) - raw).detach()


class VAE(nn.Module):
    """The Eye: a fully convolutional VAE with a [C, H/16, W/16] Gaussian latent."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.config = cfg
        self.latent_channels = cfg.latent_channels
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @classmethod
    def from_settings(cls, settings: Settings) -> VAE:
        """A new (untrained) VAE for ``settings``."""
        return cls(VAEConfig.from_settings(settings))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames [B, 3, H, W] in [0, 1] -> (mean, logvar), each [B, C, H/16, W/16]."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, h, w] -> frames [B, 3, 16h, 16w] in [0, 1]."""
        return self.decoder(z)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, sample the posterior (reparameterised), decode: (recon, mean, logvar)."""
        mean, logvar = self.encode(x)  # [B, C, h, w]
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + torch.exp(0.5 * logvar) * noise
        return self.decode(z), mean, logvar


def vae_loss(
    recon: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, kl_weight: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-pixel MSE (mean) + kl_weight * KL to N(0, 1) (mean per latent element)."""
    mse = F.mse_loss(recon.float(), x.float())
    kl = 0.5 * (mean.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).mean()
    return mse + kl_weight * kl, {"mse": mse.detach(), "kl": kl.detach()}
