"""The audio-conditioned Diffusion Transformer ("the Brain"), in the spirit of facebookresearch/DiT.

A window of W latent frames [B, W, C, h, w] is denoised jointly. Each frame is cut into p x p patches
(N = (h/p) * (w/p) tokens per frame). Every block applies, each with adaLN-Zero modulation driven by the
timestep embedding plus *that frame's own* audio vector:
  1. spatial attention (the N tokens of one frame),
  2. temporal attention (the W frames at one spatial position),
  3. cross-attention from each frame's tokens to that frame's K audio tokens,
  4. an MLP.
Gates and the final layer are zero-initialised, so the network starts as the zero function and every
block as the identity. ``drop_audio`` swaps in learned null audio embeddings (classifier-free guidance).

Two more conditions drive the per-frame adaLN vector:
- the **style**, a multi-hot vector over the visualizer families (``synesthete.styles``), embedded by a
  zero-initialised linear map; ``drop_style`` swaps in a learned null style (its own CFG dropout and scale);
- the **context mask** [B, W]: frames marked True are latents given as context (the previous window's last
  frames at render time), clean or lightly noised to ``context_t``. They get the embedding of their own
  timestep plus a learned context embedding, and the network continues them instead of denoising them
  (Diffusion Forcing's simplest case). Training noises the context at random levels so that the network
  learns to continue imperfect frames (its own, at render time) instead of copying their flaws: noise
  augmentation of the context, as GameNGen uses against autoregressive drift.

A guidance-distilled DiT (``guidance_embed``; Meng et al. 2023, "On distillation of guided diffusion
models") also takes the audio guidance scale w [B] as an input, embedded like the timestep through a
zero-initialised MLP and added to the same per-frame vector. Trained to output its teacher's guided
prediction (``train diffusion --teacher``), it gives in one pass what classifier-free guidance needs two for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from synesthete.audio.features import BASE_FEATURES, num_features
from synesthete.models.audio_encoder import AudioEncoder, AudioEncoderConfig
from synesthete.models.config import ConfigBoundsError, ModelConfig, settings_dict
from synesthete.settings import Settings
from synesthete.styles import families

TIMESTEP_FREQ_DIM = 256  # width of the sinusoidal timestep features (as in DiT)
POS_EMBED_STD = 0.02  # init std of learned embeddings (temporal position, null audio)
# The style and context embeddings start at zero (so warm starts compute what they computed before) and are
# multiplied by this gain: under Adam every weight moves about lr per step whatever its gradient, so at
# lr 3e-4 a zero-initialised embedding needs thousands of steps to reach the scale of the timestep and
# audio vectors it is added to. The gain is a per-parameter learning-rate multiplier in disguise; without it
# the style embedding had barely grown after hundreds of steps (docs/experiments/2026-11-25-training-throughput.md).
COND_EMBED_GAIN = 30.0
# The guidance scale w enters the sinusoidal embedding as (w - 1) * this: w in 1..3 spans the low
# frequencies the way timesteps 0..200 do (w = 1, the plain conditional prediction, embeds as timestep 0).
GUIDANCE_EMBED_SCALE = 100.0


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation: x * (1 + scale) + shift (shift/scale broadcast over tokens)."""
    return x * (1 + scale) + shift


def sincos_2d(dim: int, height: int, width: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding [height * width, dim] (zero-padded if dim % 4 != 0)."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / max(quarter, 1))
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    parts = []
    for coord in (ys.flatten(), xs.flatten()):
        angles = coord[:, None] * omega[None]
        parts += [angles.sin(), angles.cos()]
    emb = torch.cat(parts, dim=1)
    emb = F.pad(emb, (0, dim - emb.shape[1]))
    return emb.float()


@dataclass
class AudioCondition:
    """Projected audio conditioning for one batch: per-frame vectors and per-frame cross-attention tokens."""

    vector: torch.Tensor  # [B, W, D]   drives adaLN (added to the timestep embedding)
    tokens: torch.Tensor  # [B, W, K, D] keys/values of the cross-attention


class TimestepEmbedder(nn.Module):
    """Integer diffusion timesteps [B] -> vectors [B, D] (sinusoidal features + MLP)."""

    def __init__(self, dim: int, freq_dim: int = TIMESTEP_FREQ_DIM) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """[B] -> [B, D]."""
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=-1))


