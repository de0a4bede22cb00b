"""`synesthete config`: the effective settings, as a table, JSON or a .env.example."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from synesthete.cli.app import Quiet, Verbose
from synesthete.cli.options import Preset
from synesthete.cli.settings_merge import build_settings
from synesthete.console import console
from synesthete.settings import env_example as render_env_example


def config(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")] = False,
    env_example: Annotated[
        bool, typer.Option("--env-example", help="Print a .env.example documenting every setting.")
    ] = False,
    preset: Preset = None,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Show the effective settings (defaults < preset < .env < environment)."""
    if env_example:
        sys.stdout.write(render_env_example())
        return
    settings = build_settings(preset)
    data = settings.model_dump(mode="json")
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    rows = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows += [(f"{key}.{sub}", json.dumps(v), f"SYNESTHETE_{key.upper()}__{sub.upper()}")
                     for sub, v in value.items()]
        else:
            rows.append((key, json.dumps(value), f"SYNESTHETE_{key.upper()}"))
    # The env var column is the widest: drop it (its rule is in the caption) when the terminal is narrow.
    names = max(len(r[0]) for r in rows)
    envs = max(len(r[2]) for r in rows)
    console.print(_table(rows, with_env=names + envs + 24 <= console.width))  # borders, padding, room for values


def _table(rows: list[tuple[str, str, str]], with_env: bool) -> Table:
    """The settings table: setting, value and (``with_env``) its env var; without it, the rule in a caption."""
    table = Table(title="Effective settings", title_justify="left")
    table.add_column("setting", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    if with_env:
        table.add_column("env var", style="dim", no_wrap=True)
    else:
        table.caption = "env var of a.b: SYNESTHETE_A__B (e.g. SYNESTHETE_VIDEO__FPS)"
        table.caption_justify = "left"
    for name, value, env in rows:
        table.add_row(name, value, *([env] if with_env else []))
    return table
