"""The engine that runs the DiT's forward in render and eval: eager PyTorch, or ONNX Runtime on the CPU.

The DiT is small, and on a CPU its forward is bound by per-op overhead, which ONNX Runtime's fused kernels
cut: 1.5x on the forward of the shipped DiT, float32, with outputs within 3e-6 of eager PyTorch
(``benchmarks/onnx_runtime.py``; docs/rendering.md#the-engine). ``render.engine`` chooses:

* ``auto`` (the default): ONNX Runtime where it helps and is installed (``uv sync --extra onnx``; the
  development environment has it): the network on the CPU in float32. Eager PyTorch everywhere else: on
  CUDA and MPS, on a CPU with native bf16 (the eager bf16 path is faster there), and when the packages are
  missing.
* ``onnxruntime``: ONNX Runtime, or one clear line saying why it cannot run here.
* ``eager``: PyTorch always.

The DiT is exported once per checkpoint file (``torch.onnx.export``, a few seconds) into ``paths.cache``,
named by the checkpoint's SHA-256 and the torch and exporter versions, written atomically; later renders
load that file. ``OnnxDiT`` stands in for the DiT: the sampler's calls (precomputed audio, style, context
and, for a guidance-distilled DiT, the guidance scale) run in the ONNX Runtime session, everything else
(the audio encoder, the rare call without context) in the eager DiT it wraps.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import torch
from torch import nn

from synesthete.errors import ConfigError
from synesthete.files import atomic_path, file_digest
from synesthete.models.dit import AudioCondition

ENGINES = ("auto", "eager", "onnxruntime")
EXPORT_VERSION = 1  # bump when the exported graph's inputs change: older cache files are then not read
OPSET = 17
INSTALL_HINT = "install it with `uv sync --extra onnx` (or `pip install onnx onnxruntime`)"


def missing_packages() -> list[str]:
    """The packages ONNX Runtime export and inference need that are not installed."""
    return [name for name in ("onnxruntime", "onnx") if _find_spec(name) is None]


def _find_spec(name: str) -> object | None:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a module set to None in sys.modules (tests) or a broken install
        return None


def choose(engine: str, device: torch.device, precision: str) -> str:
    """The engine that runs: "onnxruntime" or "eager", for ``render.engine`` on ``device`` at ``precision``
    ("float32" or "bf16", ``device.precision``). ``onnxruntime`` refuses with one line where it cannot run."""
    if engine not in ENGINES:
        raise ConfigError(f"render.engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "eager":
        return "eager"
    fits = device.type == "cpu" and precision == "float32"
    missing = missing_packages()
    if engine == "onnxruntime":
        if device.type != "cpu":
            raise ConfigError(f"render.engine onnxruntime runs on the CPU only, not on {device.type}: "
                              "use auto or eager")
        if precision != "float32":
            raise ConfigError("render.engine onnxruntime runs the float32 path: set render.amp false on a CPU "
                              "with native bf16, or use auto")
        if missing:
            raise ConfigError(f"render.engine onnxruntime needs {' and '.join(missing)}: {INSTALL_HINT}")
        return "onnxruntime"
    return "onnxruntime" if fits and not missing else "eager"


def input_names(dit: nn.Module) -> list[str]:
    """The exported graph's inputs: what the sampler gives the DiT, the guidance scale for a distilled one."""
    names = ["x", "t", "audio_vector", "audio_tokens", "style", "drop_style", "context_mask", "context_t"]
    return [*names, "guidance"] if dit.config.guidance_embed else names


class _Forward(nn.Module):
    """The DiT's forward with plain tensor inputs, in ``input_names`` order (what the exporter traces)."""

    def __init__(self, dit: nn.Module) -> None:
        super().__init__()
        self.dit = dit

    def forward(self, x, t, vector, tokens, style, drop_style, context_mask, context_t, guidance=None):
        return self.dit(x, t, audio=AudioCondition(vector, tokens), style=style, drop_style=drop_style,
                        context_mask=context_mask, context_t=context_t, guidance=guidance)


