"""The size of the networks: parameter counts and forward FLOPs (the trainers' summaries, the benchmarks)."""

from __future__ import annotations

import torch
from torch import nn

from synesthete.models.audio_encoder import AudioEncoder
from synesthete.models.dit import DiT, DiTConfig, dummy_inputs
from synesthete.models.vae import VAE
from synesthete.settings import Settings


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _cpu_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of the CPU flash-attention kernel, which FlopCounterMode does not know (same formula as CUDA's)."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)  # the counter passes shapes, not tensors


def count_flops(model: nn.Module, *inputs: object) -> int:
    """Forward FLOPs of ``model(*inputs)`` (2 x multiply-accumulates of matmuls, convolutions, attention).
    torch's FLOP counter is imported here, not with the module: it imports triton (0.2 s), which a render never
    needs."""
    from torch.utils.flop_counter import FlopCounterMode

    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=custom) as counter:
            model(*inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def vae_flops_per_sample(settings: Settings, kind: str = "forward") -> int:
    """Model FLOPs of one frame through encode + decode ("forward"), or x3 for "train" (forward + backward)."""
    model = VAE.from_settings(settings)
    x = torch.rand(1, 3, settings.video.height, settings.video.width)
    flops = count_flops(model, x)
    return flops * 3 if kind == "train" else flops


def dit_flops_per_sample(settings: Settings, kind: str = "forward") -> int:
    """Model FLOPs of one window (sample) through the DiT ("forward"), or x3 for "train" (forward + backward)."""
    flops = count_flops(DiT.from_settings(settings), *dummy_inputs(settings))
    return flops * 3 if kind == "train" else flops


def model_summary(settings: Settings) -> dict[str, float]:
    """Parameter counts and forward GFLOPs per sample (one frame for the VAE, one window for the DiT)."""
    return {
        "vae_params": count_params(VAE.from_settings(settings)),
        "vae_gflops_per_frame": vae_flops_per_sample(settings) / 1e9,
        "dit_params": count_params(DiT.from_settings(settings)),
        "audio_encoder_params": count_params(AudioEncoder(DiTConfig.from_settings(settings).audio)),
        "dit_gflops_per_window": dit_flops_per_sample(settings) / 1e9,
    }
