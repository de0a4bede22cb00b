"""Small, frozen config dataclasses that build the networks (nanoGPT's ``model_args``, diffusers' config).

A network takes only its config, never the whole ``Settings``. Its checkpoint saves ``config.to_dict()``
beside the weights, and loading rebuilds the network from that dict, so a checkpoint is read without the
settings (or the ``--preset``) that trained it. ``from_settings`` derives a config from the settings of a
new run; it reads a plain settings dict too (``settings.model_dump(mode="json")``), which is what
checkpoints written before configs existed carry.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from synesthete.settings import Settings

C = TypeVar("C", bound="ModelConfig")


def settings_dict(settings: Settings | dict[str, Any]) -> dict[str, Any]:
    """A plain nested dict of ``settings`` (a Settings object, or the dict a checkpoint stores)."""
    return settings.model_dump(mode="json") if isinstance(settings, Settings) else settings


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of the network configs: plain fields only, so they round-trip through ``weights_only`` loads."""

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (what a checkpoint stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Rebuild a config from ``to_dict()``'s output; an unknown field, or a missing one without a default
        (fields added later have defaults that mean what older checkpoints did), is a ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        unknown, missing = sorted(set(data) - names), sorted(required - set(data))
        if unknown or missing:
            raise ValueError(f"{cls.__name__} does not match: unknown {unknown}, missing {missing}")
        return cls(**data)

    def differences(self, other: ModelConfig) -> list[tuple[str, Any, Any]]:
        """(field, this value, other value) for every field that differs."""
        return [
            (f.name, getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]
