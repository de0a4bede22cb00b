"""The networks: the spatial VAE (the Eye), the audio encoder and the Diffusion Transformer (the Brain)."""

from __future__ import annotations

from synesthete.models.audio_encoder import AudioEncoder, AudioEncoderConfig
from synesthete.models.dit import DiT, DiTConfig
from synesthete.models.size import count_flops, count_params, dit_flops_per_sample, model_summary, vae_flops_per_sample
from synesthete.models.vae import VAE, VAEConfig, vae_loss

__all__ = [
    "VAE", "VAEConfig", "AudioEncoder", "AudioEncoderConfig", "DiT", "DiTConfig",
    "count_flops", "count_params", "dit_flops_per_sample", "model_summary",
    "vae_flops_per_sample", "vae_loss",
]
