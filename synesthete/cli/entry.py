"""The console script's entry point: run the app, and turn user errors and signals into one line and an exit
code (1 for an error, 130 for Ctrl-C, 143 for SIGTERM)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from pydantic import ValidationError

from synesthete import threads
from synesthete.cli.analyze import analyze
from synesthete.cli.app import app, error_line, state
from synesthete.cli.config import config
from synesthete.cli.evaluate import eval_cmd
from synesthete.cli.gen_audio import gen_audio
from synesthete.cli.render import render, styles
from synesthete.cli.train import train_app
from synesthete.console import err_console, set_quiet
from synesthete.errors import SynestheteError, Terminated
from synesthete.settings import validation_message

# The commands, in the order `synesthete --help` lists them (the train group comes last there anyway).
app.command()(config)
app.command("gen-audio")(gen_audio)
app.command()(render)
app.command()(styles)
app.command()(analyze)
app.command("eval")(eval_cmd)
app.add_typer(train_app, name="train")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and turn user errors into one line and exit code 1."""
    threads.prepare_openmp()  # before any command loads torch's OpenMP runtime: only then is the wait policy read
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    state["verbose"] = False
    state.pop("stopped", None)
    set_quiet(False)
    try:
        # Standalone mode: click prints usage errors itself (exit 2); Typer turns Ctrl-C into exit 130.
        app(args=argv)
    except SynestheteError as exc:
        _fail(str(exc), exc)
    except ValidationError as exc:
        _fail("invalid setting: " + validation_message(exc), exc)
    except ValueError as exc:
        if str(exc).startswith("environment variable"):
            _fail(str(exc), exc)
        raise
    except SystemExit as exc:
        if exc.code == 130 and _ctrl_c(exc):
            _stopped("interrupted (Ctrl-C)")
        raise
    except KeyboardInterrupt:
        _stopped("interrupted (Ctrl-C)")
        raise SystemExit(130) from None
    except Terminated:
        _stopped("terminated (SIGTERM)")
        raise SystemExit(143) from None
    finally:
        set_quiet(False)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (kill, timeout, CI cancellation) unwinds like Ctrl-C, so temporary files are removed."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
    raise Terminated


def _ctrl_c(exc: SystemExit) -> bool:
    """True when ``exc`` is Typer's exit 130 for a plain Ctrl-C (KeyboardInterrupt). Training's own stop
    (a KeyboardInterrupt subclass) has said what it did already."""
    seen: BaseException | None = exc
    for _ in range(4):
        seen = seen.__cause__ or seen.__context__ if seen is not None else None
        if type(seen) is KeyboardInterrupt:
            return True
    return False


def _stopped(why: str) -> None:
    """The one line of a command stopped by a signal: what it did (a batch: which songs), if it said."""
    stopped = state.get("stopped")
    error_line(f"{why}: stopped; unfinished files were removed" + (f"; {stopped}" if stopped else ""))


def _fail(message: str, exc: BaseException) -> None:
    # A settings error's traceback would print the offending value (maybe a secret from .env): never show it.
    if state.get("verbose") and not isinstance(exc, ValidationError):
        err_console.print_exception()
    error_line(message)
    raise SystemExit(1) from None
