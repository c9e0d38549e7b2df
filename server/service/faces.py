"""Faces as the gallery and the comparisons need them: every face of an image with its box,
landmarks and descriptor, from the celebrities model's output (its raw prediction, run through
the pipeline's stages like any analysis), and a face from each photo to enrol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.celebrities.dlib_faces import match_confidence
from models.detect_faces.mtcnn import face_object
from models.images import ImageError
from server.catalog import FACES_TYPE
from server.pipeline.analysis import AnalysisPipeline, Prediction
from server.store.gallery import EnrolledFace, ManyFacesError, NoFaceError, UnreadablePhotoError

__all__ = ["FACES_TYPE", "DescribedImage", "FaceDescription", "match_confidence"]


@dataclass(frozen=True)
class FaceDescription:
    """One face: where it is (the API's box and landmarks, pixels of the posted image), how
    sure the detector is (``confidence`` 0..100, ``probability`` 0..1) and its descriptor."""

    box: dict[str, int]  # left, top, width, height
    landmarks: dict[str, dict[str, int]]  # left_eye, right_eye, nose, mouth_left, mouth_right
    confidence: float
    probability: float
    descriptor: np.ndarray
    aligned: np.ndarray  # the aligned crop the descriptor is of

    def shape(self) -> dict[str, Any]:
        """The face as /api/v2/'s detect_faces writes one."""
        return {"confidence": self.confidence, "box": self.box, "landmarks": self.landmarks}


@dataclass(frozen=True)
class DescribedImage:
    width: int
    height: int
    faces: list[FaceDescription]  # most probable first

    def most_probable(self) -> FaceDescription | None:
        return self.faces[0] if self.faces else None


def described_image(prediction: Prediction) -> DescribedImage:
    """The celebrities model's raw output for one image, in the API's coordinates."""
    info = prediction.image.info
    faces = []
    for described in sorted(prediction.output, key=lambda d: d.face.probability, reverse=True):
        shape = face_object(described.face, prediction.item.scale, info.width, info.height)
        faces.append(
            FaceDescription(
                box=shape["box"],
                landmarks=shape["landmarks"],
                confidence=shape["confidence"],
                probability=float(described.face.probability),
                descriptor=described.descriptor,
                aligned=described.chip,
            )
        )
    return DescribedImage(info.width, info.height, faces)


async def describe(pipeline: AnalysisPipeline, data: bytes) -> DescribedImage:
    """Every face of one image (inspect → decode → preprocess → batched predict)."""
    return described_image(await pipeline.predict(FACES_TYPE, data))


def distance(first: FaceDescription, second: FaceDescription) -> float:
    return float(np.linalg.norm(first.descriptor - second.descriptor))


async def enrolment_face(
    pipeline: AnalysisPipeline, source: str, data: bytes, min_probability: float | None
) -> EnrolledFace:
    """A photo's one face; a photo with none, several, or that is not a readable PNG/JPEG is
    refused by name. ``min_probability`` (0..1): faces the detector is less sure of do not
    count."""
    try:
        image = await describe(pipeline, data)
    except ImageError as exc:
        raise UnreadablePhotoError(f"{source}: {exc}") from None
    faces = [
        face
        for face in image.faces
        if min_probability is None or face.probability >= min_probability
    ]
    if not faces:
        raise NoFaceError(f"{source}: no face found")
    if len(faces) > 1:
        raise ManyFacesError(f"{source}: {len(faces)} faces found, enrol a photo of one person")
    return EnrolledFace(source, faces[0].aligned, faces[0].descriptor)


def similarity(first: DescribedImage, second: DescribedImage, threshold: float) -> Any:
    """How alike the most probable faces of two images are, on the API's 0..100 scale of a
    match's confidence (50 at ``threshold``); None when either has no face."""
    a, b = first.most_probable(), second.most_probable()
    if a is None or b is None:
        return None
    return match_confidence(distance(a, b), threshold)
