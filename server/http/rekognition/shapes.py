"""This server's answers in Rekognition's output shapes: boxes and points as ratios of the
image's width and height, confidences 0..100 as floats, names as Rekognition writes them.
What our models cannot compute (face attributes, pose, image quality) is left out, never
invented: every output member is optional to the SDKs. docs/compat.md has the field list."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

# Our five landmarks as Rekognition's types; ours and Rekognition's "left" are both the one on
# the left of the image.
LANDMARK_TYPES = {
    "left_eye": "eyeLeft",
    "right_eye": "eyeRight",
    "nose": "nose",
    "mouth_left": "mouthLeft",
    "mouth_right": "mouthRight",
}
# open_nsfw's one score, as a top-level label of Rekognition's moderation taxonomy.
MODERATION_LABEL = "Explicit"


def _ratio(value: float, size: int) -> float:
    return min(max(float(value) / size, 0.0), 1.0) if size else 0.0


def bounding_box(box: dict[str, Any], width: int, height: int) -> dict[str, float]:
    return {
        "Width": _ratio(box["width"], width),
        "Height": _ratio(box["height"], height),
        "Left": _ratio(box["left"], width),
        "Top": _ratio(box["top"], height),
    }


def point(x: float, y: float, width: int, height: int) -> dict[str, float]:
    return {"X": _ratio(x, width), "Y": _ratio(y, height)}


def landmarks(found: dict[str, Any], width: int, height: int) -> list[dict[str, Any]]:
    points = []
    for ours, theirs in LANDMARK_TYPES.items():
        position = found.get(ours)
        if position is None:
            continue
        x, y = (position["x"], position["y"]) if isinstance(position, dict) else position
        points.append({"Type": theirs, **point(x, y, width, height)})
    return points


def face_detail(face: dict[str, Any], width: int, height: int) -> dict[str, Any]:
    """A face of detect_faces (or an unrecognised one of celebrities) as a FaceDetail; also
    the ComparedFace of the search operations, which has the same members."""
    return {
        "BoundingBox": bounding_box(face["box"], width, height),
        "Landmarks": landmarks(face.get("landmarks") or {}, width, height),
        "Confidence": float(face["confidence"]),
    }


def labels(
    objects: Sequence[dict[str, Any]],
    width: int,
    height: int,
    *,
    display_name: Callable[[str], str],
    parents: Callable[[str], Sequence[str]],
    category_parents: Callable[[str], Sequence[str]],
    max_labels: int | None,
) -> list[dict[str, Any]]:
    """objects' labels as Rekognition's: boxes as Instances, the classifier's labels without
    instances, and each label's categories both as its Parents and, as Rekognition answers
    them, as labels of their own with the best confidence among their children."""
    found: dict[str, dict[str, Any]] = {}
    for obj in objects:
        name = display_name(obj["name"])
        label = {
            "Name": name,
            "Confidence": float(obj["confidence"]),
            "Instances": [
                {
                    "BoundingBox": bounding_box(i["box"], width, height),
                    "Confidence": float(i["confidence"]),
                }
                for i in obj.get("instances", [])
            ],
            "Parents": [{"Name": p} for p in parents(obj["name"])],
            "Aliases": [],
            "Categories": [],
        }
        known = found.get(name)
        if known is None or known["Confidence"] < label["Confidence"]:
            found[name] = label
    implied: set[str] = set()
    for label in list(found.values()):
        for parent in label["Parents"]:
            name = parent["Name"]
            known = found.get(name)
            if known is None:
                implied.add(name)
                found[name] = {
                    "Name": name,
                    "Confidence": label["Confidence"],
                    "Instances": [],
                    "Parents": [{"Name": p} for p in category_parents(name)],
                    "Aliases": [],
                    "Categories": [],
                }
            elif known["Confidence"] < label["Confidence"] and not known["Instances"]:
                known["Confidence"] = label["Confidence"]
    # Most confident first; at equal confidence a label found before the parents it implies.
    ordered = sorted(
        found.values(),
        key=lambda label: (-label["Confidence"], label["Name"] in implied, label["Name"]),
    )
    return ordered if max_labels is None else ordered[:max_labels]


def _along(polygon: list[list[float]], start: float, end: float) -> list[tuple[float, float]]:
    """The part of a line's polygon (top-left, top-right, bottom-right, bottom-left) between
    two fractions of its length."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = polygon[:4]

    def lerp(ax: float, ay: float, bx: float, by: float, t: float) -> tuple[float, float]:
        return ax + (bx - ax) * t, ay + (by - ay) * t

    return [
        lerp(x0, y0, x1, y1, start),
        lerp(x0, y0, x1, y1, end),
        lerp(x3, y3, x2, y2, end),
        lerp(x3, y3, x2, y2, start),
    ]


def _geometry(corners: list[tuple[float, float]], width: int, height: int) -> dict[str, Any]:
    xs = [x for x, _ in corners]
    ys = [y for _, y in corners]
    box = {"left": min(xs), "top": min(ys), "width": max(xs) - min(xs), "height": max(ys) - min(ys)}
    return {
        "BoundingBox": bounding_box(box, width, height),
        "Polygon": [point(x, y, width, height) for x, y in corners],
    }


def _line_polygon(line: dict[str, Any]) -> list[list[float]]:
    polygon = line.get("polygon")
    if polygon and len(polygon) >= 4:
        return [[float(x), float(y)] for x, y in polygon[:4]]
    box = line["box"]
    left, top = float(box["left"]), float(box["top"])
    right, bottom = left + float(box["width"]), top + float(box["height"])
    return [[left, top], [right, top], [right, bottom], [left, bottom]]


def text_detections(
    lines: Sequence[dict[str, Any]], width: int, height: int
) -> list[dict[str, Any]]:
    """detect_text's lines as LINE entries, then each line's words as WORD entries whose
    ParentId is their line's Id. A word's geometry is its share of the line's polygon by
    character position (the recogniser reads lines, not words)."""
    entries: list[dict[str, Any]] = []
    words: list[dict[str, Any]] = []
    for line in lines:
        text = str(line["text"])
        confidence = float(line["confidence"])
        polygon = _line_polygon(line)
        line_id = len(entries)
        entries.append(
            {
                "DetectedText": text,
                "Type": "LINE",
                "Id": line_id,
                "Confidence": confidence,
                "Geometry": {
                    # The same box /api/v2/ gives the line, and the detector's polygon.
                    "BoundingBox": bounding_box(line["box"], width, height),
                    "Polygon": [point(x, y, width, height) for x, y in polygon],
                },
            }
        )
        length = max(len(text), 1)
        position = 0
        for word in text.split(" "):
            start = text.index(word, position) if word else position
            position = start + len(word)
            if not word:
                continue
            words.append(
                {
                    "DetectedText": word,
                    "Type": "WORD",
                    "ParentId": line_id,
                    "Confidence": confidence,
                    "Geometry": _geometry(
                        _along(polygon, start / length, position / length), width, height
                    ),
                }
            )
    for word in words:
        word["Id"] = len(entries)
        entries.append(word)
    return entries


def moderation_labels(objects: Sequence[dict[str, Any]], min_confidence: float) -> list[dict]:
    """nsfw's score as one top-level label, none under ``min_confidence``."""
    score = next((float(o["confidence"]) for o in objects if o["name"] == "nsfw"), None)
    if score is None or score < min_confidence:
        return []
    return [
        {"Confidence": score, "Name": MODERATION_LABEL, "ParentName": "", "TaxonomyLevel": 1}
    ]
