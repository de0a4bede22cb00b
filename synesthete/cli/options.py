"""Options shared by several commands, their help text, and the checks of option values that run before torch
is imported (a missing file or folder is one line at once).

Options that are also settings default to ``None`` ("not given"), so that ``.env`` and ``SYNESTHETE_*``
variables still apply; their help shows the setting's default value instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from synesthete.errors import CheckpointError
from synesthete.files import check_folder, check_not_input, find_music
from synesthete.settings import Settings


# ----------------------------------------------------------------------------------------------- help text
def setting_default(dotted: str) -> Any:
    """The declared default of a setting, e.g. ``"sampling.guidance"`` -> 2.0 (no Settings is built)."""
    section, _, name = dotted.partition(".")
    field = Settings.model_fields[section]
    if name:
        field = field.annotation.model_fields[name]
    return field.get_default(call_default_factory=True)


def with_default(text: str, dotted: str | None = None, shown: Any = None) -> str:
    """``text`` followed by ``[default: ...]``: the setting ``dotted``'s default, or ``shown``."""
    value = shown if dotted is None else setting_default(dotted)
    return f"{text} [dim]\\[default: {value}][/dim]"


# ----------------------------------------------------------------------------------------------- shared options
Preset = Annotated[
    str | None,
    typer.Option("--preset", help=with_default("Model-size preset: tiny (tests), cpu (shipped) or gpu.", "preset")),
]
Device = Annotated[
    str | None,
    typer.Option("--device", help=with_default("auto (MPS, then CUDA, then CPU), cpu, cuda, cuda:N or mps.",
                                               "device")),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
CheckpointDir = Annotated[
    Path | None,
    typer.Option("--checkpoint-dir",
                 help=with_default("Folder with vae.pt and diffusion.pt.", shown="the shipped checkpoints")),
]
Steps = Annotated[
    int | None,
    typer.Option("--steps", help=with_default("Sampler steps.", shown="the Brain's own: the steps a step-distilled "
                                              "Brain learned, else 10")),
]
RenderSeed = Annotated[
    int | None,
    typer.Option("--seed", help=with_default("Noise seed, and the seed of the looks (and of the style 'auto').",
                                             shown="drawn from a hash of the song file; 0 in eval")),
]


# ----------------------------------------------------------------------------------------------- checks
def model_file(path: Path | None, name: str, option: str) -> Path | None:
    """A checkpoint option's file: ``path`` itself, or in a folder its ``name`` (an export such as
    checkpoints/) or its ckpt_latest.pt (a run folder)."""
    if path is None or not Path(path).is_dir():
        return path
    for candidate in (Path(path) / name, Path(path) / "ckpt_latest.pt"):
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"{option} {path} is a folder with neither {name} nor ckpt_latest.pt")


def check_export(export: Path | None) -> None:
    """Fail before training when the --export folder cannot be written (not after hours of training)."""
    if export is not None:
        check_folder(export, "--export")


def refuse_inputs(outputs: tuple[Path | None, ...], inputs: tuple[Path | None, ...]) -> None:
    """Refuse an output that is one of the inputs (same file, through symlinks and hard links)."""
    for out in outputs:
        if out is not None:
            check_not_input(out, inputs)


def music_dirs(music: list[Path] | None) -> list[Path] | None:
    """``--music`` folders, checked before torch is imported (a missing or empty folder is one line at once)."""
    if not music:
        return None
    for folder in music:
        find_music(folder)
    return list(music)
