"""The networks: the spatial VAE (the Eye), the audio encoder and the Diffusion Transformer (the Brain)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from synesthete.models.audio_encoder import AudioEncoder, AudioEncoderConfig
from synesthete.models.dit import DiT, DiTConfig, dit_flops_per_sample
from synesthete.models.vae import VAE, VAEConfig, vae_flops_per_sample, vae_loss
from synesthete.settings import Settings


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _cpu_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of the CPU flash-attention kernel, which FlopCounterMode does not know (same formula as CUDA's)."""
    return sdpa_flop_count(query, key, value)  # the counter passes shapes, not tensors


def count_flops(model: nn.Module, *inputs: object) -> int:
    """Forward FLOPs of ``model(*inputs)`` (2 x multiply-accumulates of matmuls, convolutions, attention)."""
    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=custom) as counter:
            model(*inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def model_summary(settings: Settings) -> dict[str, float]:
    """Parameter counts and forward GFLOPs per sample (one frame for the VAE, one window for the DiT)."""
    return {
        "vae_params": count_params(VAE.from_settings(settings)),
        "vae_gflops_per_frame": vae_flops_per_sample(settings) / 1e9,
        "dit_params": count_params(DiT.from_settings(settings)),
        "audio_encoder_params": count_params(AudioEncoder(DiTConfig.from_settings(settings).audio)),
        "dit_gflops_per_window": dit_flops_per_sample(settings) / 1e9,
    }


__all__ = [
    "VAE", "VAEConfig", "AudioEncoder", "AudioEncoderConfig", "DiT", "DiTConfig",
    "count_flops", "count_params", "dit_flops_per_sample", "model_summary",
    "vae_flops_per_sample", "vae_loss",
]
