"""Checkpoints: save atomically, load safely, check the architecture, export compact defaults.

A checkpoint is a plain dict written by ``torch.save`` and read back with ``torch.load(weights_only=True)``
only, so loading a file never runs code. It carries the network's config (``models.config``: a small frozen
dataclass as a plain dict), and loading rebuilds the network from it: no settings or ``--preset`` are needed
to read a checkpoint. It also records the whole settings of the run that wrote it, as a plain dict
(``settings.model_dump(mode="json")``): render and eval take the audio analysis from there, and
``--resume`` takes its settings from there. Checkpoints written before configs existed are read through
their stored settings (``Config.from_settings`` accepts that dict).

Layout (every key a plain type or a tensor)::

    format "synesthete-checkpoint", version 1, kind "vae" | "diffusion" | "critic",
    model (state dict), config (dict), ema (diffusion), optimizer, scheduler, step, data_position,
    rng (uint8 tensor), settings (dict), versions {"synesthete", "torch"},
    latent_stats {"mean": [C], "std": [C]} (diffusion), vae_fingerprint (diffusion: which VAE's latents it
    was trained on)

Exported defaults (``checkpoints/vae.pt``, ``checkpoints/diffusion.pt``) keep only fp16 weights (the EMA
for diffusion), settings, versions and latent statistics: no optimizer, so they are small enough to commit.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from synesthete import __version__
from synesthete.console import err_console
from synesthete.device import precision
from synesthete.engine import prepare as prepare_engine
from synesthete.errors import CheckpointError, ConfigError
from synesthete.media import atomic_save, to_unit
from synesthete.models.config import ConfigBoundsError, RetiredFieldError
from synesthete.models.critic import Critic, CriticConfig, StyleCritic
from synesthete.models.dit import DiT, DiTConfig
from synesthete.models.vae import VAE, VAEConfig
from synesthete.settings import AudioSettings, Settings, check_retired
from synesthete.styles import families

FORMAT = "synesthete-checkpoint"
VERSION = 1
KINDS = ("vae", "diffusion", "critic")
TRAIN_HINT = {
    "critic": "train one with `synesthete train critic --export {dir}`",
    "vae": "train one with `synesthete train vae --export {dir}`",
    "diffusion": "train one with `synesthete train diffusion --export {dir}`",
}


def versions() -> dict[str, str]:
    """Package and torch versions, as plain strings, recorded in every checkpoint."""
    return {"synesthete": str(__version__), "torch": str(torch.__version__)}


def _inner(model: nn.Module) -> nn.Module:
    """The underlying module of a DDP-wrapped (``module``) or compiled (``_orig_mod``) one."""
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)


def raw_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the underlying module, without ``module.`` (DDP) or ``_orig_mod.`` (compile) prefixes."""
    return _inner(model).state_dict()


