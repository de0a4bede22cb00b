"""Settings that moved or were retired: stored settings (checkpoints, runs' settings.json) are read in today's
layout, and an old ``SYNESTHETE_*`` variable is refused with what became of it."""

from __future__ import annotations

from typing import Any

# Settings that moved or were renamed: (section, old field) -> (section, new field). Stored settings (checkpoints,
# runs' settings.json) are read through it (``upgrade_stored``); an old SYNESTHETE_* variable is refused with its
# new name. The DiT's architecture left the diffusion section for ``dit``, its sampling for ``sampling``.
DIT_FIELDS = ("window", "patch_size", "dim", "depth", "heads", "mlp_ratio", "audio_context", "audio_dim",
              "num_train_timesteps", "schedule", "prediction", "guidance_embed")
MOVED: dict[tuple[str, str], tuple[str, str]] = {
    ("render", "preset"): ("render", "x264_preset"),
    **{("diffusion", name): ("dit", name) for name in DIT_FIELDS},
    ("diffusion", "sampler"): ("sampling", "sampler"),
    ("diffusion", "sample_steps"): ("sampling", "steps"),
    ("diffusion", "guidance"): ("sampling", "guidance"),
    ("diffusion", "style_guidance"): ("sampling", "style_guidance"),
    ("diffusion", "clip_x0"): ("sampling", "clip_x0"),
}


def upgrade_stored(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored settings dict (a checkpoint's, a run's settings.json) in today's layout: every moved or renamed
    field (``MOVED``) put where it is now, unless the new place already has it; the rest as it was."""
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in stored.items()}
    for (section, name), (new_section, new_name) in MOVED.items():
        old = out.get(section)
        if isinstance(old, dict) and name in old:
            value = old.pop(name)
            target = out.setdefault(new_section, {})
            if isinstance(target, dict):
                target.setdefault(new_name, value)
    return out

# Experiment knobs that were tried and not adopted, and removed: (section, field) -> the value that meant what
# synesthete does today (ANY: every value did, the knob acted only with another one). Stored settings and
# checkpoint configs that hold that value still load; any other value is refused, as is a SYNESTHETE_*
# variable naming one. docs/experiments/ and the model card keep what they measured.
ANY = "any value"
RETIRED: dict[tuple[str, str], Any] = {
    ("diffusion", "noise_correlation"): 0.0,
    ("diffusion", "predicted_context_steps"): 1,
    ("diffusion", "loss_weighting"): "none",
    ("diffusion", "min_snr_gamma"): ANY,
    ("diffusion", "guidance_low"): 0.0,
    ("diffusion", "guidance_high"): 1.0,
    ("diffusion", "guidance_rescale"): 0.0,
    ("diffusion", "context_noise"): 0.0,
}


def retired_problem(section: str, name: str, value: Any) -> str | None:
    """Why ``section.name = value`` of a stored settings dict cannot be honoured (a retired knob at a value other
    than today's behaviour), or None."""
    if (section, name) not in RETIRED:
        return None
    keep = RETIRED[(section, name)]
    if keep is ANY or value == keep:
        return None
    return (f"{section}.{name}={value!r} is a retired experiment (not adopted) that this synesthete no longer "
            f"runs; only {keep!r} is read")


def check_retired(stored: dict[str, Any]) -> None:
    """Raise a ValueError for the first retired knob of a stored settings dict (a checkpoint's) whose value
    asks for something other than today's behaviour."""
    for (section, name) in RETIRED:
        values = stored.get(section)
        if isinstance(values, dict) and name in values:
            problem = retired_problem(section, name, values[name])
            if problem:
                raise ValueError(problem)


def old_variable_problem(key: str) -> str | None:
    """One line for a ``SYNESTHETE_SECTION__FIELD`` variable that names a setting which moved (``MOVED``) or was
    retired (``RETIRED``), or None."""
    parts = key[len("SYNESTHETE_"):].lower().split("__") if key.upper().startswith("SYNESTHETE_") else []
    if len(parts) != 2:
        return None
    if tuple(parts) in MOVED:
        section, name = MOVED[(parts[0], parts[1])]
        how = "renamed" if section == parts[0] else "moved"
        return (f"environment variable {key} names no setting any more ('{parts[0]}.{parts[1]}'): {how} to "
                f"SYNESTHETE_{section.upper()}__{name.upper()}")
    if tuple(parts) in RETIRED:
        return (f"environment variable {key}: {parts[0]}.{parts[1]} was a retired experiment (not adopted) and is "
                "no setting any more: remove it")
    return None
