"""Styles: which visualizer families a picture is drawn from, as the DiT's global condition.

A style is a set of visualizer families (the entries of ``visual.VISUALIZERS``): one family such as
``pulse``, or a ``+``-joined composition such as ``spectrum+kaleido``. The network sees it as
a multi-hot vector [S] over ``families()`` (in registry order). A training clip's style is the set of
families in its visual spec, so composed clips teach compositions and single clips teach one family.
"""

from __future__ import annotations

import random

import torch

from synesthete.errors import InputError
from synesthete.files import shorten

AUTO = "auto"
LIST = "list"


def families() -> list[str]:
    """Every visualizer family, in registry order (the order of the multi-hot style vector)."""
    from synesthete.visual import VISUALIZERS  # start-up: the visualizers are a heavy import models/ need not pay

    return list(VISUALIZERS)


def describe() -> dict[str, str]:
    """One-line description of each family."""
    from synesthete.visual import VISUALIZERS  # start-up: as in families()

    return {name: vis.description for name, vis in VISUALIZERS.items()}


def parse_style(name: str) -> list[str]:
    """``"spectrum+kaleido"`` -> ``["spectrum", "kaleido"]`` (registry order, no repeats); unknown -> InputError."""
    valid = families()
    parts = [p.strip().lower() for p in str(name).split("+")]
    use = (f"use one of {', '.join(valid)}, a '+'-joined composition of them, or '{AUTO}' ('synesthete styles' "
           "describes them)")
    if not all(parts):
        raise InputError(f"unknown style {shorten(repr(str(name)))}: it has no family name before or after a "
                         f"'+'; {use}")
    unknown = [p for p in parts if p not in valid]
    if unknown:
        shown = ", ".join(shorten(repr(p)) for p in unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3
                                                                   else "")
        raise InputError(f"unknown style {shown}: {use}")
    return [f for f in valid if f in parts]


def style_name(names: list[str]) -> str:
    """The canonical ``+``-joined name of a set of families."""
    chosen = set(names)
    return "+".join(f for f in families() if f in chosen)


def style_vector(names: list[str]) -> torch.Tensor:
    """Multi-hot float vector [S] of a set of families."""
    valid = families()
    vec = torch.zeros(len(valid))
    for name in names:
        vec[valid.index(name)] = 1.0
    return vec


def clip_style(meta: dict) -> list[str]:
    """The families of a data-engine clip (its ``meta["visual"]`` spec)."""
    return [layer["name"] for layer in meta["visual"]["layers"]]


def resolve_style(name: str, seed: int) -> list[str]:
    """``auto`` draws one family from ``seed`` (the render seed); anything else is parsed."""
    if str(name).strip().lower() == AUTO:
        return [random.Random(f"synesthete-style:{seed}").choice(families())]
    return parse_style(name)


def section_styles(name: str, seed: int, labels: list[str]) -> dict[str, list[str]]:
    """The style of each kind of section (``labels``, A, B, ...: letters of ``audio.analysis``). A named style
    holds for all. ``auto`` gives A what it gives the whole song (``resolve_style``) and each further letter
    the next family of an order drawn from ``seed``, so that sections of different kinds differ in family as
    long as there are families to go round, and a kind that comes back gets its family again."""
    if str(name).strip().lower() != AUTO:
        fixed = parse_style(name)
        return {label: fixed for label in labels}
    first = resolve_style(AUTO, seed)[0]
    others = [f for f in families() if f != first]
    random.Random(f"synesthete-style:{seed}:sections").shuffle(others)
    order = [first, *others]
    return {label: [order[i % len(order)]] for i, label in enumerate(sorted(set(labels), key=_label_key))}


def _label_key(label: str) -> tuple[int, str]:
    """Letters in the analysis's order: A..Z, then AA, AB, ..."""
    return len(label), label
