"""ONNX Runtime against eager PyTorch for the DiT's forward and the VAE's decoder, float32 on the CPU.

Prints JSON. Needs the onnx extra (``uv sync --extra onnx``; the development environment has it)::

    uv run python benchmarks/onnx_runtime.py

The DiT is exported as render exports it (``engine.export``) and called on render's inputs: 4 lanes' windows,
the audio condition computed once per window (``embed_audio``), the style, the context mask and timestep and
the audio guidance scale; the decoder (not run in ONNX Runtime by render) on 12 latents (render's decode
batch). Each is timed eager and under ONNX Runtime (intra-op threads =
torch's), ``--repeats`` rounds of ``--calls`` calls, alternating, in one process: a ratio taken in one sitting.
The outputs are compared on the same inputs (largest absolute difference, and over the output's scale).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, calls: int) -> float:
    """Milliseconds per call of ``fn`` over ``calls`` calls."""
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1000


def compare(module, inputs: tuple, path: Path, export, calls: int, repeats: int) -> dict:
    """Export ``module`` to ``path`` with ``export(path)``, then time eager against ONNX Runtime on ``inputs``
    (in the graph's input order) and compare their outputs."""
    import numpy as np
    import onnxruntime as ort
    import torch

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the exporter reports its progress on stdout
        export(path)
    export_s = time.perf_counter() - t0
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feed = {n: x.numpy() for n, x in zip(names, inputs, strict=True)}

    def eager():
        with torch.no_grad():
            return module(*inputs)

    def onnx():
        return session.run(None, feed)[0]

    reference, got = eager().numpy(), onnx()
    eager(), onnx()  # warm
    rounds = {"eager_ms": [], "onnxruntime_ms": []}
    for _ in range(repeats):
        rounds["eager_ms"].append(timed(eager, calls))
        rounds["onnxruntime_ms"].append(timed(onnx, calls))
    median = {k: float(np.median(v)) for k, v in rounds.items()}
    diff = float(np.abs(reference - got).max())
    return {
        "export_s": round(export_s, 1),
        "eager_ms_median": round(median["eager_ms"], 2),
        "onnxruntime_ms_median": round(median["onnxruntime_ms"], 2),
        "speedup": round(median["eager_ms"] / median["onnxruntime_ms"], 3),
        "rounds_ms": {k: [round(v, 1) for v in vs] for k, vs in rounds.items()},
        "max_abs_difference": diff,
        "relative_difference": diff / float(np.abs(reference).max()),
    }


def main() -> None:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=10, help="calls per timed round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds, eager and ONNX Runtime alternating")
    args = parser.parse_args()
    from synesthete import threads

    threads.prepare_openmp()
    import torch
    from torch import nn

    from synesthete import engine
    from synesthete.checkpoint import load_models
    from synesthete.device import cpu_features
    from synesthete.settings import load_settings

    settings = load_settings().updated(render={"amp": False, "engine": "eager"})
    models = load_models(settings, settings.paths.checkpoints, "cpu")
    dit, cfg = models.dit, models.dit.config
    inputs = engine.example_inputs(dit, settings.render.lanes)  # one batched sample of render's lanes

    class Decode(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vae = models.vae

        def forward(self, z):
            return self.vae.decode(z)

    def export_decoder(path: Path) -> None:
        torch.onnx.export(Decode().eval(), (z,), str(path), input_names=["z"], dynamo=False)

    generator = torch.Generator().manual_seed(0)
    z = torch.randn(12, cfg.latent_channels, cfg.latent_height, cfg.latent_width, generator=generator)
    result: dict = {"cpu": cpu_features(), "torch": torch.__version__, "path": "float32",
                    "threads": torch.get_num_threads(), "lanes": settings.render.lanes}
    with tempfile.TemporaryDirectory() as tmp:
        result["dit_forward"] = compare(engine._Forward(dit).eval(), inputs, Path(tmp) / "dit.onnx",
                                        lambda path: engine.export(dit, path), args.calls, args.repeats)
        result["vae_decode_12"] = compare(Decode().eval(), (z,), Path(tmp) / "decode.onnx", export_decoder,
                                          args.calls, args.repeats)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
