"""The thin Typer CLI: parse options, build Settings, call one library function, print a summary.

Domain errors (``SynestheteError``), invalid settings and Ctrl-C become one red line and a non-zero exit at
the boundary (``entry.main``, the console script). Heavy modules (torch models, torchcodec) are imported inside
the commands, after the checks that need none, so that ``synesthete --help`` stays fast and a missing file is
one line at once.

Modules: ``app`` (the Typer app, -v/-q, the one-line output), ``options`` (shared options, their help and the
checks of their values), ``settings_merge`` (the settings of a command, and of ``train --resume``), one module
per command group (``config``, ``gen_audio``, ``train``, ``render`` with ``batch``, ``analyze``, ``evaluate``),
``tables`` (the result tables) and ``entry``.
"""

from synesthete.cli.entry import main

__all__ = ["main"]
