"""What `pip install` of the project (no extras) brings: the serving dependencies only, with
one OpenCV build, walked through the installed packages' own metadata. The install itself is
scripts/install-runtime.sh (the Docker images and `make serve` run it)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

from packaging.requirements import Requirement

from tests.conftest import ROOT

# matplotlib is no test tool: `imagerecognize evaluate` draws its curves with it.
TEST_TOOLS = {"pytest", "ruff", "scikit-learn", "httpx"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure() -> set[str]:
    """Every distribution that the project's dependencies pull, recursively (no extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pending = [Requirement(spec) for spec in project["dependencies"]]
    pending.append(Requirement("rapidocr-onnxruntime"))  # by install-runtime.sh, no deps
    no_deps = {"rapidocr-onnxruntime"}
    found: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = canonical(requirement.name)
        if name in found:
            continue
        found.add(name)
        if name in no_deps:
            continue
        for spec in metadata.requires(requirement.name) or []:
            child = Requirement(spec)
            wanted = sorted(requirement.extras) or [""]
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in wanted):
                pending.append(child)
    return found


def test_runtime_install_has_no_test_tools_and_one_opencv() -> None:
    closure = runtime_closure()
    assert not closure & TEST_TOOLS
    assert "opencv-python-headless" in closure and "opencv-python" not in closure
    assert {"alembic", "torch", "easyocr", "uvicorn", "rapidocr-onnxruntime"} <= closure
    # The CPU runtimes serve: OpenVINO, and LiteRT for the objects classifier's .tflite.
    assert {"openvino", "ai-edge-litert"} <= closure


def test_install_script_keeps_rapidocr_from_pulling_opencv_python() -> None:
    script = (ROOT / "scripts" / "install-runtime.sh").read_text()
    assert '--no-deps "rapidocr-onnxruntime==' in script
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any("rapidocr" in spec for spec in project["dependencies"])
    assert any("psycopg" in spec for spec in project["optional-dependencies"]["test"])
