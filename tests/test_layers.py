"""The layers point one way: models/ is usable without server/, and the pipeline without HTTP,
keys, quota or storage."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from models.images import ImageError, ImageErrorKind
from server.pipeline.analysis import AnalysisPipeline
from server.settings import Settings
from tests.conftest import ROOT, encode


def test_models_import_nothing_from_server() -> None:
    code = (
        "import sys, models.registry, models.images, models.options\n"
        "from models.registry import all_models\n"
        "assert len(all_models()) >= 8\n"
        "print(sorted(m for m in sys.modules if m == 'server' or m.startswith('server.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_unknown_model_names_are_refused() -> None:
    from models.registry import UnknownModelError, default_model

    with pytest.raises(UnknownModelError, match="known: "):
        default_model("objects", "yolo", Path("."))
    with pytest.raises(UnknownModelError):
        default_model("captions", None, Path("."))


@pytest.mark.slow
def test_pipeline_analyses_without_http(tmp_path: Path, astronaut: Image.Image) -> None:
    # Fix this thread's torch thread count before the pipeline's pools set theirs: torch gives
    # a thread its count on first use, from whichever thread set one last (runtimes/device.py),
    # and the int8 classifier's scores in later tests depend on it.
    torch.get_num_threads()

    async def scenario() -> tuple[dict, ImageErrorKind]:
        pipeline = AnalysisPipeline(Settings(data_dir=tmp_path / "data"))
        try:
            result = await pipeline.analyze(encode(astronaut), "detect_faces", {})
            with pytest.raises(ImageError) as refused:
                await pipeline.analyze(b"GIF89a not ours", "detect_faces", {})
            return result.data(), refused.value.kind
        finally:
            await pipeline.close()

    data, refused = asyncio.run(scenario())
    assert data["type"] == "detect_faces" and len(data["objects"]) == 1
    assert data["model"]["name"] == "mtcnn" and data["image"]["width"] == astronaut.width
    assert not {"quota", "id", "cached", "elapsed_ms"} & set(data)
    assert refused is ImageErrorKind.UNSUPPORTED_FORMAT


# What each of server/'s layers may import of server/ (its own package always): a layer imports
# only layers below it. "shared" is the top-level modules every layer reaches: settings,
# errors, the catalogue of types. The CLI, at the top, may import everything.
LAYER_IMPORTS: dict[str, set[str]] = {
    "cli": {"http", "collection", "ops", "service", "store", "pipeline", "telemetry", "shared"},
    "http": {"ops", "service", "store", "pipeline", "telemetry", "shared"},
    "collection": {"store", "pipeline", "telemetry", "shared"},
    "ops": {"pipeline", "telemetry", "shared"},
    "service": {"store", "pipeline", "telemetry", "shared"},
    "store": {"telemetry", "shared"},
    "pipeline": {"telemetry", "shared"},
    "telemetry": {"shared"},
    "shared": set(),
}
SHARED_MODULES = {"server", "server.settings", "server.errors", "server.catalog"}


def _layer(module: str) -> str:
    if module in SHARED_MODULES:
        return "shared"
    if module == "server.__main__" or module == "server.cli" or module.startswith("server.cli."):
        return "cli"
    return module.split(".")[1]


def _server_imports(path: Path) -> set[str]:
    """The server modules that a file imports, anywhere in it (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "server":  # from server import X: X may be a package
                found |= {f"server.{alias.name}" for alias in node.names}
            elif node.module.startswith("server."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("server.")}
    return found


def test_server_layers_import_only_the_layers_below() -> None:
    problems = []
    for path in sorted((ROOT / "server").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        layer = _layer(module)
        assert layer in LAYER_IMPORTS, f"{module}: in no layer; add its package to LAYER_IMPORTS"
        for imported in _server_imports(path):
            if imported == "server.__version__":
                continue
            target = _layer(imported)
            if target != layer and target not in LAYER_IMPORTS[layer]:
                problems.append(f"{module} ({layer}) imports {imported} ({target})")
    assert not problems, "\n".join(problems)


def test_http_dialects_import_no_other_dialect() -> None:
    dialects = [p for p in (ROOT / "server" / "http").iterdir() if (p / "__init__.py").exists()]
    problems = []
    for dialect in dialects:
        others = {f"server.http.{d.name}" for d in dialects if d != dialect}
        for path in dialect.rglob("*.py"):
            for imported in _server_imports(path):
                if any(imported == o or imported.startswith(o + ".") for o in others):
                    problems.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not problems, "\n".join(problems)


# A dialect reads its wire format, makes one call of the service, writes its wire format: it
# reaches nothing below the service (no store, pipeline, ops or models).
DIALECT_IMPORTS = (
    "server.service",
    "server.http",  # the shared HTTP helpers (the test above keeps dialects apart)
    "server.errors",
    "server.catalog",
    "server.settings",
    "server.telemetry",
)


def _imports_of(path: Path, package: str) -> set[str]:
    """The modules of ``package`` a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {m for m in found if m == package or m.startswith(package + ".")}


def test_http_dialects_reach_nothing_below_the_service() -> None:
    dialects = [p for p in (ROOT / "server" / "http").iterdir() if (p / "__init__.py").exists()]
    assert {"v2", "deepstack", "compreface"} <= {d.name for d in dialects}
    problems = []
    for dialect in dialects:
        for path in dialect.rglob("*.py"):
            imported = _server_imports(path) | _imports_of(path, "models")
            for module in sorted(imported):
                if not any(module == a or module.startswith(a + ".") for a in DIALECT_IMPORTS):
                    problems.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not problems, "\n".join(problems)


def test_pipeline_loads_no_web_framework_or_database() -> None:
    code = (
        "import sys, server.pipeline.analysis, server.pipeline.batching\n"
        "heavy = ('fastapi', 'starlette', 'sqlalchemy', 'alembic', 'uvicorn')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_every_type_is_declared_once_and_served_by_the_registry() -> None:
    from models.registry import MODELS
    from server.catalog import ALL_TYPES, CACHE_TYPE
    from server.settings import Settings

    assert {cls.type for cls in MODELS} | {CACHE_TYPE} == set(ALL_TYPES)
    settings = Settings()
    for type_ in ALL_TYPES:
        if type_ != CACHE_TYPE:
            assert settings.model_class(type_) is not None, type_