def vae_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """Short hash of a VAE's weights rounded to fp16, equal for a run checkpoint and its fp16 export."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.to(torch.float16)
        digest.update(name.encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def make_checkpoint(kind: str, model: nn.Module, settings: Settings, **extra: Any) -> dict[str, Any]:
    """The checkpoint dict for ``model`` plus ``extra`` entries (optimizer, scheduler, step, ema, ...)."""
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}")
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "model": raw_state_dict(model),
        "settings": settings.model_dump(mode="json"),
        "config": _inner(model).config.to_dict(),
        "versions": versions(),
    }
    ckpt.update(extra)
    return ckpt


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> Path:
    """Write ``ckpt`` atomically (temp file, fsync, rename): an interrupted write keeps the old file."""
    path = Path(path)
    atomic_save(ckpt, path)
    return path


# --------------------------------------------------------------------------------------------- loading
def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load any Synesthete checkpoint with ``weights_only=True``; refuse anything else with a CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    # torch.save writes a zip archive; anything else (a raw pickle, text, a video) is not ours.
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a checkpoint (not a PyTorch archive)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # The restricted unpickler met a global it does not allow (a class, a function such as os.system):
        # it stopped before calling anything.
        raise CheckpointError(f"refusing to load {path}: not a plain checkpoint (it may contain code)") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated): {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a Synesthete checkpoint")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {ckpt.get('version')}, this synesthete reads version {VERSION}"
        )
    return ckpt


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _config_class(kind: str) -> type:
    return {"vae": VAEConfig, "diffusion": DiTConfig, "critic": CriticConfig}[kind]


def checkpoint_config(ckpt: dict[str, Any], path: str | Path) -> Any:
    """The config that builds the checkpoint's network: its own ``config``, or (older files) the config
    derived from the settings it stores."""
    cls = _config_class(ckpt["kind"])
    try:
        if "config" in ckpt:
            if not isinstance(ckpt["config"], dict):
                raise TypeError(f"its config is a {type(ckpt['config']).__name__}, not a dict")
            return cls.from_dict(ckpt["config"])
        return cls.from_settings(ckpt.get("settings") or {})
    except RetiredFieldError as exc:
        raise CheckpointError(f"cannot use {path}: {exc}") from None
    except ConfigBoundsError as exc:  # a field of the wrong type, sign or size (a damaged or tampered file)
        raise CheckpointError(f"{path} asks for a {ckpt['kind']} network that cannot be right: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} does not say how to build its {ckpt['kind']} network: {exc}") from exc


def check_config(
    ckpt: dict[str, Any], wanted: Any, path: str | Path, what: str = "current settings", preset: str | None = None
) -> None:
    """Raise a one-line CheckpointError naming the first config field in which ``ckpt``'s network differs from
    ``wanted`` (a config built from the ``what``, of model-size ``preset``): for resuming and warm starts."""
    diffs = checkpoint_config(ckpt, path).differences(wanted)
    if not diffs:
        return
    field, old, new = diffs[0]
    more = f" (and {', '.join(f for f, _, _ in diffs[1:])})" if len(diffs) > 1 else ""
    trained = _lookup(ckpt.get("settings") or {}, "preset")
    hint = f"; it was trained with preset '{trained}' (try --preset {trained})" if trained != preset else ""
    raise CheckpointError(f"{path} was trained with {field}={old}, the {what} give {new}{more}{hint}")


def load_checkpoint(path: str | Path, kind: str, settings: Settings | None = None) -> dict[str, Any]:
    """Read a checkpoint and check that it is of ``kind``; with ``settings`` (resuming a run), also that its
    network is the one those settings build."""
    ckpt = read_checkpoint(path)
    if ckpt.get("kind") != kind:
        raise CheckpointError(f"{path} is a {ckpt.get('kind')} checkpoint, expected a {kind} checkpoint")
    if settings is not None:
        if kind == "diffusion":  # a resumed run trains on as its stored settings say: none may ask for a retired knob
            try:
                check_retired(ckpt.get("settings") or {})
            except ValueError as exc:
                raise CheckpointError(f"cannot resume {path}: {exc}") from None
        check_config(ckpt, _config_class(kind).from_settings(settings), path, preset=settings.preset)
    return ckpt


def check_finite(state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """Raise a CheckpointError naming the first tensor of ``state_dict`` that holds NaN or inf.

    A tensor's float64 sum is NaN or infinite exactly when an element is (no finite weights sum past 1e308):
    one pass, where ``isfinite(...).all()`` on the fp16 weights of an exported checkpoint took 0.26 s of
    every render's start."""
    for name, tensor in state_dict.items():
        if (isinstance(tensor, torch.Tensor) and tensor.is_floating_point()
                and not math.isfinite(float(tensor.double().sum()))):
            raise CheckpointError(
                f"{path} holds non-finite weights (NaN or inf) in {name}: the file is damaged or its training "
                "diverged; use another checkpoint"
            )


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load ``state_dict`` into ``model`` strictly (any missing or extra key is a CheckpointError).

    Non-finite weights (NaN, inf) are refused too: they would render black frames without an error.
    """
    check_finite(state_dict, path)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise CheckpointError(f"{path} does not fit the current network: {detail}") from exc


def warm_start(model: nn.Module, state_dict: dict[str, torch.Tensor], path: str | Path) -> list[str]:
    """Load ``state_dict`` where shapes allow; parameters it lacks keep their (zero) initialisation.

    Returns the names that were kept. A key the model does not have, or a shape that differs, is a
    CheckpointError: warm starts are for adding conditioning, not for changing the network's size.
    """
    own = model.state_dict()
    extra = sorted(set(state_dict) - set(own))
    if extra:
        raise CheckpointError(f"{path} has weights the current network lacks ({', '.join(extra[:3])}...)")
    for name, tensor in state_dict.items():
        if tensor.shape != own[name].shape:
            raise CheckpointError(
                f"{path} does not fit the current network: {name} is {tuple(tensor.shape)}, "
                f"the network has {tuple(own[name].shape)}"
            )
    missing = sorted(set(own) - set(state_dict))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state_dict.items()}, strict=False)
    return missing


# --------------------------------------------------------------------------------------------- export
def export_checkpoint(src: str | Path, dst_dir: str | Path) -> Path:
    """Write ``dst_dir/<kind>.pt``: fp16 weights (the EMA for diffusion), settings, versions, latent stats."""
    ckpt = read_checkpoint(src)
    kind = ckpt["kind"]
    weights = ckpt.get("ema") or ckpt["model"]
    compact: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "model": {k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
        "step": ckpt.get("step", 0),
        "settings": ckpt["settings"],
        "versions": ckpt.get("versions", versions()),
    }
    for key in ("config", "latent_stats", "vae_fingerprint", "families", "cut_threshold", "scores"):
        if key in ckpt:
            compact[key] = ckpt[key]
    compact.setdefault("config", checkpoint_config(ckpt, src).to_dict())  # older runs: from their settings
    dst = Path(dst_dir) / f"{kind}.pt"
    return save_checkpoint(compact, dst)


# --------------------------------------------------------------------------------------------- models
@dataclass
class Models:
    """The trained networks render and eval need, in eval mode (the DiT in bf16 where they run it under bf16
    autocast: ``load_models``).

    The architecture (window, latent, audio context, noise schedule, frame rate, ...) is the DiT's ``config``,
    read from its checkpoint and never copied into the settings."""

    vae: nn.Module
    dit: nn.Module
    latent_mean: torch.Tensor  # [C]: per-channel mean of the VAE latents (diffusion works on (z - mean) / std)
    latent_std: torch.Tensor  # [C]
    audio: dict[str, Any] | None = None  # the audio analysis the DiT was trained on (its checkpoint's settings)
    engine: str = "eager"  # what runs the DiT's forward: "eager" or "onnxruntime" (``engine.prepare``)

    @property
    def config(self) -> DiTConfig:
        """The DiT's architecture, as its checkpoint says."""
        return self.dit.config

    def fitted(self, settings: Settings) -> Settings:
        """``settings`` with the data these networks work on: the frame size their latent makes and the audio
        analysis they were trained on (the visualizers, the data engine and the feature extractor of a render
        or an eval read them from the settings). Sampling, render and eval settings stay the caller's."""
        cfg = self.config
        return settings.updated(video={"height": cfg.latent_height * 16, "width": cfg.latent_width * 16},
                                audio=self.audio or {})

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1)
        return (self.latent_mean.to(like.device).view(shape), self.latent_std.to(like.device).view(shape))

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames [N, 3, H, W] (floats in [0, 1] or uint8) -> standardised latents [N, C, h, w] (the VAE's
        posterior mean, scaled to the unit-variance space the DiT works in)."""
        mu, _ = self.vae.encode(to_unit(frames, self.latent_mean.device))
        mean, std = self._stats(mu)
        return (mu - mean) / std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Standardised latents [N, C, h, w] -> frames [N, 3, H, W] in [0, 1]."""
        z = latents.to(self.latent_mean.device).float()
        mean, std = self._stats(z)
        return self.vae.decode(z * std + mean).clamp(0, 1)


