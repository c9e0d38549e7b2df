"""The ONNX networks of nsfw and detect_text as torch modules, and the choice of runtime.

A graph is converted once with onnx2torch and kept in the model folder; it is converted
again when the ONNX file's sha256 is no longer the one it was converted from. Each model
then runs its network either on ONNX Runtime or on the torch port, behind one ``run``:
on CUDA always the port (so a GPU needs no onnxruntime-gpu and has one CUDA stack, torch's),
on CPU the runtime measured faster there (scripts/bench_onnx_port.py).
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from models.base import Part, device_name
from models.common import sha256_of
from models.runtimes.device import tensor_to_device
from models.runtimes.onnx import SharedSession

log = logging.getLogger(__name__)

PORTS_FOLDER = "onnx_ports"


class Runtime(StrEnum):
    AUTO = "auto"  # the port on CUDA, the model's measured CPU default on CPU
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"  # the ONNX file read by OpenVINO, float32 (models/runtimes/openvino.py)
    TORCH = "torch"


def choose_runtime(device: torch.device, requested: str | None, cpu_default: Runtime) -> Runtime:
    """The runtime a model uses: the torch port on CUDA whatever was asked (ONNX Runtime's
    CPU build would leave the GPU idle), else the one asked for, else ``cpu_default``."""
    if device.type != "cpu":
        return Runtime.TORCH
    runtime = Runtime(requested or Runtime.AUTO)
    return cpu_default if runtime == Runtime.AUTO else runtime


def network_part(network: str, runtime: Runtime, device: torch.device) -> Part:
    """Where a network runs: ONNX Runtime and OpenVINO only ever run here on the CPU (on
    CUDA, :func:`choose_runtime` picks the port)."""
    if runtime in (Runtime.ONNXRUNTIME, Runtime.OPENVINO):
        return Part(network, runtime.value, "cpu")
    return Part(network, runtime.value, device_name(device))


def _lift_constants(model):  # onnx.ModelProto -> onnx.ModelProto
    """Constant nodes as initializers: Paddle's exports keep every weight in a Constant
    node, and onnx2torch takes a Conv's weights only from initializers."""
    import onnx

    kept = []
    for node in model.graph.node:
        attributes = list(node.attribute)
        if node.op_type == "Constant" and len(attributes) == 1 and attributes[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attributes[0].t)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model


def convert_onnx(source: Path) -> torch.nn.Module:
    """The ONNX graph at ``source`` as an equivalent torch module (a torch.fx GraphModule)."""
    import onnx
    from onnx2torch import convert
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    model = _lift_constants(onnx.load(str(source)))
    try:
        # onnx2torch picks BatchNorm1d/2d by the input's rank; ONNX's own shape inference
        # loses the rank after the recogniser's dynamic Reshape, ORT's symbolic one keeps it.
        model = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:  # open_nsfw's graph trips it, and needs no more than onnx2torch's own
        log.debug("symbolic shape inference failed on %s; converting without", source)
    return convert(model).eval()


def cached_port(source: Path, target: Path) -> torch.nn.Module:
    """The torch port of ``source``, kept in ``target`` and reused while the source file's
    sha256 is the one it was converted from.

    The port is pickled whole (its structure is onnx2torch's modules and torch.fx code, not
    just tensors), so loading it runs pickle: the model folder must be as trusted as the
    server's own code, as it is for every weight file in it.
    """
    source_hash = sha256_of(source)
    if target.is_file():
        try:
            saved = torch.load(target, map_location="cpu", weights_only=False)
        except Exception as exc:  # a file from another onnx2torch or torch: make it again
            log.info("%s could not be read (%s): converting again", target, exc)
        else:
            if isinstance(saved, dict) and saved.get("source_sha256") == source_hash:
                return saved["module"]
            log.info("%s was converted from another file: converting again", target)
    module = convert_onnx(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".tmp")
    torch.save({"source_sha256": source_hash, "module": module}, partial)
    partial.replace(target)  # atomic: a concurrent start never reads half a file
    return module


def onnx_metadata(source: Path) -> dict[str, str]:
    """The model's metadata_props (PP-OCR's recogniser keeps its dictionary there)."""
    import onnx

    return {prop.key: prop.value for prop in onnx.load(str(source)).metadata_props}


def port_path(model_dir: Path, source: Path) -> Path:
    return model_dir / PORTS_FOLDER / f"{source.stem}.pt"


class Network(Protocol):
    """One ONNX network, whichever runtime runs it: a float32 batch in, the graph's first
    output out, both numpy arrays on the host."""

    runtime: Runtime

    def run(self, batch: np.ndarray) -> np.ndarray: ...


class OrtNetwork:
    runtime = Runtime.ONNXRUNTIME

    def __init__(self, source: Path, device: torch.device, threads: int, instances: int):
        self.session = SharedSession(source, device, threads, instances)
        self._input_name = self.session.input_name()

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run({self._input_name: batch})[0]


class OpenVinoOnnxNetwork:
    runtime = Runtime.OPENVINO

    def __init__(self, source: Path, threads: int, instances: int, model_dir: Path):
        from models.runtimes.openvino import OpenVinoNetwork

        self.network = OpenVinoNetwork(source, threads, instances, model_dir)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.network.run(batch)[0]


class TorchNetwork:
    runtime = Runtime.TORCH

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.device = device
        self.module = module.eval().to(device)

    def run(self, batch: np.ndarray) -> np.ndarray:
        inputs = tensor_to_device(torch.from_numpy(batch), self.device)
        with torch.inference_mode():
            output = self.module(inputs)
        if isinstance(output, tuple | list):
            output = output[0]
        return output.float().cpu().numpy()


def load_network(
    source: Path,
    device: torch.device,
    runtime: Runtime,
    model_dir: Path,
    threads: int = 1,
    instances: int = 1,
) -> Network:
    """The network of ``source`` on ``runtime`` (as :func:`choose_runtime` decided)."""
    if runtime == Runtime.TORCH:
        return TorchNetwork(cached_port(source, port_path(model_dir, source)), device)
    if runtime == Runtime.OPENVINO:
        return OpenVinoOnnxNetwork(source, threads, instances, model_dir)
    return OrtNetwork(source, device, threads, instances)
