"""The baseline for scripts/bench.py: the naive way to serve a model, one FastAPI handler that
decodes the upload and runs the same model on it per request, with no batching, no queue and
no stored results.

    NAIVE_TYPE=objects uvicorn --factory scripts.naive_server:create_app --port 8001
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from models.images import decode_image, inspect_image
from models.registry import default_model
from models.runtimes.device import choose_device
from server.settings import get_settings

PARAMS = {
    "objects": {"max_labels": 10, "min_confidence": 30},
    "nsfw": {"nsfw_min_confidence": 0},
}


def create_app() -> FastAPI:
    type_ = os.environ.get("NAIVE_TYPE", "objects")
    settings = get_settings()
    cls = default_model(type_, None, settings.resolved_model_dir)
    if cls is None:
        raise RuntimeError(f"no model for {type_}")
    model = cls(choose_device(settings.device), settings.model_options())
    model.load()
    app = FastAPI()

    def analyse(data: bytes) -> list:
        info = inspect_image(data, settings.max_image_pixels)
        image = decode_image(data, info)
        item = model.preprocess(image)
        (output,) = model.predict([item])
        return model.postprocess(output, item, image, PARAMS.get(type_, {})).objects

    @app.post("/api/v2/")
    async def handle(request: Request) -> dict:
        form = await request.form()
        data = await form["file"].read()
        objects = await run_in_threadpool(analyse, data)
        return {"status": 200, "status_message": "OK", "data": {"objects": objects}}

    return app
