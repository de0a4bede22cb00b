"""Small, frozen config dataclasses that build the networks (nanoGPT's ``model_args``, diffusers' config).

A network takes only its config, never the whole ``Settings``. Its checkpoint saves ``config.to_dict()``
beside the weights, and loading rebuilds the network from that dict, so a checkpoint is read without the
settings (or the ``--preset``) that trained it. ``from_settings`` derives a config from the settings of a
new run; it reads a plain settings dict too (``settings.model_dump(mode="json")``), which is what
checkpoints written before configs existed carry.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, TypeVar

from synesthete.errors import ConfigError
from synesthete.files import shorten
from synesthete.settings import Settings, retired_problem, upgrade_stored

C = TypeVar("C", bound="ModelConfig")


class ConfigBoundsError(ConfigError, ValueError):
    """A config field of the wrong type, sign or size: a ConfigError (one line at the CLI) from settings, and
    a ValueError that loading a checkpoint turns into a CheckpointError naming the file."""


class RetiredFieldError(ConfigError, ValueError):
    """A stored config asks for a retired experiment (``ModelConfig.RETIRED``) at a value other than today's
    behaviour: loading a checkpoint turns it into a CheckpointError naming the file."""


# A field's rule in ``ModelConfig.BOUNDS``: (int, low, high), (float, low, high), bool, or a tuple of the strings
# it may be. The bounds are far above every preset (gpu: dim 384, depth 12) and keep a tampered checkpoint from
# asking for a network that fills the memory before its weights are even compared (``checkpoint.build_model``).
Rule = Any


def settings_dict(settings: Settings | dict[str, Any]) -> dict[str, Any]:
    """A plain nested dict of ``settings`` (a Settings object, or the dict a checkpoint stores, in today's layout)."""
    return settings.model_dump(mode="json") if isinstance(settings, Settings) else upgrade_stored(settings)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of the network configs: plain fields only, so they round-trip through ``weights_only`` loads.

    Every field is checked when a config is made (``BOUNDS``: type, sign, a sane bound), from settings or from a
    checkpoint, before any network is built from it."""

    BOUNDS: ClassVar[dict[str, Rule]] = {}
    # Fields removed with the experiment they served: name -> its setting in ``settings.RETIRED``, which says the
    # value that meant what the network does today. A stored config holding that value still loads.
    RETIRED: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise a ConfigBoundsError naming the first field whose type or value ``BOUNDS`` does not allow."""
        for f in dataclasses.fields(self):
            value, rule = getattr(self, f.name), self.BOUNDS.get(f.name)
            if rule is None:
                continue
            shown = f"{type(self).__name__}.{f.name}={shorten(repr(value), 40)}"
            if rule is bool:
                if not isinstance(value, bool):
                    raise ConfigBoundsError(f"{shown}: must be true or false")
            elif isinstance(rule[0], str):
                if value not in rule:
                    raise ConfigBoundsError(f"{shown}: must be one of {', '.join(rule)}")
            else:
                kind, low, high = rule
                number = isinstance(value, int) if kind is int else isinstance(value, int | float)
                if isinstance(value, bool) or not number or not math.isfinite(value):
                    raise ConfigBoundsError(f"{shown}: must be {'an integer' if kind is int else 'a finite number'}")
                if not low <= value <= high:
                    raise ConfigBoundsError(f"{shown}: must be in {low}..{high}")

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (what a checkpoint stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Rebuild a config from ``to_dict()``'s output; an unknown field, or a missing one without a default
        (fields added later have defaults that mean what older checkpoints did), is a ValueError."""
        data = cls.without_retired(data)
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        unknown, missing = sorted(set(data) - names), sorted(required - set(data))
        if unknown or missing:
            raise ValueError(f"{cls.__name__} does not match: unknown {unknown}, missing {missing}")
        return cls(**data)

    @classmethod
    def without_retired(cls, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` without its retired fields (``RETIRED``); a RetiredFieldError if one asks for anything other
        than today's behaviour."""
        for name, setting in cls.RETIRED.items():
            if name in data:
                section, field = setting.split(".")
                problem = retired_problem(section, field, data[name])
                if problem:
                    raise RetiredFieldError(problem)
        return {k: v for k, v in data.items() if k not in cls.RETIRED}

    def differences(self, other: ModelConfig) -> list[tuple[str, Any, Any]]:
        """(field, this value, other value) for every field that differs."""
        return [
            (f.name, getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]
