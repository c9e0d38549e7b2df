"""Face work beside the gallery that needs the celebrities model, for every API that offers
it: enrolling photos (in the model's threads, server/store/enrolment.py doing the work) and
how alike the faces of two images are (DeepStack's face/match)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from models.celebrities.dlib_faces import match_confidence
from models.images import decode_image, inspect_image
from server.pipeline.analysis import AnalysisPipeline
from server.store.enrolment import enrol_photos
from server.store.gallery import Gallery, check_name, check_source

FACES_TYPE = "celebrities"


async def enrol_in_gallery(
    pipeline: AnalysisPipeline,
    gallery: Gallery,
    name: str,
    photos: list[tuple[str, bytes]],
    *,
    actor: str,
    min_probability: float | None = None,
) -> dict[str, Any]:
    """Adds a face from each photo to ``name`` (all or nothing), audited as ``actor``'s; what
    the database cannot hold is refused before the model loads."""
    check_name(name)
    for source, _ in photos:
        check_source(source)
    batcher = await pipeline.batcher(FACES_TYPE)
    return await batcher.run_in_model_threads(
        functools.partial(enrol_photos, min_probability=min_probability, actor=actor),
        gallery,
        batcher.model,
        name,
        photos,
        pipeline.settings.max_image_pixels,
    )


def _first_face_descriptor(model: Any, data: bytes, max_pixels: int) -> np.ndarray | None:
    """The descriptor of the image's most probable face; None without a face. Raises
    ImageError for a file that is not a readable PNG/JPEG. Runs in a model thread."""
    image = decode_image(data, inspect_image(data, max_pixels), model.input_max_side)
    with model.autocast():
        (described,) = model.predict([model.preprocess(image)])
    if not described:
        return None
    return max(described, key=lambda d: d.face.probability).descriptor


async def face_similarity(pipeline: AnalysisPipeline, first: bytes, second: bytes) -> float | None:
    """How alike the most probable faces of two images are, on the API's 0..100 scale of a
    match's confidence (50 at the match threshold); None when either image has no face."""
    batcher = await pipeline.batcher(FACES_TYPE)
    model = batcher.model
    max_pixels = pipeline.settings.max_image_pixels
    descriptors = [
        await batcher.run_in_model_threads(_first_face_descriptor, model, data, max_pixels)
        for data in (first, second)
    ]
    if descriptors[0] is None or descriptors[1] is None:
        return None
    distance = float(np.linalg.norm(descriptors[0] - descriptors[1]))
    return match_confidence(distance, model.threshold)
