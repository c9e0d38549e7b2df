"""Our analyses written as Google's `AnnotateImageResponse` (lowerCamelCase proto JSON): each
feature from the /api/v2/ ``data`` of the type answering it (wire.FEATURE_TYPES). Pure
functions. docs/compat.md says what each field holds and how it differs from Google's.

Pixel vertices are integers (the clients parse `Vertex.x` as int32 and crash on 1.5);
normalized vertices and positions are floats."""

from __future__ import annotations

import re
from typing import Any

from server.catalog import DETECT_FACES, DETECT_TEXT, NSFW, OBJECTS
from server.http.google.wire import FeatureType, ImageRequest

# google.cloud.vision.v1.Likelihood.
UNKNOWN = "UNKNOWN"
LIKELIHOODS = ("VERY_UNLIKELY", "UNLIKELY", "POSSIBLE", "LIKELY", "VERY_LIKELY")
# open_nsfw's score (0..100) from which `adult` is each likelihood above VERY_UNLIKELY, and
# `racy`, which suggestive images reach with middling scores, one step earlier.
ADULT_THRESHOLDS = (20.0, 40.0, 60.0, 80.0)
RACY_THRESHOLDS = (10.0, 20.0, 40.0, 60.0)
# Our landmark names and Google's. Ours are named by the side of the image they are on; so
# are Google's in its examples (LEFT_EYE has the smaller x).
LANDMARKS = {
    "left_eye": "LEFT_EYE",
    "right_eye": "RIGHT_EYE",
    "nose": "NOSE_TIP",
    "mouth_left": "MOUTH_LEFT",
    "mouth_right": "MOUTH_RIGHT",
}
FACE_LIKELIHOODS = (
    "joyLikelihood",
    "sorrowLikelihood",
    "angerLikelihood",
    "surpriseLikelihood",
    "underExposedLikelihood",
    "blurredLikelihood",
    "headwearLikelihood",
)
# google.cloud.vision.v1.TextAnnotation.DetectedBreak.BreakType.
SPACE, EOL_SURE_SPACE = "SPACE", "EOL_SURE_SPACE"
_WORD = re.compile(r"\S+")


def _score(confidence: float) -> float:
    return round(confidence / 100.0, 4)


def _vertices(box: dict[str, int]) -> list[dict[str, int]]:
    """A box's corners in integer pixels, clockwise from the top-left."""
    left, top = int(box["left"]), int(box["top"])
    right, bottom = left + int(box["width"]), top + int(box["height"])
    return [
        {"x": left, "y": top},
        {"x": right, "y": top},
        {"x": right, "y": bottom},
        {"x": left, "y": bottom},
    ]


def _normalized(box: dict[str, int], width: int, height: int) -> list[dict[str, float]]:
    return [{"x": round(v["x"] / width, 6), "y": round(v["y"] / height, 6)} for v in _vertices(box)]


def labels(data: dict[str, Any], max_results: int) -> list[dict[str, Any]]:
    """Every name of the objects analysis (the detector's and the whole-image classifier's),
    most confident first."""
    return [
        {
            "description": obj["name"],
            "score": _score(obj["confidence"]),
            "topicality": _score(obj["confidence"]),
        }
        for obj in data["objects"][:max_results]
    ]


def localized_objects(data: dict[str, Any], max_results: int) -> list[dict[str, Any]]:
    """One entry per box of the detector, most confident first, in normalized vertices."""
    width, height = data["image"]["width"], data["image"]["height"]
    boxes = [
        (instance["confidence"], obj["name"], instance["box"])
        for obj in data["objects"]
        for instance in obj.get("instances", [])
    ]
    boxes.sort(key=lambda entry: -entry[0])
    return [
        {
            "name": name,
            "score": _score(confidence),
            "boundingPoly": {"normalizedVertices": _normalized(box, width, height)},
        }
        for confidence, name, box in boxes[:max_results]
    ]


def faces(data: dict[str, Any], max_results: int) -> list[dict[str, Any]]:
    """The detector's faces: its box as both polygons (we do not make up Google's looser head
    box), its five landmarks, its confidence; what we cannot tell is UNKNOWN."""
    answers = []
    for face in data["objects"][:max_results]:
        polygon = {"vertices": _vertices(face["box"])}
        landmarks = [
            {
                "type": LANDMARKS[name],
                "position": {"x": float(point["x"]), "y": float(point["y"]), "z": 0.0},
            }
            for name, point in face.get("landmarks", {}).items()
            if name in LANDMARKS
        ]
        answers.append(
            {
                "boundingPoly": polygon,
                "fdBoundingPoly": polygon,
                "landmarks": landmarks,
                "detectionConfidence": _score(face["confidence"]),
                **{name: UNKNOWN for name in FACE_LIKELIHOODS},
            }
        )
    return answers


def likelihood(score: float, thresholds: tuple[float, ...]) -> str:
    """The likelihood bucket of a 0..100 score."""
    return LIKELIHOODS[sum(score >= threshold for threshold in thresholds)]


def nsfw_score(data: dict[str, Any]) -> float:
    for obj in data["objects"]:
        if obj["name"] == "nsfw":
            return float(obj["confidence"])
    for obj in data["objects"]:  # only "sfw" kept: nsfw is its complement
        if obj["name"] == "sfw":
            return 100.0 - float(obj["confidence"])
    return 0.0