def example_inputs(dit: nn.Module, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Inputs of ``input_names`` for ``dit`` with ``batch`` rows (the batch axis stays dynamic)."""
    cfg = dit.config
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.window, cfg.latent_channels, cfg.latent_height, cfg.latent_width, generator=generator)
    features = torch.rand(batch, cfg.window + 2 * cfg.audio_context, cfg.audio_features, generator=generator)
    with torch.no_grad():
        audio = dit.embed_audio(features, torch.zeros(batch, dtype=torch.bool))
    style = torch.zeros(batch, cfg.num_styles)
    style[:, 0] = 1
    mask = torch.zeros(batch, cfg.window, dtype=torch.bool)
    mask[:, :2] = True
    inputs = [x, torch.full((batch,), 500, dtype=torch.long), audio.vector, audio.tokens, style,
              torch.zeros(batch, dtype=torch.bool), mask, torch.zeros(batch, dtype=torch.long)]
    if cfg.guidance_embed:
        inputs.append(torch.full((batch,), 2.0))
    return tuple(inputs)


def export(dit: nn.Module, path: Path) -> None:
    """Write ``dit`` (float32, CPU) as an ONNX graph to ``path``, atomically, batch axis dynamic."""
    names = input_names(dit)
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's tracer warnings on shape checks and its deprecation
        torch.onnx.export(_Forward(dit).eval(), example_inputs(dit), str(tmp), input_names=names,
                          output_names=["out"], dynamic_axes={n: {0: "batch"} for n in [*names, "out"]},
                          opset_version=OPSET, dynamo=False)


def graph_path(checkpoint: Path, cache: Path) -> Path:
    """Where the ONNX graph of the DiT in ``checkpoint`` is cached: named by the file's content and the versions
    of torch, onnx and this export. The onnx version is read from the package's metadata: importing onnx takes
    1.4-2 s, which a render that finds its graph in the cache never needs."""
    key = f"{file_digest(checkpoint)[:24]}-torch{torch.__version__}-onnx{version('onnx')}-v{EXPORT_VERSION}"
    return Path(cache) / "onnx" / f"dit-{key.replace('+', '_')}.onnx"


def session_for(dit: nn.Module, checkpoint: Path, cache: Path, say: Callable[[str], None] | None = None) -> OnnxDiT:
    """``OnnxDiT`` of ``dit`` (loaded from ``checkpoint``) on its cached graph, exported first if it is not in
    ``cache``, and again if the cached file does not load (a truncated or foreign file)."""
    path = graph_path(checkpoint, cache)
    threads = torch.get_num_threads()
    if path.exists():
        try:
            return OnnxDiT(dit, path, threads)
        except Exception:  # noqa: BLE001 (any unreadable cache file is made again)
            path.unlink(missing_ok=True)
    if say is not None:
        say(f"exporting {checkpoint.name} for ONNX Runtime (once per checkpoint: a few seconds) into {path.parent}")
    export(dit, path)
    return OnnxDiT(dit, path, threads)


class OnnxDiT(nn.Module):
    """The DiT with its forward in an ONNX Runtime session: a drop-in for ``Models.dit`` (render and eval).

    ``config``, ``embed_audio``, the parameters and every other attribute are the eager DiT's (``.dit``).
    A call with the sampler's inputs (precomputed audio, style, context mask and timestep, and the guidance
    scale exactly when the DiT is guidance-distilled) runs in the session; any other call runs the eager
    DiT."""

    def __init__(self, dit: nn.Module, graph: Path, threads: int) -> None:
        super().__init__()
        import onnxruntime as ort

        self.dit = dit
        self.config = dit.config
        self.names = input_names(dit)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.calls = 0  # forwards the session ran (tests count them)
        self.train(dit.training)  # in eval mode, as load_models builds the DiT

    def __getattr__(self, name: str):
        """Anything else (buffers, submodules, attributes) is the eager DiT's."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get("_modules", {})
            if "dit" not in modules:
                raise
            return getattr(modules["dit"], name)

    def embed_audio(self, features: torch.Tensor, drop_audio: torch.Tensor | None) -> AudioCondition:
        """The eager DiT's audio encoder (once per sample, not per step)."""
        return self.dit.embed_audio(features, drop_audio)

    def forward(self, x: torch.Tensor, t: torch.Tensor, features: torch.Tensor | None = None,
                drop_audio: torch.Tensor | None = None, audio: AudioCondition | None = None,
                style: torch.Tensor | None = None, drop_style: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, context_t: torch.Tensor | None = None,
                guidance: torch.Tensor | None = None) -> torch.Tensor:
        """``DiT.forward``; in the session when the call has the sampler's inputs (see the class)."""
        inputs = [x, t, audio.vector if audio else None, audio.tokens if audio else None, style, drop_style,
                  context_mask, context_t]
        if self.config.guidance_embed:
            inputs.append(guidance)
        covered = (all(v is not None for v in inputs) and (guidance is None or self.config.guidance_embed)
                   and not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32)
        if not covered:
            return self.dit(x, t, features, drop_audio, audio, style, drop_style, context_mask, context_t, guidance)
        feed = {name: value.detach().contiguous().numpy() for name, value in zip(self.names, inputs, strict=True)}
        self.calls += 1
        return torch.from_numpy(self.session.run(None, feed)[0])


def prepare(dit: nn.Module, checkpoint: Path, engine: str, device: torch.device, precision: str, cache: Path,
            say: Callable[[str], None] | None = None) -> tuple[nn.Module, str]:
    """``dit`` (eager, as ``load_models`` built it from ``checkpoint``) in the engine ``render.engine`` picks,
    and that engine's name. Under ``auto`` an export or session that fails falls back to eager with a
    warning (``say``); under ``onnxruntime`` it is an error."""
    chosen = choose(engine, device, precision)
    if chosen == "eager":
        return dit, "eager"
    try:
        return session_for(dit, checkpoint, cache, say), "onnxruntime"
    except Exception as exc:  # noqa: BLE001 (an engine that cannot run here must not stop the render)
        if engine == "onnxruntime":
            raise ConfigError(f"render.engine onnxruntime could not run {checkpoint.name}: {exc}") from exc
        if say is not None:
            say(f"warning: ONNX Runtime could not run {checkpoint.name} ({type(exc).__name__}: {exc}); "
                "the eager engine runs instead (render.engine eager skips the attempt)")
        return dit, "eager"
