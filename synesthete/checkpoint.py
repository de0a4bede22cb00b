"""Checkpoints: save atomically, load safely, check the architecture, export compact defaults.

A checkpoint is a plain dict written by ``torch.save`` and read back with ``torch.load(weights_only=True)``
only, so loading a file never runs code. It carries the settings that built the network as a plain dict
(``settings.model_dump(mode="json")``), and loading compares the fields that define the network's shape
(``settings.ARCHITECTURE_FIELDS``) with the current settings, naming the first one that differs.

Layout (every key a plain type or a tensor)::

    format "synesthete-checkpoint", version 1, kind "vae" | "diffusion",
    model (state dict), ema (diffusion), optimizer, scheduler, step, data_position, rng (uint8 tensor),
    settings (dict), versions {"synesthete", "torch"}, latent_stats {"mean": [C], "std": [C]} (diffusion),
    vae_fingerprint (diffusion: which VAE's latents it was trained on)

Exported defaults (``checkpoints/vae.pt``, ``checkpoints/diffusion.pt``) keep only fp16 weights (the EMA
for diffusion), settings, versions and latent statistics: no optimizer, so they are small enough to commit.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from synesthete import __version__
from synesthete.errors import CheckpointError
from synesthete.media import atomic_save
from synesthete.settings import ARCHITECTURE_FIELDS, Settings

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


def raw_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the underlying module, without ``module.`` (DDP) or ``_orig_mod.`` (compile) prefixes."""
    inner = getattr(model, "module", model)
    inner = getattr(inner, "_orig_mod", inner)
    return inner.state_dict()


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


def architecture_mismatches(saved: dict[str, Any], settings: Settings, kind: str) -> list[tuple[str, Any, Any]]:
    """(field, checkpoint value, current value) for every architecture field of ``kind`` that differs."""
    current = settings.model_dump(mode="json")
    out = []
    for field in ARCHITECTURE_FIELDS[kind]:
        old, new = _lookup(saved, field), _lookup(current, field)
        if old != new:
            out.append((field, old, new))
    return out


def check_architecture(ckpt: dict[str, Any], settings: Settings, kind: str, path: str | Path) -> None:
    """Raise a one-line CheckpointError naming the first architecture field that differs."""
    diffs = architecture_mismatches(ckpt.get("settings") or {}, settings, kind)
    if not diffs:
        return
    field, old, new = diffs[0]
    more = f" (and {', '.join(f for f, _, _ in diffs[1:])})" if len(diffs) > 1 else ""
    preset = _lookup(ckpt.get("settings") or {}, "preset")
    hint = f"; it was trained with preset '{preset}' (try --preset {preset})" if preset != settings.preset else ""
    if field == "video.fps" and not more:
        hint = f": the model works at {old} fps only (use --fps {old}; other rates are not supported)"
    raise CheckpointError(
        f"{path} was trained with {field}={old}, current settings have {new}{more}{hint}"
    )


def load_checkpoint(path: str | Path, kind: str, settings: Settings) -> dict[str, Any]:
    """Read a checkpoint and check that it is of ``kind`` and matches the architecture of ``settings``."""
    ckpt = read_checkpoint(path)
    if ckpt.get("kind") != kind:
        raise CheckpointError(f"{path} is a {ckpt.get('kind')} checkpoint, expected a {kind} checkpoint")
    check_architecture(ckpt, settings, kind, path)
    return ckpt


def check_finite(state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """Raise a CheckpointError naming the first tensor of ``state_dict`` that holds NaN or inf."""
    for name, tensor in state_dict.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
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
    for key in ("latent_stats", "vae_fingerprint", "families", "cut_threshold", "scores"):
        if key in ckpt:
            compact[key] = ckpt[key]
    dst = Path(dst_dir) / f"{kind}.pt"
    return save_checkpoint(compact, dst)


# --------------------------------------------------------------------------------------------- models
@dataclass
class Models:
    """The trained networks render and eval need, in eval mode and float32."""

    vae: nn.Module
    dit: nn.Module
    latent_mean: torch.Tensor  # [C]: per-channel mean of the VAE latents (diffusion works on (z - mean) / std)
    latent_std: torch.Tensor  # [C]


def _default_file(checkpoint_dir: Path, kind: str) -> Path:
    path = Path(checkpoint_dir) / f"{kind}.pt"
    if not path.exists():
        hint = TRAIN_HINT[kind].format(dir=checkpoint_dir)
        raise CheckpointError(
            f"no {kind} checkpoint at {path}: {hint}, or point --checkpoint-dir at a folder with vae.pt and "
            "diffusion.pt (the defaults are committed in the repository's checkpoints/ folder)"
        )
    return path


def load_vae(path: str | Path, settings: Settings, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """A frozen float32 VAE in eval mode from a vae checkpoint (run or exported), and the checkpoint."""
    from synesthete.models.vae import VAE

    ckpt = load_checkpoint(path, "vae", settings)
    vae = VAE(settings)
    load_weights(vae, ckpt["model"], path)
    vae = vae.float().to(device).eval().requires_grad_(False)
    return vae, ckpt


def load_models(settings: Settings, checkpoint_dir: str | Path, device: torch.device | str) -> Models:
    """Load ``vae.pt`` and ``diffusion.pt`` from ``checkpoint_dir`` (float32, eval mode, on ``device``)."""
    from synesthete.models.dit import DiT

    checkpoint_dir = Path(checkpoint_dir)
    vae_path = _default_file(checkpoint_dir, "vae")
    dit_path = _default_file(checkpoint_dir, "diffusion")
    vae_ckpt = read_checkpoint(vae_path)
    dit_ckpt = read_checkpoint(dit_path)
    # The two files must belong together before either is compared with the current settings.
    vae_c = _lookup(vae_ckpt.get("settings") or {}, "vae.latent_channels")
    dit_c = _lookup(dit_ckpt.get("settings") or {}, "vae.latent_channels")
    if vae_ckpt.get("kind") == "vae" and dit_ckpt.get("kind") == "diffusion" and vae_c != dit_c:
        raise CheckpointError(
            f"{dit_path} was trained on a VAE with vae.latent_channels={dit_c}, but {vae_path} has {vae_c}"
        )
    vae, vae_ckpt = load_vae(vae_path, settings, device)
    dit_ckpt = load_checkpoint(dit_path, "diffusion", settings)
    expected = dit_ckpt.get("vae_fingerprint")
    if expected is not None and expected != vae_fingerprint(vae_ckpt["model"]):
        raise CheckpointError(
            f"{dit_path} was trained on the latents of a different VAE than {vae_path}: "
            "export both from the same training pipeline"
        )
    if "latent_stats" not in dit_ckpt:
        raise CheckpointError(f"{dit_path} has no latent_stats: it was not written by `synesthete train diffusion`")
    dit = DiT(settings)
    load_weights(dit, dit_ckpt.get("ema") or dit_ckpt["model"], dit_path)
    dit = dit.float().to(device).eval().requires_grad_(False)
    stats = dit_ckpt["latent_stats"]
    check_finite(stats, dit_path)
    return Models(
        vae=vae,
        dit=dit,
        latent_mean=stats["mean"].float().to(device),
        latent_std=stats["std"].float().to(device),
    )
