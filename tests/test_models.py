"""The networks: VAE, audio encoder and DiT shapes, initialisation, conditioning and FLOP counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from synesthete.audio.features import num_features
from synesthete.metrics.quality import psnr
from synesthete.models import DiT, DiTConfig, count_flops, count_params, dit_flops_per_sample, vae_flops_per_sample
from synesthete.models.audio_encoder import AudioEncoder
from synesthete.models.dit import dummy_inputs
from synesthete.models.vae import VAE, norm_groups, vae_loss
from synesthete.settings import load_settings


def disc_frames(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """Frames [B, 3, size, size] in [0, 1]: a coloured disc of random position and radius on black."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    centre = torch.rand(batch, 2, generator=gen) * 0.6 + 0.2
    radius = torch.rand(batch, generator=gen) * 0.2 + 0.1
    colour = torch.rand(batch, 3, generator=gen)
    dist = ((yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2).sqrt()
    mask = (dist < radius[:, None, None]).float()  # [B, H, W]
    return mask[:, None] * colour[:, :, None, None]


def randomise_zero_init(model: nn.Module, seed: int = 0) -> None:
    """Give the zero-initialised adaLN and final layers random weights (as if trained for a while)."""
    gen = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if "adaLN_modulation" in name or name.startswith("final."):
            with torch.no_grad():
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)


@pytest.mark.parametrize("preset", ["tiny", "cpu"])
def test_vae_shapes_and_range(preset):
    s = load_settings(preset)
    vae = VAE.from_settings(s)
    x = torch.rand(2, 3, s.video.height, s.video.width)
    mean, logvar = vae.encode(x)
    assert mean.shape == logvar.shape == (2, s.vae.latent_channels, s.latent_size, s.latent_size)
    recon, mean2, _ = vae(x)
    assert recon.shape == x.shape
    assert torch.equal(mean, mean2)
    decoded = vae.decode(torch.randn_like(mean) * 5)  # far outside the prior: still a valid image
    assert decoded.shape == x.shape and decoded.min() >= 0 and decoded.max() <= 1


def test_group_norm_counts_valid_for_small_widths():
    for channels in (3, 4, 8, 12, 16, 24, 32, 48, 128, 256):
        groups = norm_groups(channels)
        assert channels % groups == 0 and 1 <= groups <= 32


