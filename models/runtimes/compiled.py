"""torch.compile for the networks it was measured to speed up, keeping their outputs.

Compiled at load with one call on an example input, so that no request waits for it; the
generated code is kept in the model folder (TorchInductor's cache), so a restart takes
seconds instead of the first compilation's minute. Where compiling fails (no C++ compiler on
the CPU, for one) the network runs eagerly, as before, and the log says why.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CACHE_FOLDER = "inductor"


def compile_network(
    name: str,
    net: torch.nn.Module,
    example: torch.Tensor,
    model_dir: Path,
    atol: float,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``net`` compiled for calls under ``torch.inference_mode`` with contiguous inputs
    shaped like ``example`` (on the network's device) and the calling thread's torch thread
    count (callers keep to it: another count compiles again); or ``net`` itself where it
    cannot be compiled or where its compiled output on ``example`` is more than ``atol``
    from the network's."""
    if example.device.type == "cpu" and not (shutil.which("c++") or shutil.which("g++")):
        log.warning("%s runs eagerly: torch.compile needs a C++ compiler on the CPU", name)
        return net
    use_cache_folder(model_dir / CACHE_FOLDER)
    started = time.perf_counter()
    try:
        # Fixed shapes: every call sees the example's shape, and a changed one would
        # recompile (taking seconds) rather than fail.
        compiled = torch.compile(net, dynamic=False)
        with torch.inference_mode():
            # An inference tensor, as callers pass under inference mode: a normal tensor
            # would be guarded apart from them, and compiled again at their first call.
            example = example.clone(memory_format=torch.contiguous_format)
            expected = net(example)
            got = compiled(example)
        difference = float((expected - got).abs().max())
        if difference > atol:
            log.warning(
                "%s runs eagerly: its compiled output is %.3g from the network's", name, difference
            )
            return net
    except Exception as exc:  # no compiler, an unsupported op: the eager network still works
        log.warning("%s runs eagerly: torch.compile failed (%s)", name, type(exc).__name__)
        return net
    log.info("%s compiled with torch.compile in %.1f s", name, time.perf_counter() - started)
    return compiled


def use_cache_folder(folder: Path) -> None:
    """Keeps TorchInductor's generated code in ``folder`` (instead of a temporary folder that
    a container loses), unless the operator chose one with TORCHINDUCTOR_CACHE_DIR."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # torch writes its default into the environment when first asked: that one is ours to
    # replace.
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen is None or chosen == default_cache_dir():
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
