"""ONNX Runtime sessions for the models that ship as ONNX files: providers and threads."""

from __future__ import annotations

from pathlib import Path

import torch


def create_session(path: Path, device: torch.device, threads: int):
    """A session on CUDA when the device is CUDA and onnxruntime-gpu is installed, else on
    the CPU with ``threads`` intra-op threads (and one inter-op thread, so that several
    models running at once do not oversubscribe the cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle worker threads sleep instead of spinning: spinning threads would take the cores
    # from the decode pool and the other models between calls.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Without ORT's own arena, memory that a batch of 8 needed goes back once it is done
    # (measured: open_nsfw keeps 70 MB less, at the same speed within 3 %).
    options.enable_cpu_mem_arena = False
    providers: list = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    return ort.InferenceSession(str(path), options, providers=providers)