class PatchEmbed(nn.Module):
    """Latent frames [B, W, C, h, w] -> tokens [B, W, N, D] via a p x p, stride-p convolution."""

    def __init__(self, channels: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, W, C, h, w] -> [B, W, N, D]."""
        b, w = x.shape[:2]
        tokens = self.proj(x.flatten(0, 1))  # [B*W, D, h/p, w/p]
        return tokens.flatten(2).transpose(1, 2).unflatten(0, (b, w))


class SelfAttention(nn.Module):
    """Multi-head self-attention over the second-to-last axis of [S, L, D]."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[S, L, D] -> [S, L, D]."""
        s, length, d = x.shape
        q, k, v = self.qkv(x).view(s, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # [S, H, L, Dh]
        return self.proj(out.transpose(1, 2).reshape(s, length, d))


class CrossAttention(nn.Module):
    """Multi-head attention from queries [S, L, D] to a context [S, K, D]."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """[S, L, D] attending to [S, K, D] -> [S, L, D]."""
        s, length, d = x.shape
        dh = d // self.heads
        q = self.q(x).view(s, length, self.heads, dh).transpose(1, 2)
        k, v = self.kv(context).view(s, context.shape[1], 2, self.heads, dh).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(s, length, d))


class Mlp(nn.Module):
    """Transformer feed-forward: Linear, GELU, Linear.

    The exact (erf) GELU: on a CPU its bf16 kernel is vectorised and the tanh approximation's, which the
    first checkpoints were trained with, is not (docs/experiments/2026-11-29-render-speed.md has the
    timings); the two differ by less than bf16 rounding, so those weights work unchanged."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [..., D]."""
        return self.fc2(F.gelu(self.fc1(x)))


class Modulation(NamedTuple):
    """The twelve adaLN-Zero chunks of a block: (shift, scale, gate) per sub-layer, in the order of the
    ``adaLN_modulation`` output (the order is part of the trained weights)."""

    spatial_shift: torch.Tensor
    spatial_scale: torch.Tensor
    spatial_gate: torch.Tensor
    temporal_shift: torch.Tensor
    temporal_scale: torch.Tensor
    temporal_gate: torch.Tensor
    cross_shift: torch.Tensor
    cross_scale: torch.Tensor
    cross_gate: torch.Tensor
    mlp_shift: torch.Tensor
    mlp_scale: torch.Tensor
    mlp_gate: torch.Tensor


class DiTBlock(nn.Module):
    """Spatial, temporal and cross attention plus MLP, each with per-frame adaLN-Zero modulation."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norms = nn.ModuleList([nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6) for _ in range(4)])
        self.spatial = SelfAttention(dim, heads)
        self.temporal = SelfAttention(dim, heads)
        self.cross = CrossAttention(dim, heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        # (shift, scale, gate) for each of the four sub-layers; zero-initialised (adaLN-Zero).
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 12 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, audio_tokens: torch.Tensor) -> torch.Tensor:
        """x [B, T, N, D], c [B, T, D], audio_tokens [B, T, K, D] -> [B, T, N, D] (T frames in the window)."""
        b, t, n, d = x.shape
        m = Modulation(*self.adaLN_modulation(c).unsqueeze(2).chunk(12, dim=-1))  # 12 x [B, T, 1, D]

        h = modulate(self.norms[0](x), m.spatial_shift, m.spatial_scale).reshape(b * t, n, d)
        x = x + m.spatial_gate * self.spatial(h).view(b, t, n, d)  # within each frame

        h = modulate(self.norms[1](x), m.temporal_shift, m.temporal_scale).transpose(1, 2).reshape(b * n, t, d)
        x = x + m.temporal_gate * self.temporal(h).view(b, n, t, d).transpose(1, 2)  # across the window

        h = modulate(self.norms[2](x), m.cross_shift, m.cross_scale).reshape(b * t, n, d)
        x = x + m.cross_gate * self.cross(h, audio_tokens.flatten(0, 1)).view(b, t, n, d)  # frame -> its audio

        return x + m.mlp_gate * self.mlp(modulate(self.norms[3](x), m.mlp_shift, m.mlp_scale))


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm and a zero-initialised projection back to patches."""

    def __init__(self, dim: int, patch: int, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch * patch * channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x [B, W, N, D], c [B, W, D] -> [B, W, N, p*p*C]."""
        shift, scale = self.adaLN_modulation(c).unsqueeze(2).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


MAX_POSITION_TABLE = 1 << 24  # tokens per frame x dim: e.g. a 64x64 latent in patches of 2 at dim 16384


@dataclass(frozen=True)
class DiTConfig(ModelConfig):
    """What builds a DiT, and what its weights mean: the latent it denoises, its size, the audio it hears, the
    style families it knows, the frame rate of its conditioning and the noise schedule it was trained on."""

    latent_channels: int
    latent_height: int
    latent_width: int
    window: int
    patch_size: int
    dim: int
    depth: int
    heads: int
    mlp_ratio: float
    audio_features: int
    audio_context: int
    audio_dim: int
    num_styles: int
    fps: float
    num_train_timesteps: int
    schedule: str
    prediction: str
    guidance_embed: bool = False  # takes the audio guidance scale as an input (a guidance-distilled student)
    distilled_steps: int = 0  # the DDIM steps a step-distilled student samples with (0: not step-distilled)

    BOUNDS: ClassVar[dict[str, Any]] = {
        "latent_channels": (int, 1, 256), "latent_height": (int, 1, 512), "latent_width": (int, 1, 512),
        "window": (int, 1, 1024), "patch_size": (int, 1, 64), "dim": (int, 1, 4096), "depth": (int, 1, 128),
        "heads": (int, 1, 128), "mlp_ratio": (float, 0.01, 16), "audio_features": (int, 1, 1024),
        "audio_context": (int, 0, 256), "audio_dim": (int, 1, 4096), "num_styles": (int, 1, 1024),
        "fps": (float, 0.01, 240), "num_train_timesteps": (int, 1, 100_000), "schedule": ("cosine", "linear"),
        "prediction": ("eps", "v"), "guidance_embed": bool, "distilled_steps": (int, 0, 100_000),
    }
    RETIRED: ClassVar[dict[str, str]] = {"noise_correlation": "diffusion.noise_correlation"}

    def check(self) -> None:
        """Each field (``BOUNDS``), then the shapes they must agree on."""
        super().check()
        if self.dim % self.heads:
            raise ConfigBoundsError(f"DiTConfig.dim={self.dim} must be divisible by heads={self.heads}")
        if self.latent_height % self.patch_size or self.latent_width % self.patch_size:
            raise ConfigBoundsError(f"the latent ({self.latent_height}x{self.latent_width}) must be a multiple of "
                                    f"the patch size {self.patch_size}")
        tokens = (self.latent_height // self.patch_size) * (self.latent_width // self.patch_size)
        if tokens * self.dim > MAX_POSITION_TABLE:  # the spatial position table, a buffer no checkpoint holds
            raise ConfigBoundsError(f"DiTConfig: {tokens} tokens per frame x dim {self.dim} is too large (at most "
                                    f"{MAX_POSITION_TABLE:,} values)")

    @classmethod
    def from_settings(
        cls, settings: Settings | dict[str, Any], latent_shape: tuple[int, int, int] | None = None
    ) -> DiTConfig:
        """The config of a new DiT for ``settings`` (or a stored settings dict), on latents of ``latent_shape``
        (C, h, w): the VAE's, by default the frame size / 16 with ``vae.latent_channels``."""
        s = settings_dict(settings)
        cls.without_retired(s.get("diffusion") or {})  # an older file's settings may ask for a retired noise law
        video, d = s["video"], s["dit"]
        if latent_shape is None:
            latent_shape = (s["vae"]["latent_channels"], video["height"] // 16, video["width"] // 16)
        c, h, w = latent_shape
        return cls(
            latent_channels=c, latent_height=h, latent_width=w, window=d["window"], patch_size=d["patch_size"],
            dim=d["dim"], depth=d["depth"], heads=d["heads"], mlp_ratio=d["mlp_ratio"],
            audio_features=len(BASE_FEATURES) + s["audio"]["n_bands"], audio_context=d["audio_context"],
            audio_dim=d["audio_dim"], num_styles=len(families()), fps=video["fps"],
            num_train_timesteps=d["num_train_timesteps"], schedule=d["schedule"], prediction=d["prediction"],
            guidance_embed=bool(d.get("guidance_embed", False)),
            # A student of a step distillation (`--teacher` sets dit.guidance_embed) samples with DDIM at its steps.
            distilled_steps=int((s.get("diffusion") or {}).get("distill_steps", 0)) if d.get("guidance_embed") else 0,
        )

    @property
    def audio(self) -> AudioEncoderConfig:
        """The config of the DiT's audio encoder."""
        return AudioEncoderConfig(num_features=self.audio_features, context=self.audio_context, dim=self.audio_dim)


class DiT(nn.Module):
    """The Brain: predicts noise (or v) for a window of latent frames, given the window's audio features."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()  # the config checked its shapes (DiTConfig.check)
        self.config = cfg
        self.channels = cfg.latent_channels
        self.patch = cfg.patch_size
        self.window = cfg.window
        self.context = cfg.audio_context
        dim = cfg.dim

        self.patch_embed = PatchEmbed(self.channels, dim, self.patch)
        grid_h, grid_w = cfg.latent_height // self.patch, cfg.latent_width // self.patch
        self.register_buffer("spatial_pos", sincos_2d(dim, grid_h, grid_w), persistent=False)  # [N, D]
        self.temporal_pos = nn.Parameter(torch.randn(cfg.window, dim) * POS_EMBED_STD)  # [W, D]
        self.t_embedder = TimestepEmbedder(dim)

        self.audio_encoder = AudioEncoder(cfg.audio)
        self.audio_vector_proj = nn.Linear(cfg.audio_dim, dim)
        self.audio_token_proj = nn.Linear(cfg.audio_dim, dim)
        # Learned "no audio" embeddings for classifier-free guidance.
        self.null_vector = nn.Parameter(torch.randn(dim) * POS_EMBED_STD)
        self.null_tokens = nn.Parameter(torch.randn(self.audio_encoder.num_tokens, dim) * POS_EMBED_STD)
        # Style (multi-hot over the visualizer families) and clean-context conditioning; zero-initialised so a
        # network warm-started from weights without them starts out exactly as it was.
        self.num_styles = cfg.num_styles
        self.style_embed = nn.Linear(self.num_styles, dim, bias=False)
        self.null_style = nn.Parameter(torch.zeros(dim))
        self.context_embed = nn.Parameter(torch.zeros(dim))
        # The audio guidance scale of a guidance-distilled student; its output layer starts at zero, so a
        # student warm-started from its teacher begins as the teacher's conditional prediction at every w.
        self.guidance_embedder = TimestepEmbedder(dim) if cfg.guidance_embed else None

        self.blocks = nn.ModuleList([DiTBlock(dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth)])
        self.final = FinalLayer(dim, self.patch, self.channels)
        self.initialize_weights()

    @classmethod
    def from_settings(cls, settings: Settings, latent_shape: tuple[int, int, int] | None = None) -> DiT:
        """A new (untrained) DiT for ``settings`` (see ``DiTConfig.from_settings``)."""
        return cls(DiTConfig.from_settings(settings, latent_shape))

    def initialize_weights(self) -> None:
        """Xavier linears; zero adaLN modulation and final projection, so every block starts as identity."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        proj = self.patch_embed.proj
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
        nn.init.zeros_(proj.bias)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=POS_EMBED_STD)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=POS_EMBED_STD)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final.adaLN_modulation[-1], self.final.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.zeros_(self.style_embed.weight)
        if self.guidance_embedder is not None:
            nn.init.normal_(self.guidance_embedder.mlp[0].weight, std=POS_EMBED_STD)
            nn.init.zeros_(self.guidance_embedder.mlp[2].weight)
            nn.init.zeros_(self.guidance_embedder.mlp[2].bias)

    def embed_audio(self, features: torch.Tensor, drop_audio: torch.Tensor | None = None) -> AudioCondition:
        """Encode features [B, W + 2*ctx, F] once; dropped samples get the learned null embeddings."""
        pooled, tokens = self.audio_encoder(features)  # [B, W, Da], [B, W, K, Da]
        vector = self.audio_vector_proj(pooled)  # [B, W, D]
        tokens = self.audio_token_proj(tokens)  # [B, W, K, D]
        if drop_audio is not None:
            drop = drop_audio.to(device=vector.device, dtype=torch.bool)
            vector = torch.where(drop[:, None, None], self.null_vector.to(vector.dtype), vector)
            tokens = torch.where(drop[:, None, None, None], self.null_tokens.to(tokens.dtype), tokens)
        return AudioCondition(vector, tokens)

    def embed_style(self, style: torch.Tensor | None, drop_style: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Multi-hot styles [B, S] -> [B, D]; dropped samples (or ``style=None``) get the learned null style."""
        null = self.null_style.expand(batch, -1) * COND_EMBED_GAIN
        if style is None:
            return null
        if style.shape != (batch, self.num_styles):
            raise ValueError(f"style must be [{batch}, {self.num_styles}], got {tuple(style.shape)}")
        emb = self.style_embed(style.to(device=null.device, dtype=null.dtype)) * COND_EMBED_GAIN
        if drop_style is None:
            return emb
        return torch.where(drop_style.to(device=emb.device, dtype=torch.bool)[:, None], null, emb)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        features: torch.Tensor | None = None,
        drop_audio: torch.Tensor | None = None,
        audio: AudioCondition | None = None,
        style: torch.Tensor | None = None,
        drop_style: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        context_t: torch.Tensor | None = None,
        guidance: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, W, C, h, w], t [B], features [B, W + 2*ctx, F], drop_audio [B] bool -> [B, W, C, h, w].

        Pass a precomputed ``audio`` (from ``embed_audio``) instead of ``features`` to skip the audio encoder,
        e.g. in the sampler, which encodes the audio once for all its steps. ``style`` [B, S] multi-hot with
        ``drop_style`` [B] bool; ``context_mask`` [B, W] bool marks context frames in ``x``,
        noised to timestep ``context_t`` [B] (None: clean, timestep 0). ``guidance`` [B] is the audio guidance
        scale of a guidance-distilled DiT (``config.guidance_embed``; None: 1, the conditional prediction);
        other DiTs refuse it.
        """
        b, w, c, h, wd = x.shape
        if audio is None:
            if features is None:
                raise ValueError("DiT.forward needs either features or a precomputed audio condition")
            audio = self.embed_audio(features, drop_audio)
        if audio.vector.shape[:2] != (b, w):
            raise ValueError(f"audio conditioning covers {tuple(audio.vector.shape[:2])} frames, x has {(b, w)}")
        tokens = self.patch_embed(x) + self.spatial_pos + self.temporal_pos[:w, None]  # [B, W, N, D]
        t_emb = self.t_embedder(t)[:, None].expand(b, w, -1)  # [B, W, D]
        if context_mask is not None:
            if context_t is None:
                context_t = torch.zeros(1, dtype=t.dtype, device=t.device)
            ctx_emb = self.t_embedder(context_t) + self.context_embed * COND_EMBED_GAIN  # [B or 1, D]
            t_emb = torch.where(context_mask.to(t_emb.device, torch.bool)[..., None], ctx_emb[:, None], t_emb)
        style_emb = self.embed_style(style, drop_style, b)[:, None]  # [B, 1, D]
        cond = t_emb + audio.vector + style_emb  # [B, W, D]: per-frame conditioning
        if self.guidance_embedder is not None:
            w_in = torch.ones(b, device=t.device) if guidance is None else guidance.to(t.device, torch.float32)
            cond = cond + self.guidance_embedder((w_in - 1) * GUIDANCE_EMBED_SCALE)[:, None]
        elif guidance is not None:
            raise ValueError("this DiT was not guidance-distilled (config.guidance_embed): it takes no guidance")
        for block in self.blocks:
            tokens = block(tokens, cond, audio.tokens)
        out = self.final(tokens, cond)  # [B, W, N, p*p*C]
        return self.unpatchify(out, h, wd)

    def unpatchify(self, patches: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """[B, W, N, p*p*C] -> [B, W, C, h, w]."""
        b, w = patches.shape[:2]
        p, c = self.patch, self.channels
        gh, gw = height // p, width // p
        x = patches.view(b, w, gh, gw, p, p, c).permute(0, 1, 6, 2, 4, 3, 5)
        return x.reshape(b, w, c, height, width)


def dummy_inputs(settings: Settings, batch: int = 1) -> tuple[torch.Tensor, ...]:
    """Random (x, t, features, drop_audio) of the right shapes for ``settings`` (tests, FLOP counts)."""
    cfg = DiTConfig.from_settings(settings)
    x = torch.randn(batch, cfg.window, cfg.latent_channels, cfg.latent_height, cfg.latent_width)
    t = torch.randint(0, cfg.num_train_timesteps, (batch,))
    features = torch.rand(batch, cfg.window + 2 * cfg.audio_context, num_features(settings.audio))
    return x, t, features, torch.zeros(batch, dtype=torch.bool)
