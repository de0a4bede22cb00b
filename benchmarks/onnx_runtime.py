"""ONNX Runtime against eager PyTorch for the DiT's forward and the VAE's decoder, float32 on the CPU.

Prints JSON. Needs packages that are not dependencies of synesthete; install them beside the environment,
not into it, and run with them on the path::

    uv pip install --target /tmp/ort onnx onnxruntime onnxscript   # then drop numpy, sympy, packaging there
    PYTHONPATH=/tmp/ort uv run python benchmarks/onnx_runtime.py

The DiT is exported as render calls it (``sampling.model_call``): 4 lanes' windows, the audio condition
computed once per window (``embed_audio``), the style, the context mask and the audio guidance scale; the
decoder on 12 latents (render's decode batch). Each is timed eager and under ONNX Runtime (intra-op threads =
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


def compare(name: str, module, inputs: tuple, folder: Path, calls: int, repeats: int) -> dict:
    """Export ``module`` on ``inputs``, then time eager against ONNX Runtime and compare their outputs."""
    import numpy as np
    import onnxruntime as ort
    import torch

    path = folder / f"{name}.onnx"
    names = [f"in{i}" for i in range(len(inputs))]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the exporter reports its progress on stdout
        torch.onnx.export(module, inputs, str(path), input_names=names, dynamo=True)
    export_s = time.perf_counter() - t0
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
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

    from synesthete.checkpoint import load_models
    from synesthete.device import cpu_features
    from synesthete.models.dit import AudioCondition
    from synesthete.settings import load_settings

    settings = load_settings().updated(render={"amp": False})
    models = load_models(settings, settings.paths.checkpoints, "cpu")
    dit, cfg = models.dit, models.dit.config
    lanes = settings.render.lanes
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(lanes, cfg.window, cfg.latent_channels, cfg.latent_height, cfg.latent_width, generator=generator)
    features = torch.rand(lanes, cfg.window + 2 * cfg.audio_context, cfg.audio_features, generator=generator)
    with torch.no_grad():
        audio = dit.embed_audio(features, torch.zeros(lanes, dtype=torch.bool))
    style = torch.zeros(lanes, cfg.num_styles)
    style[:, 0] = 1
    mask = torch.zeros(lanes, cfg.window, dtype=torch.bool)
    mask[:, :2] = True
    t = torch.full((lanes,), 500, dtype=torch.long)
    guidance = torch.full((lanes,), settings.sampling.guidance)

    class Step(nn.Module):
        """The DiT as render calls it, with plain tensor inputs."""

        def __init__(self) -> None:
            super().__init__()
            self.dit = dit

        def forward(self, x, t, vector, tokens, style, mask, guidance):
            return self.dit(x, t, audio=AudioCondition(vector, tokens), style=style,
                            drop_style=torch.zeros_like(mask[:, 0]), context_mask=mask,
                            guidance=guidance if cfg.guidance_embed else None)

    class Decode(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vae = models.vae

        def forward(self, z):
            return self.vae.decode(z)

    result: dict = {"cpu": cpu_features(), "torch": torch.__version__, "path": "float32",
                    "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        result["dit_forward"] = compare("dit", Step().eval(), (x, t, audio.vector, audio.tokens, style, mask,
                                                               guidance), Path(tmp), args.calls, args.repeats)
        z = torch.randn(12, cfg.latent_channels, cfg.latent_height, cfg.latent_width, generator=generator)
        result["vae_decode_12"] = compare("decode", Decode().eval(), (z,), Path(tmp), args.calls, args.repeats)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