def _default_file(checkpoint_dir: Path, kind: str) -> Path:
    path = Path(checkpoint_dir) / f"{kind}.pt"
    if not path.exists():
        hint = TRAIN_HINT[kind].format(dir=checkpoint_dir)
        raise CheckpointError(
            f"no {kind} checkpoint at {path}: {hint}, or point --checkpoint-dir at a folder with vae.pt and "
            "diffusion.pt (the defaults are committed in the repository's checkpoints/ folder)"
        )
    return path


def build_model(ckpt: dict[str, Any], path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """The checkpoint's network, rebuilt from its config, with its weights (the EMA for diffusion), frozen,
    float32, in eval mode on ``device``."""
    cls = {"vae": VAE, "diffusion": DiT, "critic": StyleCritic}[ckpt["kind"]]
    config = checkpoint_config(ckpt, path)  # every field checked: type, sign, bound
    weights = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path} holds no weights (its model is not a dict of tensors)")
    held = sum(t.numel() for t in weights.values())
    try:
        with _Budget(held + BUILD_SLACK) as budget:  # the config may not ask for more than the file holds
            model = cls(config)
    except _OverBudget:
        raise CheckpointError(
            f"{path} does not fit its own config: the network it describes has more than the {held:,} parameters "
            f"the file holds (at least {budget.used:,}); the file is damaged or was changed"
        ) from None
    except ValueError as exc:  # a config no network can be built from
        raise CheckpointError(f"{path}: {exc}") from exc
    load_weights(model, weights, path)
    return model.float().to(device).eval().requires_grad_(False)