def safe_search(data: dict[str, Any]) -> dict[str, Any]:
    score = nsfw_score(data)
    return {
        "adult": likelihood(score, ADULT_THRESHOLDS),
        "spoof": UNKNOWN,
        "medical": UNKNOWN,
        "violence": UNKNOWN,
        "racy": likelihood(score, RACY_THRESHOLDS),
    }


def _point(a: list[float], b: list[float], t: float) -> tuple[float, float]:
    return a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t


def _span(polygon: list[list[float]], start: float, end: float) -> list[dict[str, int]]:
    """The part of a line's polygon (corners clockwise from its top-left) between the
    fractions ``start`` and ``end`` of its length, as integer pixel vertices."""
    top_left, top_right, bottom_right, bottom_left = polygon
    corners = (
        _point(top_left, top_right, start),
        _point(top_left, top_right, end),
        _point(bottom_left, bottom_right, end),
        _point(bottom_left, bottom_right, start),
    )
    return [{"x": round(x), "y": round(y)} for x, y in corners]


def _line_polygon(line: dict[str, Any]) -> list[list[float]]:
    polygon = line.get("polygon")
    if polygon and len(polygon) == 4:
        return [[float(x), float(y)] for x, y in polygon]
    return [[float(v["x"]), float(v["y"])] for v in _vertices(line["box"])]


def _words(line: dict[str, Any]) -> list[tuple[str, int, int]]:
    """A line's words with their first and past-last character index."""
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(line["text"])]


def text(data: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """``textAnnotations`` (the whole text, then one entry per word) and
    ``fullTextAnnotation`` (one page; one block of one paragraph per line; its words and
    their symbols). The recogniser reads lines: a word's or a symbol's box is its share of
    the line's polygon by character count, an estimate, not a detection."""
    lines = [line for line in data["objects"] if line["text"].strip()]
    if not lines:
        return [], None
    full_text = "".join(line["text"] + "\n" for line in lines)
    xs = [v["x"] for line in lines for v in _span(_line_polygon(line), 0.0, 1.0)]
    ys = [v["y"] for line in lines for v in _span(_line_polygon(line), 0.0, 1.0)]
    whole = {
        "left": min(xs),
        "top": min(ys),
        "width": max(xs) - min(xs),
        "height": max(ys) - min(ys),
    }
    annotations: list[dict[str, Any]] = [
        {"description": full_text, "boundingPoly": {"vertices": _vertices(whole)}}
    ]
    blocks = []
    for line in lines:
        polygon, length = _line_polygon(line), len(line["text"])
        confidence = _score(line["confidence"])
        words = []
        found = _words(line)
        for index, (word, start, end) in enumerate(found):
            annotations.append(
                {
                    "description": word,
                    "boundingPoly": {"vertices": _span(polygon, start / length, end / length)},
                }
            )
            last = index == len(found) - 1
            symbols = []
            for offset, char in enumerate(word):
                symbol: dict[str, Any] = {
                    "text": char,
                    "confidence": confidence,
                    "boundingBox": {
                        "vertices": _span(
                            polygon, (start + offset) / length, (start + offset + 1) / length
                        )
                    },
                }
                if offset == len(word) - 1:
                    symbol["property"] = {
                        "detectedBreak": {"type": EOL_SURE_SPACE if last else SPACE}
                    }
                symbols.append(symbol)
            words.append(
                {
                    "boundingBox": {"vertices": _span(polygon, start / length, end / length)},
                    "symbols": symbols,
                    "confidence": confidence,
                }
            )
        line_box = {"vertices": _span(polygon, 0.0, 1.0)}
        blocks.append(
            {
                "boundingBox": line_box,
                "blockType": "TEXT",
                "confidence": confidence,
                "paragraphs": [{"boundingBox": line_box, "words": words, "confidence": confidence}],
            }
        )
    page = {
        "width": data["image"]["width"],
        "height": data["image"]["height"],
        "blocks": blocks,
        "confidence": round(sum(_score(line["confidence"]) for line in lines) / len(lines), 4),
    }
    return annotations, {"text": full_text, "pages": [page]}


def annotate(request: ImageRequest, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One image's ``AnnotateImageResponse`` from the analyses its features needed."""
    answer: dict[str, Any] = {}
    for feature, max_results in request.features.items():
        if feature is FeatureType.LABEL_DETECTION:
            answer["labelAnnotations"] = labels(results[OBJECTS.name], max_results)
        elif feature is FeatureType.OBJECT_LOCALIZATION:
            answer["localizedObjectAnnotations"] = localized_objects(
                results[OBJECTS.name], max_results
            )
        elif feature is FeatureType.FACE_DETECTION:
            answer["faceAnnotations"] = faces(results[DETECT_FACES.name], max_results)
        elif feature in (FeatureType.TEXT_DETECTION, FeatureType.DOCUMENT_TEXT_DETECTION):
            words, full = text(results[DETECT_TEXT.name])
            answer["textAnnotations"] = words
            if full is not None:
                answer["fullTextAnnotation"] = full
        elif feature is FeatureType.SAFE_SEARCH_DETECTION:
            answer["safeSearchAnnotation"] = safe_search(results[NSFW.name])
    # Empty lists are left out, as Google leaves them out.
    return {name: value for name, value in answer.items() if value != []}
