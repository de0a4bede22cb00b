"""The one Settings object every command shares.

Precedence, lowest first: field defaults < preset (``SYNESTHETE_PRESET`` / ``--preset``) <
``.env`` file < environment (``SYNESTHETE_SECTION__FIELD``) < CLI options.

The env file is ``.env`` in the working directory unless ``SYNESTHETE_ENV_FILE`` names another one; set to
the empty string it means none (the tests do that, so a developer's ``.env`` never leaks into them).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from synesthete.errors import ConfigError
from synesthete.settings.legacy import old_variable_problem
from synesthete.settings.sections import (
    AudioSettings,
    CriticSettings,
    DataSettings,
    DiffusionSettings,
    DiTSettings,
    EvalSettings,
    PathSettings,
    RenderSettings,
    SamplingSettings,
    TrainSettings,
    VAESettings,
    VideoSettings,
)

PresetName = Literal["tiny", "cpu", "gpu"]


# Names the env file Settings reads instead of ./.env; the empty string means none.
ENV_FILE_VARIABLE = "SYNESTHETE_ENV_FILE"


def env_file_path() -> Path | None:
    """The env file Settings reads: ``$SYNESTHETE_ENV_FILE`` if set (empty: none), else ``.env``."""
    value = os.environ.get(ENV_FILE_VARIABLE)
    if value is None:
        return Path(".env")
    return Path(value) if value else None


# Model-size presets: named overrides applied under the environment and the CLI.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "video": {"width": 32, "height": 32},
        "audio": {"clip_seconds": 1.0},
        "vae": {"base_channels": 8, "max_channels": 16, "latent_channels": 4, "batch_size": 8, "max_steps": 40},
        "dit": {"window": 4, "dim": 32, "depth": 2, "heads": 2, "audio_dim": 32, "num_train_timesteps": 100},
        "diffusion": {"batch_size": 4, "max_steps": 40, "latent_stat_clips": 4, "max_context": 2},
        "sampling": {"steps": 4},
        "train": {
            "checkpoint_every": 20, "log_every": 5, "image_every": 20, "eval_every": 1000, "warmup_steps": 0,
            "preview_samples": 4, "clip_pool": 8,
        },
        "eval": {"clips": 2, "clip_seconds": 2.0, "long_seconds": 3.0, "probe_seconds": 2.0, "sheet_frames": 4},
        "critic": {
            "size": 32, "width": 16, "feature_dim": 32, "lr": 3e-3, "batch_size": 32, "max_steps": 40,
            "heldout_clips": 8,
        },
    },
    "cpu": {},
    "gpu": {
        "vae": {"base_channels": 64, "max_channels": 256, "batch_size": 128, "max_steps": 20000},
        "dit": {"dim": 384, "depth": 12, "heads": 6, "audio_dim": 256},
        "diffusion": {"batch_size": 64, "max_steps": 100000},
        "data": {"num_workers": 4},
        "train": {"clip_pool": 256, "fresh_clips": 8},
    },
}

class Settings(BaseSettings):
    """Every knob of Synesthete, in nested sections."""

    model_config = SettingsConfigDict(
        env_prefix="SYNESTHETE_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        dotenv_filtering="only_existing",  # .env keys without the SYNESTHETE_ prefix are not ours: ignore them
        extra="forbid",
        validate_assignment=True,
    )

    preset: PresetName = Field("cpu", description="Model-size preset: tiny (tests), cpu (shipped), gpu (scale).")
    device: str = Field("auto", description="auto (MPS, then CUDA, then CPU), cpu, cuda, cuda:N or mps.")
    audio: AudioSettings = Field(default_factory=AudioSettings)
    video: VideoSettings = Field(default_factory=VideoSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    vae: VAESettings = Field(default_factory=VAESettings)
    dit: DiTSettings = Field(default_factory=DiTSettings)
    diffusion: DiffusionSettings = Field(default_factory=DiffusionSettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    critic: CriticSettings = Field(default_factory=CriticSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    render: RenderSettings = Field(default_factory=RenderSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    paths: PathSettings = Field(default_factory=PathSettings)

    def __init__(self, **values: Any) -> None:
        # The env file is looked up on every construction (not fixed in model_config) so that
        # SYNESTHETE_ENV_FILE can switch it; an explicit _env_file argument still wins.
        values.setdefault("_env_file", env_file_path())
        super().__init__(**values)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """Fill in preset values for every field the caller did not give explicitly."""
        if not isinstance(data, dict):
            return data
        preset = data.get("preset", "cpu")
        overrides = PRESETS.get(preset, {})
        for section, values in overrides.items():
            given = data.get(section)
            if isinstance(given, BaseModel):
                given = given.model_dump(exclude_unset=True)
            merged = dict(values)
            merged.update(given or {})
            data[section] = merged
        return data

    @model_validator(mode="after")
    def _check_shapes(self) -> Settings:
        """Reject shapes the networks or the encoder cannot use."""
        for name in ("width", "height"):
            value = getattr(self.video, name)
            if value % 16:
                raise ValueError(f"video.{name}={value} must be a multiple of 16 (the VAE downsamples 16x)")
        for name in ("width", "height"):
            latent = getattr(self.video, name) // 16
            if latent % self.dit.patch_size:
                raise ValueError(f"dit.patch_size={self.dit.patch_size} must divide the latent {name} {latent}")
        if self.dit.dim % self.dit.heads:
            raise ValueError(f"dit.dim={self.dit.dim} must be divisible by dit.heads")
        if (self.sampling.steps or 0) > self.dit.num_train_timesteps:
            raise ValueError(
                f"sampling.steps={self.sampling.steps} must be at most "
                f"dit.num_train_timesteps={self.dit.num_train_timesteps}"
            )
        return self

    def updated(self, **sections: dict[str, Any]) -> Settings:
        """A copy with some fields changed, e.g. ``s.updated(vae={"lr": 1e-3}, device="cpu")``.

        ``None`` values are ignored, so CLI options that were not given can be passed straight through.
        """
        data = self.model_dump()
        for key, value in sections.items():
            if isinstance(value, dict):
                data[key].update({k: v for k, v in value.items() if v is not None})
            elif value is not None:
                data[key] = value
        return type(self).model_validate(data)

    @property
    def latent_size(self) -> int:
        """Side of the square spatial latent (frame size / 16)."""
        return self.video.width // 16

    @property
    def critic_path(self) -> Path:
        """The style critic checkpoint the picture metrics use."""
        return self.paths.critic if self.paths.critic is not None else Path(self.paths.checkpoints) / "critic.pt"

    @property
    def clip_frames(self) -> int:
        """Video frames in one training clip."""
        return round(self.audio.clip_seconds * self.video.fps)


def validation_message(exc: ValidationError, names: dict[str, str] | None = None) -> str:
    """One line for a pydantic ValidationError: each field (``names`` renames dotted fields, e.g. the API's
    keywords) and what is wrong with it. Never the value: it may be a secret from .env."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__") or "settings"
        parts.append(f"{(names or {}).get(field, field)}: {err.get('msg')}")
    return "; ".join(parts)