BUILD_SLACK = 1 << 20  # elements a network may make beyond its parameters while it is built (small buffers)
_SIZED = (torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn, torch.full)  # the size comes first


class _OverBudget(Exception):
    pass


class _Budget(TorchFunctionMode):
    """While a network is built from a checkpoint's config, count the elements of the new tensors it sizes
    (``torch.empty``, ``zeros``, ``randn``...: every parameter is made so) and stop the build before the call
    that would pass ``limit``. So a tampered config (``dim`` 100000, ``depth`` 10^6) allocates no more than
    the weights the file really holds, and a network that fits them is built as before (same random draws)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.used = limit, 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _SIZED:
            size = kwargs.get("size", args[0] if args and isinstance(args[0], tuple | list | torch.Size) else args)
            self.used += math.prod(d for d in size if isinstance(d, int))
            if self.used > self.limit:
                raise _OverBudget
        return func(*args, **kwargs)


def load_critic(path: str | Path, device: torch.device | str = "cpu") -> Critic:
    """The style critic (eval mode, float32), built from the config its checkpoint carries, with its cut threshold."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"no critic checkpoint at {path}: train one with `synesthete train critic --export "
            f"{path.parent}` or pass --critic PATH"
        )
    ckpt = read_checkpoint(path)
    if ckpt.get("kind") != "critic":
        raise CheckpointError(f"{path} is a {ckpt.get('kind')} checkpoint, expected a critic checkpoint")
    if ckpt.get("families") != families():
        raise CheckpointError(
            f"{path} was trained on the families {ckpt.get('families')}, this synesthete draws {families()}: "
            "retrain it with `synesthete train critic`"
        )
    if not isinstance(ckpt.get("cut_threshold"), float) or not math.isfinite(ckpt["cut_threshold"]):
        raise CheckpointError(f"{path} has no cut threshold: it did not finish `synesthete train critic`")
    return Critic(network=build_model(ckpt, path, device), cut_threshold=float(ckpt["cut_threshold"]))


