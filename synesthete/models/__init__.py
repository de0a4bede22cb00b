"""The networks: the spatial VAE (the Eye), the audio encoder and the Diffusion Transformer (the Brain)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, *inputs: object) -> int:
    """Forward FLOPs of ``model(*inputs)`` (2 x multiply-accumulates of matmuls, convolutions, attention)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


from synesthete.models.vae import VAE, vae_flops_per_sample, vae_loss  # noqa: E402

__all__ = ["VAE", "count_flops", "count_params", "vae_flops_per_sample", "vae_loss"]