@pytest.mark.slow
def test_vae_overfits_one_batch():
    torch.manual_seed(0)
    s = load_settings("tiny")
    vae = VAE.from_settings(s)
    x = disc_frames(8, s.video.width)
    opt = torch.optim.AdamW(vae.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        recon, mean, logvar = vae(x)
        loss, parts = vae_loss(recon, x, mean, logvar, s.vae.kl_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(parts["mse"]))
    assert losses[-1] < 0.5 * losses[0], losses
    with torch.no_grad():
        mean, _ = vae.encode(x)
        assert float(psnr(vae.decode(mean), x)) > 10 * torch.log10(torch.tensor(1 / losses[0])).item()


def test_vae_loss_terms():
    x = torch.rand(2, 3, 32, 32)
    mean, logvar = torch.zeros(2, 4, 2, 2), torch.zeros(2, 4, 2, 2)
    loss, parts = vae_loss(x, x, mean, logvar, kl_weight=0.5)
    assert float(parts["mse"]) == 0 and float(parts["kl"]) == 0 and float(loss) == 0  # prior-matching posterior
    loss, parts = vae_loss(x * 0, x, mean + 1, logvar, kl_weight=0.5)
    assert float(parts["kl"]) == pytest.approx(0.5)  # 0.5 * mu^2 per element
    assert float(loss) == pytest.approx(float(x.pow(2).mean()) + 0.25, rel=1e-5)


def test_audio_encoder_is_frame_local():
    s = load_settings("tiny").updated(dit={"window": 8, "audio_context": 2})
    ctx, window = s.dit.audio_context, s.dit.window
    enc = AudioEncoder(DiTConfig.from_settings(s).audio)
    feats = torch.rand(1, window + 2 * ctx, num_features(s.audio))
    pooled, tokens = enc(feats)
    assert pooled.shape == (1, window, s.dit.audio_dim)
    assert tokens.shape == (1, window, 2 * ctx + 2, s.dit.audio_dim)
    # Change the features of window frame 0 (feature index ctx): only frames within +-ctx of it may move.
    changed = feats.clone()
    changed[0, ctx] += 1.0
    pooled2, tokens2 = enc(changed)
    moved = (pooled2 - pooled).abs().amax(-1)[0] > 0
    assert moved[0]
    assert moved.tolist() == [i <= ctx for i in range(window)]
    assert not torch.equal(tokens2[0, 0], tokens[0, 0])


def test_audio_encoder_keeps_absolute_loudness():
    s = load_settings("tiny")
    enc = AudioEncoder(DiTConfig.from_settings(s).audio)
    t = s.dit.window + 2 * s.dit.audio_context
    quiet = torch.full((1, t, num_features(s.audio)), 0.1)
    loud = quiet * 4  # same shape of features, only louder
    assert not torch.allclose(enc(quiet)[0], enc(loud)[0])


@pytest.mark.parametrize("preset", ["tiny", "cpu"])
def test_dit_shapes_and_zero_init(preset):
    s = load_settings(preset)
    torch.manual_seed(0)
    dit = DiT.from_settings(s)
    x, t, feats, drop = dummy_inputs(s, batch=2)
    out = dit(x, t, feats, drop)
    assert out.shape == x.shape == (2, s.dit.window, s.vae.latent_channels, s.latent_size, s.latent_size)
    assert torch.count_nonzero(out) == 0  # zero-initialised final layer
    for block in dit.blocks:
        assert torch.count_nonzero(block.adaLN_modulation[-1].weight) == 0  # gates start closed
        assert torch.count_nonzero(block.adaLN_modulation[-1].bias) == 0


def test_dit_blocks_start_as_identity():
    s = load_settings("tiny")
    dit = DiT.from_settings(s)
    x, t, feats, drop = dummy_inputs(s, batch=2)
    tokens = torch.randn(2, s.dit.window, 1, s.dit.dim)
    cond = torch.randn(2, s.dit.window, s.dit.dim)
    audio = dit.embed_audio(feats, drop)
    for block in dit.blocks:
        assert torch.equal(block(tokens, cond, audio.tokens), tokens)


def test_dit_uses_audio_and_drop_audio_removes_it():
    s = load_settings("tiny")
    torch.manual_seed(0)
    dit = DiT.from_settings(s)
    randomise_zero_init(dit)
    x, t, feats, _ = dummy_inputs(s, batch=2)
    other = torch.rand_like(feats)
    keep = torch.zeros(2, dtype=torch.bool)
    drop = torch.ones(2, dtype=torch.bool)
    with torch.no_grad():
        assert not torch.allclose(dit(x, t, feats, keep), dit(x, t, other, keep), atol=1e-4)
        assert torch.equal(dit(x, t, feats, drop), dit(x, t, other, drop))
        # Dropping only the first sample leaves the second one's conditioning intact.
        mixed = torch.tensor([True, False])
        assert torch.equal(dit(x, t, feats, mixed)[0], dit(x, t, other, mixed)[0])
        assert not torch.allclose(dit(x, t, feats, mixed)[1], dit(x, t, other, mixed)[1], atol=1e-4)
        # The precomputed audio path gives the same result as passing the features.
        audio = dit.embed_audio(feats, keep)
        assert torch.allclose(dit(x, t, audio=audio), dit(x, t, feats, keep))


def test_dit_learns_to_use_audio_from_zero_init():
    """A few optimiser steps on an audio-dependent target open the gates from zero."""
    s = load_settings("tiny")
    torch.manual_seed(0)
    dit = DiT.from_settings(s)
    x, t, feats, keep = dummy_inputs(s, batch=4)
    ctx = s.dit.audio_context
    # Target: every latent of a frame equals that frame's loudness channel.
    target = feats[:, ctx : ctx + s.dit.window, 1, None, None, None].expand_as(x)
    opt = torch.optim.AdamW(dit.parameters(), lr=1e-2)
    first = None
    for _ in range(15):
        loss = (dit(x, t, feats, keep) - target).pow(2).mean()
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
    other = torch.rand_like(feats)
    with torch.no_grad():
        assert not torch.allclose(dit(x, t, feats, keep), dit(x, t, other, keep), atol=1e-4)


def test_param_and_flop_counts():
    tiny, cpu = load_settings("tiny"), load_settings("cpu")
    assert count_params(DiT.from_settings(cpu)) > count_params(DiT.from_settings(tiny)) > 0
    lin = nn.Linear(10, 20, bias=False)
    assert count_flops(lin, torch.zeros(3, 10)) == 2 * 3 * 10 * 20

    class Attend(nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return nn.functional.scaled_dot_product_attention(q, q, q)

    # Attention counts too (QK^T and AV), also on the CPU kernel.
    assert count_flops(Attend(), torch.zeros(1, 2, 16, 8)) == 2 * (2 * 2 * 16 * 16 * 8)
    assert dit_flops_per_sample(cpu) > dit_flops_per_sample(tiny) > 0
    assert dit_flops_per_sample(tiny, "train") == 3 * dit_flops_per_sample(tiny)
    assert vae_flops_per_sample(cpu) > vae_flops_per_sample(tiny) > 0


def test_dit_takes_a_non_square_latent():
    """64x32 frames give a 4x2 latent: the DiT denoises it (the square-latent assumption is gone)."""
    s = load_settings("tiny", video={"width": 64, "height": 32})
    dit = DiT.from_settings(s)
    assert (dit.config.latent_height, dit.config.latent_width) == (2, 4)
    x, t, feats, drop = dummy_inputs(s, batch=2)
    assert x.shape[-2:] == (2, 4)
    assert dit(x, t, feats, drop).shape == x.shape
    with pytest.raises(ValueError, match="must divide the latent height 3"):  # refused by the settings
        load_settings("tiny", video={"width": 64, "height": 48})
    with pytest.raises(ValueError, match="multiple of the patch size"):  # and by the network itself
        DiT(DiTConfig.from_dict({**dit.config.to_dict(), "latent_height": 3}))


def test_configs_round_trip_and_name_their_differences():
    tiny, cpu = load_settings("tiny"), load_settings("cpu")
    cfg = DiTConfig.from_settings(tiny)
    assert DiTConfig.from_dict(cfg.to_dict()) == cfg
    assert DiTConfig.from_settings(tiny.model_dump(mode="json")) == cfg  # a stored settings dict works too
    diffs = {name for name, _, _ in cfg.differences(DiTConfig.from_settings(cpu))}
    assert "dim" in diffs and "num_styles" not in diffs
    with pytest.raises(ValueError, match="unknown"):
        DiTConfig.from_dict({**cfg.to_dict(), "extra": 1})


def test_configs_of_older_checkpoints_take_the_defaults_of_fields_added_since():
    cfg = DiTConfig.from_settings(load_settings("tiny"))
    older = {k: v for k, v in cfg.to_dict().items() if k != "guidance_embed"}  # a checkpoint from before it
    assert DiTConfig.from_dict(older) == cfg and not cfg.guidance_embed
    with pytest.raises(ValueError, match="missing"):  # a field without a default is still required
        DiTConfig.from_dict({k: v for k, v in older.items() if k != "dim"})
