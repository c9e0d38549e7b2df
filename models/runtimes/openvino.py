"""OpenVINO on the CPU: networks compiled in float32, their threads within the call's budget,
and torch networks converted once into the model folder as OpenVINO IR.

Three settings decide what a compiled network computes and how fast (docs/performance.md):

- ``INFERENCE_PRECISION_HINT=f32``: on a CPU with avx512_bf16 OpenVINO otherwise picks
  bfloat16 by itself, and answers move (SSD scores by up to 5.7 points, MTCNN boxes by up to
  4.7 px);
- threads belong to each compiled network and are shared by its streams; a call runs on one
  stream. So each network is compiled twice, like ONNX Runtime's sessions
  (models/runtimes/onnx.py): a wide one (one stream, every thread) for a call that runs
  alone, a narrow one (a stream per call that may run side by side, one thread each) for
  calls beside others;
- no pinning of threads to cores: the cores are shared with torch's OpenMP team and the
  decode pool.

Compiled networks are cached in the model folder too (OpenVINO's CACHE_DIR): a later start
compiles PP-OCR's detector and recogniser in about a third of the time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from models.common import conversion_lock

log = logging.getLogger(__name__)

IR_FOLDER = "openvino"
CACHE_FOLDER = "cache"  # inside IR_FOLDER


_bridge_lock = threading.Lock()


@cache
def _numpy_bridge() -> None:
    import openvino as ov

    ov.Tensor(np.zeros(1, np.float32)).data  # noqa: B018


def prepare_numpy_bridge() -> None:
    """Makes pybind11's numpy bridge in OpenVINO, once per process. It is otherwise made when
    the first array crosses it (a request's ``tensor.data``), and two threads making that
    first crossing together deadlock: one waits for the GIL inside a C++ static's
    initialisation, the other holds the GIL and waits for that static."""
    with _bridge_lock:
        _numpy_bridge()


@cache
def core() -> Any:
    import openvino as ov

    prepare_numpy_bridge()  # before any network exists, so before any call
    return ov.Core()


def openvino_version() -> str:
    import openvino as ov

    return ov.get_version()


def cpu_config(threads: int, streams: int, model_dir: Path | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": "f32",
        "INFERENCE_NUM_THREADS": max(1, threads),
        "NUM_STREAMS": max(1, streams),
        "ENABLE_CPU_PINNING": False,
    }
    if model_dir is not None:
        config["CACHE_DIR"] = str(Path(model_dir) / IR_FOLDER / CACHE_FOLDER)
    return config


class _Compiled:
    """One compiled network and its infer requests (a request serves one call at a time)."""

    def __init__(self, model: Any, threads: int, streams: int, model_dir: Path | None):
        config = cpu_config(threads, streams, model_dir)
        if model_dir is None:
            self.compiled = core().compile_model(model, "CPU", config)
        else:
            # OpenVINO maps its cached blobs: a blob another process is writing at that moment
            # kills the reader with SIGBUS (servers started together on one model folder). One
            # compile at a time writes or reads the cache.
            with conversion_lock(Path(config["CACHE_DIR"])):
                self.compiled = core().compile_model(model, "CPU", config)
        self._free: list[Any] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def request(self) -> Iterator[Any]:
        with self._lock:
            request = self._free.pop() if self._free else self.compiled.create_infer_request()
        try:
            yield request
        finally:
            with self._lock:
                self._free.append(request)


class OpenVinoNetwork:
    """A network on OpenVINO's CPU plugin in float32: numpy arrays in, numpy arrays out (every
    output, in the graph's order). Takes calls from several threads at once."""

    runtime = "openvino"

    def __init__(
        self, model: Any, threads: int, instances: int = 1, model_dir: Path | None = None
    ):
        """``model``: an ``openvino.Model`` or the path of a file OpenVINO reads (IR, ONNX);
        ``threads``: those of a call alone; ``instances``: calls that may run side by side;
        ``model_dir``: the model folder, where compiled networks are cached."""
        if isinstance(model, str | Path):
            model = core().read_model(str(model))
        self.threads = max(1, threads)
        self.wide = _Compiled(model, self.threads, 1, model_dir)
        streams = min(max(1, instances), self.threads)
        self.narrow = (
            self.wide if streams == 1 else _Compiled(model, self.threads, streams, model_dir)
        )
        self._running = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _pick(self, share: int | None) -> Iterator[_Compiled]:
        with self._lock:
            self._running += 1
            alone = self._running == 1 and (share is None or share >= self.threads)
        try:
            yield self.wide if alone else self.narrow
        finally:
            with self._lock:
                self._running -= 1

    def run(self, *inputs: np.ndarray, share: int | None = None) -> list[np.ndarray]:
        """The outputs for ``inputs`` (in the graph's input order). ``share``: the threads this
        call may use (a torch call's share of the cores, server/pipeline/torch_calls.py); the
        wide network only when it has them all and no other call of this network runs."""
        with self._pick(share) as compiled, compiled.request() as request:
            request.infer({index: array for index, array in enumerate(inputs)})
            return [
                np.array(request.get_output_tensor(index).data, copy=True)
                for index in range(len(compiled.compiled.outputs))
            ]


def ir_paths(model_dir: Path, name: str) -> tuple[Path, Path, Path]:
    """The IR's graph (.xml), weights (.bin) and the note of what it was converted from."""
    folder = Path(model_dir) / IR_FOLDER
    return folder / f"{name}.xml", folder / f"{name}.bin", folder / f"{name}.json"


def cached_ir(
    model_dir: Path,
    name: str,
    source_key: str,
    make: Callable[[], Any],
) -> Any:
    """The OpenVINO model converted by ``make()``, kept in the model folder as IR (float32
    weights, not OpenVINO's default fp16 compression) and reused while ``source_key`` (the
    source file's sha256, say) and OpenVINO's version are those it was converted with."""
    import openvino as ov

    xml, weights, note = ir_paths(model_dir, name)
    expected = {"source": source_key, "openvino": openvino_version()}
    # One process converts; servers started together on this folder then read its IR.
    with conversion_lock(xml):
        if xml.is_file() and weights.is_file() and note.is_file():
            try:
                if json.loads(note.read_text()) == expected:
                    return core().read_model(str(xml))
            except (OSError, ValueError, RuntimeError) as exc:
                log.info("%s could not be read (%s): converting again", xml, exc)
            else:
                log.info("%s was converted from another file or OpenVINO: converting again", xml)
        started = time.perf_counter()
        model = make()
        note.unlink(missing_ok=True)  # no note: a half-written IR is never taken for a whole one
        partial = xml.with_name(f"{name}.tmp.xml")
        ov.save_model(model, str(partial), compress_to_fp16=False)
        partial.with_suffix(".bin").replace(weights)
        partial.replace(xml)
        note.write_text(json.dumps(expected))
        log.info(
            "converted %s into %s in %.1f s (once: later loads read it)",
            name, xml, time.perf_counter() - started,
        )
        return core().read_model(str(xml))


def convert_torch(
    module: Any, example: Any, dynamic: Sequence[Sequence[int]] = ()
) -> Any:
    """An OpenVINO model of a torch module, traced on ``example`` (a tensor or a tuple of
    them) and exported to ONNX in memory, which OpenVINO reads. ``dynamic``: per input, the
    dimensions left free, e.g. the batch. (OpenVINO's own ``convert_model`` of a torch module
    traces too, and checks its trace by running it again: 4x slower for SSD, 25 s against 6.)"""
    import io
    import warnings

    import torch

    examples = example if isinstance(example, tuple) else (example,)
    names = [f"input_{index}" for index in range(len(examples))]
    free = {
        names[index]: {dimension: f"input_{index}_{dimension}" for dimension in dimensions}
        for index, dimensions in enumerate(dynamic)
    }
    exported = io.BytesIO()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # Tracing warns of shapes read as Python numbers (TF "SAME" padding): each traced
        # size is fixed, and the dimensions named free stay free.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), examples, exported, dynamo=False, input_names=names,
            dynamic_axes=free,
        )  # fmt: skip
    return core().read_model(exported.getvalue(), b"")
