"""All configuration, read once from environment variables prefixed ``IMAGERECOGNIZE_``."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.options import FaceGallery, FacesOptions, ModelOptions, OnnxOptions
from models.types import ANALYSIS_TYPES, API_TYPES

if TYPE_CHECKING:
    from models.base import Recognizer


def _default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def _default_decode_memory_mb() -> int:
    """A quarter of physical memory, at most 1 GiB: room for two of the largest RGBA images
    decoding at once."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1024
    return max(64, min(1024, physical // 4 // (1024 * 1024)))


class Settings(BaseSettings):
    """Server settings. Every field can be set as ``IMAGERECOGNIZE_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(env_prefix="IMAGERECOGNIZE_", extra="ignore")

    data_dir: Path = Field(
        Path("./data"),
        description="Folder for the SQLite database and other server state.",
    )
    database_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL of the database holding keys, quota and stored results, e.g. "
            "postgresql+psycopg://user:pass@host/db. Default: SQLite file in data_dir."
        ),
    )
    model_dir: Path | None = Field(
        None,
        description="Folder of fetched and converted model weights. Default: data_dir/models.",
    )
    device: str | None = Field(
        None,
        description="Torch device for inference ('cpu', 'cuda', 'cuda:1'). Default: CUDA if "
        "present, else CPU.",
    )
    require_gpu: bool = Field(
        False,
        description="Refuse to start (a one-line reason, non-zero exit) unless every served "
        "model computes on a CUDA device: no CUDA, a DEVICE other than CUDA, or a model "
        "running on the CPU (ONNX Runtime or dlib, chosen by ONNX_CPU_RUNTIME or "
        "CELEBRITIES_DESCRIPTOR_RUNTIME) all stop it. `imagerecognize models list` shows "
        "where each model runs.",
    )
    half_precision: dict[Literal[API_TYPES], Literal["fp16", "bf16"]] = Field(  # type: ignore[valid-type]
        {},
        description='Per type, as JSON (`{"nsfw": "fp16"}`): run that model\'s batches under '
        "torch autocast to fp16 or bf16. Only on CUDA (ignored on the CPU, where results stay "
        "exactly float32); off for every type until measured within the models' tolerances "
        "on the device (docs/performance.md).",
    )
    max_upload_bytes: int = Field(
        50 * 1024 * 1024,
        description="Largest accepted image file in bytes; larger uploads get 413 while "
        "streaming, before the rest of the body is read.",
    )
    max_image_pixels: int = Field(
        100_000_000,
        description="Largest accepted image in pixels (width x height), checked from the "
        "header before decoding, against decompression bombs (413).",
    )
    max_header_bytes: int = Field(
        64 * 1024,
        description="Largest request line and headers together, in bytes; more is answered "
        "431 and the connection closed.",
    )
    header_timeout_s: float = Field(
        10.0,
        description="Longest time from a connection (or the first byte of its next request) "
        "to the end of the request's headers; slower clients get 408 and are disconnected.",
    )
    body_timeout_s: float = Field(
        30.0,
        description="Longest pause while a request's body arrives (from the end of its headers, "
        "then between its bytes); a client that stops sending gets 408 and is disconnected, and "
        "nothing it sent is kept.",
    )
    store_results: bool = Field(
        True,
        description="Store each analysis' result (never the image) for type=cache and for "
        "answering identical requests. false: nothing is stored, type=cache answers an "
        "empty list with `storing: false`, and `data.id` is null (docs/privacy.md). The "
        "gallery is not affected.",
    )
    result_retention_days: float = Field(
        30.0,
        gt=0,
        description="How long stored results are kept: older ones are neither listed nor "
        "reused, and the server deletes them (at start and every "
        "RESULT_PURGE_INTERVAL_S). `imagerecognize results purge` deletes sooner.",
    )
    result_purge_interval_s: float = Field(
        3600.0,
        gt=0,
        description="How often a running server deletes the results older than "
        "RESULT_RETENTION_DAYS.",
    )
    cors_allow_origins: list[str] = Field(
        ["*"],
        description="Origins whose pages may call the API from a browser, as JSON "
        '(`["https://shop.example"]`); `["*"]`: any origin; `[]`: none (cross-origin calls '
        "are refused with 403; the server's own page at / still works). Never with cookies.",
    )
    preload: bool = Field(
        True,
        description="Prepare every served model before the server listens: its one-time "
        "conversions into the model folder, the objects classifier's torch.compile, its load "
        "and one warm-up batch, a log line per model; so the first request of each type "
        "answers as fast as the next. false: listen at once and load each model on its "
        "type's first request (which then waits for it; GET /readyz answers 503 until every "
        "model is loaded and warmed).",
    )
    max_batch_size: int | None = Field(
        None,
        description="Largest number of images one model call takes (dynamic batching), for "
        "every model. Default: each model's own: on CPU 4 (measured best on 2 cores; "
        "detect_text and nsfw 1, whose calls run side by side instead), on CUDA 16.",
    )
    max_batch_sizes: dict[str, int] = Field(
        {},
        description='Per type, as JSON (`{"objects": 8}`); wins over MAX_BATCH_SIZE.',
    )
    max_wait_ms: float = Field(
        5.0,
        description="How long a model's batcher waits after the first queued image for more "
        "to join its batch (only while more requests for it are being decoded).",
    )
    max_wait_ms_by_type: dict[str, float] = Field(
        {},
        description='Per type, as JSON (`{"nsfw": 10}`); wins over MAX_WAIT_MS.',
    )
    queue_size: int = Field(
        64,
        description="Bound of each model's queue; when full, requests get 503 with Retry-After.",
    )
    request_timeout_s: float = Field(
        60.0,
        description="Longest a request waits for its model result before answering 503.",
    )
    torch_threads: int = Field(
        default_factory=_default_threads,
        description="Intra-op threads for torch on CPU. Default: the cores this process may use.",
    )
    torch_calls: int | None = Field(
        None,
        ge=1,
        description="Torch model calls (batches) that run at once, sharing TORCH_THREADS: a "
        "call that starts alone uses all of them, calls side by side divide them. Default: "
        "the cores on CPU (single-core calls side by side use the cores better than one "
        "split call), 1 on CUDA.",
    )
    compile: bool = Field(
        True,
        description="Compile, with torch.compile at load, the networks measured to gain "
        "from it with unchanged outputs: on CPU the objects classifier's torch port (about "
        "2.5x faster), which runs only with CPU_RUNTIME=torch (else LiteRT runs the classifier "
        "and nothing is compiled). Takes about a minute on 2 cores the first time, seconds "
        "later (the generated code is kept in MODEL_DIR/inductor); needs a C++ compiler, else "
        "they run uncompiled.",
    )
    cpu_runtime: Literal["auto", "torch"] = Field(
        "auto",
        description="What runs the networks on CPU. auto: each on the runtime measured "
        "fastest there with the same answers: OpenVINO in float32 (objects' SSD, MTCNN, dlib's "
        "descriptor, PP-OCRv4), LiteRT (objects' classifier, the .tflite file itself), ONNX "
        "Runtime (open_nsfw); the conversions are made once into MODEL_DIR/openvino. torch: "
        "no OpenVINO and no LiteRT, as before they came: torch, and ONNX Runtime for the ONNX "
        "files (for comparison, or if a runtime misbehaves). ONNX_CPU_RUNTIME and "
        "CELEBRITIES_DESCRIPTOR_RUNTIME, when set, decide for their networks. On CUDA torch "
        "always runs.",
    )
    onnx_threads: int = Field(
        default_factory=_default_threads,
        description="Intra-op threads of an ONNX Runtime model's call on CPU when it runs alone.",
    )
    onnx_instances: int = Field(
        default_factory=_default_threads,
        description="Batches of an ONNX Runtime model (nsfw, detect_text) that run at once; "
        "while several do, each uses ONNX_THREADS / ONNX_INSTANCES threads (on CPU, "
        "single-threaded calls side by side use the cores better than one split call).",
    )
    onnx_cpu_runtime: Literal["auto", "onnxruntime", "openvino", "torch"] = Field(
        "auto",
        description="What runs the ONNX networks of nsfw and detect_text (PP-OCRv4) on CPU: "
        "onnxruntime, openvino (float32), torch (their torch ports, converted once into "
        "MODEL_DIR/onnx_ports and again when the ONNX file changes), or auto: the runtime "
        "measured fastest on CPU, OpenVINO for PP-OCRv4 and ONNX Runtime for open_nsfw "
        "(ONNX Runtime for both with CPU_RUNTIME=torch). On CUDA they always run the torch "
        "ports.",
    )
    decode_memory_mb: int = Field(
        default_factory=_default_decode_memory_mb,
        ge=1,
        description="Memory for the pixels of images being decoded at once, estimated from "
        "their headers (e.g. 400 MB for a 10,000 x 10,000 RGBA PNG); an image that does not "
        "fit while others decode is answered 503 with Retry-After (one alone always fits).",
    )
    decode_threads: int = Field(
        default_factory=_default_threads,
        description="Threads that decode and preprocess uploaded images.",
    )
    faces_max_side: int = Field(
        1280,
        description="Images are scaled down to this longest side for face detection; boxes "
        "are mapped back to the full-size image.",
    )
    faces_min_size: int = Field(
        20,
        description="Smallest face MTCNN looks for, in pixels of the detection image.",
    )

    celebrities_threshold: float | None = Field(
        None,
        description="Largest descriptor distance at which a face matches a gallery person. "
        "Default per model: 0.5 for dlib_resnet, 1.0 for facenet_vggface2.",
    )
    celebrities_descriptor_runtime: Literal["auto", "dlib", "torch", "openvino"] = Field(
        "auto",
        description="On the CPU, what computes dlib_resnet's face descriptors: dlib itself, "
        "its torch port, or that port on OpenVINO (the same network; descriptors within "
        "1e-5). auto: the one measured fastest on the CPU, OpenVINO (the torch port with "
        "CPU_RUNTIME=torch). On CUDA the torch port always runs.",
    )
    text_max_side: int = Field(
        960,
        description="Longest side of the image the text detector sees (PP-OCRv4's DB, "
        "EasyOCR's CRAFT canvas).",
    )
    shutdown_grace_s: float = Field(
        30.0,
        description="On SIGTERM: readiness answers 503 at once, new requests 503, and "
        "requests in flight get up to this many seconds to finish before the process exits.",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines as text or as one JSON object per line (`serve`); either way "
        "one line per request, never a key or image bytes.",
    )
    metrics_token: str | None = Field(
        None,
        description="When set, GET /metrics answers 401 unless sent "
        "`Authorization: Bearer <token>`. Default: /metrics is open.",
    )
    deepstack_anonymous_key: str | None = Field(
        None,
        description="Name of the key (`imagerecognize keys create NAME`) that calls to the "
        "DeepStack / CodeProject.AI routes (/v1/vision/...) without an `api_key` are charged "
        "to: Frigate and Blue Iris often send none. Unset: such calls get 401. An unknown or "
        "revoked name also answers 401 (docs/compat.md).",
    )
    deepstack_anonymous_gallery: bool = Field(
        False,
        description="Whether calls without an `api_key` (charged to DEEPSTACK_ANONYMOUS_KEY) "
        "may change and list the gallery through /v1/vision/face/register, /face/delete and "
        "/face/list. Otherwise those need an admin key, as /api/v2/gallery/ does.",
    )
    google_image_uri_allow: list[str] = Field(
        [],
        description="Where the Google Cloud Vision dialect may fetch `image.source.imageUri` "
        'images from, as JSON (`["https://cdn.example.com/public/", "images.example.com", '
        '"*.example.org"]`): URL prefixes, hosts (optionally host:port), `*.domain` for its '
        "subdomains, `*` for any host. Empty (the default): imageUri is refused, per image. "
        "http(s) only; redirects are checked like the URL; a host resolving to a private, "
        "loopback or link-local address is refused unless listed by name (docs/compat.md).",
    )
    google_image_uri_timeout_s: float = Field(
        10.0,
        description="Deadline for fetching one imageUri image, redirects included; the "
        "image's size is limited by MAX_UPLOAD_BYTES.",
    )
    google_max_request_bytes: int = Field(
        64 * 1024 * 1024,
        description="Largest accepted JSON body of POST /v1/images:annotate (images come "
        "base64-encoded, 4/3 of their size); larger bodies get 400 INVALID_ARGUMENT.",
    )
    google_service_accounts: dict[str, str] = Field(
        {},
        description="Service-account key files the Google Cloud Vision dialect accepts, as "
        'JSON `{"/path/sa.json": "KEY_NAME"}`: a client built from that file sends a token it '
        "signs itself (`authorization: Bearer`), verified here with the file's key, and its "
        "calls are charged to our key KEY_NAME (`imagerecognize keys create KEY_NAME`). "
        "Needs the `grpc` extra (google-auth). Empty: API keys only.",
    )
    google_grpc_port: int | None = Field(
        None,
        description="Port of the Google Cloud Vision gRPC service (ImageAnnotator/"
        "BatchAnnotateImages, the official clients' default transport); needs the `grpc` "
        "extra (`pip install imagerecognize[grpc]`). Unset: not served.",
    )
    google_grpc_host: str = Field(
        "127.0.0.1",
        description="Address the gRPC service listens on (0.0.0.0: every interface).",
    )
    google_grpc_tls_cert: Path | None = Field(
        None,
        description="PEM certificate chain of the gRPC service; with GOOGLE_GRPC_TLS_KEY it "
        "serves TLS (what the clients expect unless given a plaintext channel). Unset: "
        "plaintext.",
    )
    google_grpc_tls_key: Path | None = Field(
        None, description="PEM private key of GOOGLE_GRPC_TLS_CERT."
    )
    faces_model: str | None = Field(
        None, description="Model answering detect_faces (see `imagerecognize models list`)."
    )
    objects_model: str | None = Field(
        None,
        description="Model answering objects: ssd_mobilenet_v2 or "
        "faster_rcnn_resnet50_fpn_v2. Default: the best whose weights are present.",
    )
    text_model: str | None = Field(
        None,
        description="Model answering detect_text: pp_ocrv4 (packaged) or easyocr (needs "
        "`imagerecognize models fetch easyocr_craft_mlt_25k easyocr_english_g2`).",
    )
    nsfw_model: str | None = Field(None, description="Model answering nsfw.")
    celebrities_model: str | None = Field(
        None,
        description="Face descriptor answering celebrities: dlib_resnet or "
        "facenet_vggface2 (run `imagerecognize gallery reindex` after a switch).",
    )
    aws_credentials_key: SecretStr | None = Field(
        None,
        description="Key (Fernet: 32 bytes, URL-safe base64) that encrypts the secret access "
        "keys of AWS-style credentials (`imagerecognize keys create --aws`) in the database; "
        "the Rekognition dialect needs each secret itself to check signatures, so it cannot "
        "be kept as a hash. Default: a key generated on first use into "
        "data_dir/aws-credentials.key (mode 0600). Servers on several hosts sharing one "
        "database must share this key (docs/privacy.md).",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="S3-compatible endpoint (e.g. http://minio:9000) that the Rekognition "
        "dialect reads `Image.S3Object` images from, with S3_ACCESS_KEY_ID and "
        "S3_SECRET_ACCESS_KEY. Unset: such images are answered InvalidS3ObjectException, "
        "and images are read only from the request.",
    )
    s3_access_key_id: str | None = Field(
        None, description="Access key id for S3_ENDPOINT_URL."
    )
    s3_secret_access_key: SecretStr | None = Field(
        None, description="Secret access key for S3_ENDPOINT_URL."
    )
    s3_region: str = Field(
        "us-east-1", description="Region name sent to S3_ENDPOINT_URL in its signatures."
    )

    def resolved_torch_calls(self, device_type: str) -> int:
        """TORCH_CALLS, or its default on a device of ``device_type`` ("cpu", "cuda")."""
        if self.torch_calls is not None:
            return self.torch_calls
        return 1 if device_type == "cuda" else _default_threads()

    def batch_limits(self, type_: str, model_default: int) -> tuple[int, float]:
        """(max batch size, max wait in ms) of the batcher of a type."""
        size = self.max_batch_sizes.get(type_, self.max_batch_size or model_default)
        return max(1, size), self.max_wait_ms_by_type.get(type_, self.max_wait_ms)

    def model_for(self, type_: str) -> str | None:
        """The model configured for an API type (its ``model_setting``), if any; None: the
        registry's default for the type."""
        if type_ not in ANALYSIS_TYPES:
            raise ValueError(f"unknown type {type_!r}; known: {', '.join(ANALYSIS_TYPES)}")
        setting = ANALYSIS_TYPES[type_].model_setting
        return getattr(self, setting) if setting is not None else None

    def model_class(self, type_: str) -> type[Recognizer] | None:
        """The class of the model serving ``type_`` (None: the type has none); an unknown
        model name raises ``UnknownModelError`` naming the known ones."""
        from models.registry import default_model  # loads torch: only when asked

        return default_model(type_, self.model_for(type_), self.resolved_model_dir)

    def model_options(self, gallery: FaceGallery | None = None) -> ModelOptions:
        """What every model is built with; ``gallery``: the one celebrities match against."""
        return ModelOptions(
            model_dir=self.resolved_model_dir,
            faces=FacesOptions(max_side=self.faces_max_side, min_face_size=self.faces_min_size),
            celebrities_threshold=self.celebrities_threshold,
            celebrities_descriptor_runtime=self.celebrities_descriptor_runtime,
            text_max_side=self.text_max_side,
            onnx=OnnxOptions(
                threads=self.onnx_threads,
                instances=self.onnx_instances,
                cpu_runtime=self.onnx_cpu_runtime,
            ),
            torch_threads=self.torch_threads,
            gallery=gallery,
            compile=self.compile,
            cpu_runtime=self.cpu_runtime,
            half_precision=dict(self.half_precision),
        )

    @property
    def resolved_model_dir(self) -> Path:
        return self.model_dir if self.model_dir is not None else self.data_dir / "models"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'imagerecognize.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
