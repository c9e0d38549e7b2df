"""Our faces in CompreFace's shapes: boxes as corners with the detector's probability,
landmarks as point lists, similarities on its 0..1 scale. Pure functions."""

from __future__ import annotations

from typing import Any

from server.http.compreface.errors import NO_FACE, NO_FACE_MESSAGE, CompreFaceError

LANDMARKS_PLUGIN = "landmarks"
CALCULATOR_PLUGIN = "calculator"  # the face's embedding: our descriptor


def ratio(confidence: float) -> float:
    """Our 0..100 confidence or similarity on CompreFace's 0..1 scale."""
    return round(float(confidence) / 100.0, 4)


def box(face: dict[str, Any]) -> dict[str, Any]:
    corners = face["box"]
    return {
        # Detection confidence back on CompreFace's 0..1 scale.
        "probability": ratio(face["confidence"]),
        "x_max": corners["left"] + corners["width"],
        "y_max": corners["top"] + corners["height"],
        "x_min": corners["left"],
        "y_min": corners["top"],
    }


def kept_faces(
    faces: list[Any], det_prob_threshold: float | None, limit: int, *, required: bool = True
) -> list[Any]:
    """The faces (dicts with ``confidence`` and ``box``) left after ``det_prob_threshold``;
    ``limit`` > 0 keeps the largest, in their order, as CompreFace does. NoFace (28) when none
    is left, if ``required``."""
    if det_prob_threshold is not None:
        faces = [f for f in faces if f["confidence"] / 100.0 >= det_prob_threshold]
    if limit > 0 and len(faces) > limit:
        largest = sorted(faces, key=lambda f: f["box"]["width"] * f["box"]["height"])[-limit:]
        faces = [f for f in faces if any(f is kept for kept in largest)]
    if not faces and required:
        raise CompreFaceError(400, NO_FACE, NO_FACE_MESSAGE)
    return faces


def face(found: dict[str, Any], plugins: set[str], embedding: Any = None) -> dict[str, Any]:
    """One face: its box, and what the plugins asked for that we compute."""
    entry: dict[str, Any] = {"box": box(found)}
    if LANDMARKS_PLUGIN in plugins:
        entry["landmarks"] = [[point["x"], point["y"]] for point in found["landmarks"].values()]
    if CALCULATOR_PLUGIN in plugins and embedding is not None:
        entry["embedding"] = [round(float(v), 6) for v in embedding]
    return entry


def plugins_versions(model: str) -> dict[str, str]:
    """``status=true``'s versions: the detector's (its landmarks too) and the descriptor's."""
    return {"detector": "mtcnn", "calculator": model}
