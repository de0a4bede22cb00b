"""torchcodec, imported once, lazily, and without ``torch._dynamo``.

torchcodec 0.13 calls ``torch._dynamo.disallow_in_graph`` on its ops when it is imported, and that attribute
access imports the whole of TorchDynamo (the compiler front end: thousands of modules), which this project
never uses: it made up most of the first render's start-up (docs/rendering.md, "Speed and memory"). So the first
import here puts a stand-in for ``torch._dynamo`` in ``sys.modules`` whose ``disallow_in_graph`` returns the op
unchanged, imports torchcodec, and removes the stand-in again. The only thing lost is that torch.compile
would not refuse to trace torchcodec's ops, and nothing compiles them. A later ``torch.compile`` (or any use
of ``torch._dynamo``) imports the real module as it would have. When TorchDynamo is already loaded the
import is plain.

Imported lazily (not at module load) so that ``synesthete --help`` stays fast.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def _without_dynamo() -> None:
    """Import torchcodec's decoders and encoders with a stand-in for ``torch._dynamo``."""
    import torch  # noqa: F401  (torch itself first: the stand-in must not be what torch finds)

    stand_in = types.ModuleType("torch._dynamo", "stand-in while torchcodec is imported (synesthete.media.backend)")
    stand_in.disallow_in_graph = lambda fn: fn  # type: ignore[attr-defined]
    sys.modules["torch._dynamo"] = stand_in
    try:
        import torchcodec.decoders  # noqa: F401
        import torchcodec.encoders  # noqa: F401
    finally:
        if sys.modules.get("torch._dynamo") is stand_in:
            del sys.modules["torch._dynamo"]


def torchcodec() -> Any:
    """The ``torchcodec`` package with ``decoders`` and ``encoders`` loaded (imported on first call)."""
    if "torchcodec.encoders" not in sys.modules and "torch._dynamo" not in sys.modules:
        _without_dynamo()
    import torchcodec
    import torchcodec.decoders
    import torchcodec.encoders  # noqa: F401

    return torchcodec
