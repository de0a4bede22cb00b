"""The Typer app, the options every command takes (-v, -q), the CLI's shared state and its one-line output."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperOption

from synesthete import __version__
from synesthete.console import console, err_console, is_quiet, set_quiet
from synesthete.files import one_line

# Typer 0.29 prints "<bool>" as the type of every on/off flag (--overwrite, --help): flags take no value,
# so their help shows none.
_display_type_rich = TyperOption.display_type_rich


def _flag_has_no_type(self: TyperOption, ctx: Any) -> str | None:
    return None if self.is_flag else _display_type_rich(self, ctx)


TyperOption.display_type_rich = _flag_has_no_type  # type: ignore[method-assign]

app = typer.Typer(
    name="synesthete",
    help="Learn to turn music into video: generate data, train the Eye and the Brain, render and score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One invocation's state: "verbose" (-v), and "stopped" (what a batch stopped by a signal did; see entry).
state: dict[str, Any] = {"verbose": False}


# ----------------------------------------------------------------------------------------------- common options
def _set_verbose(value: bool) -> None:
    if value:
        state["verbose"] = True


def _set_quiet(value: bool) -> None:
    if value:
        set_quiet(True)


# Accepted before the subcommand and after it (`synesthete -v render ...`, `synesthete render ... -v`).
Verbose = Annotated[
    bool,
    typer.Option("--verbose", "-v", callback=_set_verbose, expose_value=False, is_eager=True,
                 help="Show full tracebacks for errors."),
]
Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", callback=_set_quiet, expose_value=False, is_eager=True,
                 help="No progress bars or summary tables: errors, warnings and the output asked for only."),
]


def _version(value: bool) -> None:
    if value:
        console.print(f"synesthete {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Synesthete: music in, video out."""


# ----------------------------------------------------------------------------------------------- output
def format_count(n: int) -> str:
    """A parameter count for people: 7,620,000 -> "7.62 M"."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return str(n)


def print_summary(title: str, summary: dict[str, Any]) -> None:
    """Print a key/value summary table (not under --quiet); long values wrap instead of being cut."""
    if is_quiet():
        return
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in summary.items():
        if key == "parameters" and isinstance(value, int):
            value = format_count(value)
        elif isinstance(value, float):
            value = f"{value:.4g}"
        table.add_row(str(key), str(value))
    console.print(table)


def shown(text: str) -> str:
    """``text`` (a file name) as rich prints it literally, on one line."""
    return escape(one_line(text))


def error_line(message: str) -> None:
    """One red error line (control characters in it, such as a newline in a file name, escaped)."""
    err_console.print(f"[red]error:[/red] {shown(message)}", soft_wrap=True)


def wrote(paths: list[Path], as_json: bool) -> None:
    """A "wrote PATH" line per file written: on stderr under --json (stdout holds the JSON alone)."""
    for path in paths:
        (err_console if as_json else console).print(f"wrote {path}")