def load_settings(preset: str | None = None, **overrides: Any) -> Settings:
    """Build Settings from defaults, preset, .env and environment, then apply CLI overrides.

    Raises pydantic's ValidationError on bad values; the CLI turns that into one line per field.
    """
    for key in sorted({**os.environ, **_dotenv_keys(env_file_path())}):  # a moved or retired name: say so
        problem = old_variable_problem(key)
        if problem:
            raise ConfigError(problem)
    kwargs: dict[str, Any] = {}
    if preset is not None:
        kwargs["preset"] = preset
    try:
        settings = Settings(**kwargs)
    except SettingsError as exc:  # its message names the field and the source, never the value
        raise ConfigError(f"invalid setting: {exc} (a whole section must be a JSON object)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{env_file_path()} is not valid UTF-8 text: fix or remove it") from None
    if overrides:
        settings = settings.updated(**overrides)
    return settings


def _dotenv_keys(env_file: str | Path | None) -> dict[str, str]:
    """The ``SYNESTHETE_*`` keys of ``env_file`` (values dropped); a ConfigError when it is not UTF-8."""
    if env_file is None or not Path(env_file).is_file():
        return {}
    try:
        text = Path(env_file).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{env_file} is not valid UTF-8 text (byte {exc.start}): fix or remove it") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {env_file}: {exc.strerror or exc}") from None
    keys = dotenv_values(stream=io.StringIO(text))
    return {key: "" for key in keys if key.upper().startswith("SYNESTHETE_")}


def check_environment(environ: dict[str, str] | None = None, env_file: str | Path | None | Any = ...) -> None:
    """Fail on a ``SYNESTHETE_*`` variable (environment or env file) that names no setting.

    pydantic-settings ignores those; keys without the prefix are someone else's and are never looked at.
    Messages name the key, never its value. ``env_file`` defaults to :func:`env_file_path` (``.env``).
    """
    environ = dict(os.environ if environ is None else environ)
    environ.update(_dotenv_keys(env_file_path() if env_file is ... else env_file))
    sections = {name: field.annotation for name, field in Settings.model_fields.items()}
    for key in sorted(environ):
        if not key.upper().startswith("SYNESTHETE_") or key.upper() == ENV_FILE_VARIABLE:
            continue
        parts = key[len("SYNESTHETE_"):].lower().split("__")
        head = parts[0]
        if head not in sections:
            raise ValueError(f"environment variable {key} names no setting ('{head}' is not a setting or section)")
        annotation = sections[head]
        if len(parts) > 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                raise ValueError(f"environment variable {key}: '{head}' has no fields")
            old = old_variable_problem(key)
            if old:
                raise ValueError(old)
            if len(parts) != 2 or parts[1] not in annotation.model_fields:
                raise ValueError(f"environment variable {key} names no setting ('{head}.{'.'.join(parts[1:])}')")


def env_example() -> str:
    """The text of ``.env.example``: every setting as ``SYNESTHETE_...=default`` with its description."""
    lines = [
        "# Synesthete settings. Copy to .env (or export) and uncomment what you change.",
        "# Precedence: defaults < preset < .env < environment < command-line options.",
        "# Regenerate with: uv run synesthete config --env-example > .env.example",
        "",
    ]
    defaults = Settings.model_construct()
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines.append(f"# --- {name}: {(annotation.__doc__ or '').strip()}")
            section = annotation.model_construct()  # the declared defaults, before validators resolve any
            for sub, subfield in annotation.model_fields.items():
                value = getattr(section, sub)
                if value is None:
                    text = ""
                else:
                    text = json.dumps(value, default=str) if not isinstance(value, str | Path) else str(value)
                lines.append(f"# {subfield.description}")
                lines.append(f"# SYNESTHETE_{name.upper()}__{sub.upper()}={text}")
            lines.append("")
        else:
            value = getattr(defaults, name, field.default)
            lines.append(f"# {field.description}")
            lines.append(f"# SYNESTHETE_{name.upper()}={value}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
