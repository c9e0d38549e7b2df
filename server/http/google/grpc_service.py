"""Google Cloud Vision over gRPC, the official clients' default transport:
`google.cloud.vision.v1.ImageAnnotator/BatchAnnotateImages` on a port of its own
(IMAGERECOGNIZE_GOOGLE_GRPC_PORT), TLS from the operator's certificate files or plaintext.

The same code as REST (annotate.py): the message is read as the proto JSON the REST clients
send, the answer written back from Google's JSON, with google-cloud-vision's message classes
(a generic handler: no generated stubs). The key comes in the ``x-goog-api-key`` metadata.
Needs the `grpc` extra (grpcio, google-cloud-vision); started and stopped with the app."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from server.http.google.annotate import batch_annotate
from server.http.google.errors import GoogleError, google_error
from server.http.google.routes import API_KEY_HEADER, authenticate
from server.http.state import AppState
from server.settings import Settings

log = logging.getLogger(__name__)

SERVICE = "google.cloud.vision.v1.ImageAnnotator"
METHOD = "BatchAnnotateImages"
STOP_GRACE_S = 5.0


class VisionGrpcServer:
    """The gRPC service of one app (one per worker: the port is shared with SO_REUSEPORT)."""

    def __init__(self, settings: Settings, state: Callable[[], AppState]):
        import grpc
        from google.cloud.vision_v1 import types

        self.settings = settings
        self.state = state
        self.types = types
        self.codes = grpc.StatusCode
        limit = settings.google_max_request_bytes
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 1),
            ]
        )
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                METHOD: grpc.unary_unary_rpc_method_handler(
                    self.batch_annotate_images,
                    request_deserializer=types.BatchAnnotateImagesRequest.deserialize,
                    response_serializer=types.BatchAnnotateImagesResponse.serialize,
                )
            },
        )
        self.server.add_generic_rpc_handlers((handler,))
        address = f"{settings.google_grpc_host}:{settings.google_grpc_port}"
        cert, key = settings.google_grpc_tls_cert, settings.google_grpc_tls_key
        try:
            if cert is not None and key is not None:
                credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
                self.port = self.server.add_secure_port(address, credentials)
            else:
                self.port = self.server.add_insecure_port(address)
        except (OSError, RuntimeError) as exc:
            raise SystemExit(f"error: the gRPC service cannot listen on {address}: {exc}") from None
        self.tls = cert is not None and key is not None

    def request_body(self, request: Any) -> dict[str, Any]:
        """The message as the REST clients' JSON, each image's content kept as bytes."""
        body = self.types.BatchAnnotateImagesRequest.to_dict(
            request, use_integers_for_enums=True, preserving_proto_field_name=False
        )
        for entry, message in zip(body.get("requests", []), request.requests, strict=True):
            if message.image.content:
                entry["image"]["content"] = bytes(message.image.content)
        return body

    async def batch_annotate_images(self, request: Any, context: Any) -> Any:
        request_id = uuid.uuid4().hex
        metadata = {name.lower(): value for name, value in context.invocation_metadata()}
        state = self.state()
        try:
            key = await authenticate(
                state.service, metadata.get(API_KEY_HEADER), metadata.get("authorization")
            )
            answer = await batch_annotate(
                state.service, key, self.request_body(request), state.settings, request_id
            )
            return self.types.BatchAnnotateImagesResponse.from_json(
                json.dumps(answer), ignore_unknown_fields=True
            )
        except Exception as exc:
            error = google_error(exc)
            if error is None:
                log.exception("gRPC request %s failed", request_id)
                error = GoogleError("INTERNAL", "Internal error.")
        await context.abort(getattr(self.codes, error.status), error.message)

    async def start(self) -> None:
        await self.server.start()
        log.info(
            "Google Cloud Vision gRPC on %s:%d (%s)",
            self.settings.google_grpc_host,
            self.port,
            "TLS" if self.tls else "plaintext",
        )

    async def stop(self) -> None:
        await self.server.stop(STOP_GRACE_S)


async def start_grpc(settings: Settings, state: Callable[[], AppState]) -> VisionGrpcServer | None:
    """The gRPC service started, when GOOGLE_GRPC_PORT is set; None otherwise."""
    if settings.google_grpc_port is None:
        return None
    if (settings.google_grpc_tls_cert is None) != (settings.google_grpc_tls_key is None):
        raise SystemExit(
            "error: IMAGERECOGNIZE_GOOGLE_GRPC_TLS_CERT and _TLS_KEY go together: set both "
            "(TLS) or neither (plaintext)"
        )
    try:
        server = VisionGrpcServer(settings, state)
    except ImportError as exc:
        raise SystemExit(
            "error: IMAGERECOGNIZE_GOOGLE_GRPC_PORT needs the grpc extra "
            f"(pip install 'imagerecognize[grpc]'): {exc}"
        ) from None
    await server.start()
    return server