def load_vae(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """A frozen float32 VAE in eval mode from a vae checkpoint (run or exported), and the checkpoint."""
    ckpt = load_checkpoint(path, "vae")
    return build_model(ckpt, path, device), ckpt


def check_frame_rate(dit_ckpt: dict[str, Any], settings: Settings, path: str | Path) -> None:
    """Refuse settings at another frame rate than the DiT of ``dit_ckpt`` was trained at: the model knows one
    rate only."""
    cfg = checkpoint_config(dit_ckpt, path)
    if cfg.fps != settings.video.fps:
        raise CheckpointError(
            f"{path} was trained at {cfg.fps:g} fps: the model works at that rate only (use --fps {cfg.fps:g}; "
            "other rates are not supported)"
        )


def trained_audio(dit_ckpt: dict[str, Any]) -> dict[str, Any]:
    """The audio analysis the DiT of ``dit_ckpt`` was trained on: the audio section of the settings it stores
    (fields this synesthete does not know left out)."""
    stored = (dit_ckpt.get("settings") or {}).get("audio") or {}
    return {k: v for k, v in stored.items() if k in AudioSettings.model_fields}


def load_models(settings: Settings, checkpoint_dir: str | Path, device: torch.device | str) -> Models:
    """Load ``vae.pt`` and ``diffusion.pt`` from ``checkpoint_dir`` (eval mode, on ``device``), each rebuilt
    from its own config; ``settings`` must be at the DiT's frame rate. ``Models.fitted(settings)`` gives the
    settings a render or an eval of them runs with.

    The VAE is float32. The DiT is float32 too, except where render and eval run it under bf16 autocast
    (``device.precision(device, settings.render.amp)`` is "bf16"): there its weights are stored in bf16, so
    autocast does not cast every weight again in every forward (a measurable share of a render's network time
    on a CPU: docs/experiments/2026-11-29-render-speed.md). Call it under ``device.autocast`` then, as
    ``render.iter_windows`` does.
    """
    checkpoint_dir = Path(checkpoint_dir)
    vae_path = _default_file(checkpoint_dir, "vae")
    dit_path = _default_file(checkpoint_dir, "diffusion")
    vae_ckpt = load_checkpoint(vae_path, "vae")
    dit_ckpt = load_checkpoint(dit_path, "diffusion")
    # The two files must belong together.
    vae_cfg, dit_cfg = checkpoint_config(vae_ckpt, vae_path), checkpoint_config(dit_ckpt, dit_path)
    dit_latent = (dit_cfg.latent_channels, dit_cfg.latent_height, dit_cfg.latent_width)
    if vae_cfg.latent_shape != dit_latent:
        raise CheckpointError(
            f"{dit_path} was trained on latents of shape {dit_latent}, but {vae_path} makes {vae_cfg.latent_shape}"
        )
    expected = dit_ckpt.get("vae_fingerprint")
    if expected is not None and expected != vae_fingerprint(vae_ckpt["model"]):
        raise CheckpointError(
            f"{dit_path} was trained on the latents of a different VAE than {vae_path}: "
            "export both from the same training pipeline"
        )
    if "latent_stats" not in dit_ckpt:
        raise CheckpointError(f"{dit_path} has no latent_stats: it was not written by `synesthete train diffusion`")
    stats = dit_ckpt["latent_stats"]
    check_finite(stats, dit_path)
    check_frame_rate(dit_ckpt, settings, dit_path)
    if (settings.sampling.steps or 0) > dit_cfg.num_train_timesteps:
        raise ConfigError(f"sampling.steps={settings.sampling.steps} must be at most the "
                          f"{dit_cfg.num_train_timesteps} timesteps {dit_path} was trained with")
    dit = build_model(dit_ckpt, dit_path, device)
    path = precision(torch.device(device), settings.render.amp)
    if path == "bf16":
        dit = dit.to(torch.bfloat16)
    dit, engine = prepare_engine(dit, dit_path, settings.render.engine, torch.device(device), path,
                                 settings.paths.cache, say=lambda line: err_console.print(line, markup=False))
    return Models(
        vae=build_model(vae_ckpt, vae_path, device),
        dit=dit,
        latent_mean=stats["mean"].float().to(device),
        latent_std=stats["std"].float().to(device),
        audio=trained_audio(dit_ckpt),
        engine=engine,
    )
