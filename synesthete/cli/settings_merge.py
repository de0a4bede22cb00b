"""The settings a command runs with: defaults < preset < .env < environment < the CLI's options, or for
`train --resume` the run's own settings (from its checkpoint) under .env, the environment and the options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic_settings import DotEnvSettingsSource, EnvSettingsSource

from synesthete.errors import CheckpointError, ConfigError
from synesthete.settings import Settings, check_environment, env_file_path, load_settings, upgrade_stored


def build_settings(preset: str | None = None, **overrides: Any) -> Settings:
    """Settings from defaults, preset, .env and environment, then the CLI's overrides (``None`` = not given)."""
    check_environment()
    return load_settings(preset=preset, **overrides)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` laid over it, section by section."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# Not part of a run's settings: where and on what this machine runs it (and the run folder: a resumed run
# keeps writing into the folder it is resumed from unless --run-name says otherwise).
_MACHINE = {"device": None, "paths": None, "train": ("run_name",)}


def stored_settings(stored: dict[str, Any]) -> dict[str, Any]:
    """The settings a checkpoint stores, as today's Settings take them: renamed fields mapped, unknown
    (older) ones dropped, and the machine's own (device, paths, run name) left out."""
    out: dict[str, Any] = {}
    for key, value in upgrade_stored(stored).items():
        field = Settings.model_fields.get(key)
        if field is None or (key in _MACHINE and _MACHINE[key] is None):
            continue
        fields = getattr(field.annotation, "model_fields", None)
        if fields is None or not isinstance(value, dict):
            out[key] = value
            continue
        section = {}
        for sub, subvalue in value.items():
            if sub in fields and sub not in (_MACHINE.get(key) or ()):
                section[sub] = subvalue
        out[key] = section
    return out


def resume_settings(resume: Path, preset: str | None = None, **overrides: Any) -> Settings:
    """The settings of a resumed run: its checkpoint's own, under .env, the environment and the CLI's overrides.

    So `--resume runs/x` needs no `--preset`; a `--preset` other than the run's is an error. The preset of
    the environment is not applied (the run's settings are complete).
    """
    # torch: checkpoint and train.loop import it, so the other commands' start-up does not pay for them
    from synesthete.checkpoint import read_checkpoint
    from synesthete.train.loop import resolve_resume

    check_environment()
    path = resolve_resume(resume)
    stored = read_checkpoint(path).get("settings") or {}
    if not isinstance(stored, dict) or not stored:
        raise CheckpointError(f"{path} stores no settings: it was not written by `synesthete train`")
    base = stored_settings(stored)
    if preset is not None and preset != base.get("preset"):
        raise ConfigError(
            f"{path} was trained with preset '{base.get('preset')}': --resume continues it with its own "
            "settings, so leave out --preset"
        )
    env_file = env_file_path()
    dotenv = DotEnvSettingsSource(Settings, env_file=env_file)() if env_file else {}
    local = _merge(dotenv, EnvSettingsSource(Settings)())  # the environment over the env file
    local.pop("preset", None)
    settings = Settings.model_validate(_merge(base, local))
    return settings.updated(**overrides) if overrides else settings


def train_settings(preset: str | None, resume: Path | None, **overrides: Any) -> Settings:
    """A training command's settings: a new run's (``build_settings``) or a resumed one's (``resume_settings``)."""
    if resume is None:
        return build_settings(preset, **overrides)
    return resume_settings(resume, preset, **overrides)
