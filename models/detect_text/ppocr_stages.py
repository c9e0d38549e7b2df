"""The stages of PP-OCR text reading, in numpy, SciPy and Pillow (no OpenCV): DB
post-processing to quadrilaterals, perspective crops, CTC decoding with character positions,
spaces restored from those positions, and lines in reading order."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

# DB post-processing, as PaddleOCR and RapidOCR configure it for PP-OCRv4.
DB_THRESHOLD = 0.3
DB_BOX_THRESHOLD = 0.5
DB_UNCLIP_RATIO = 1.6
DB_MAX_CANDIDATES = 1000
DB_MIN_SIZE = 3
REC_HEIGHT = 48
CLS_WIDTH = 192
CLS_THRESHOLD = 0.9


def min_area_rect(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The smallest rectangle around 2-D points: its 4 corners, width and height
    (rotating calipers over the convex hull)."""
    points = np.asarray(points, dtype=np.float64)
    try:
        hull = points[ConvexHull(points).vertices]
    except (QhullError, ValueError):
        hull = points  # collinear or too few points: the rectangle is degenerate
    if len(hull) < 2:
        corner = hull[0] if len(hull) else np.zeros(2)
        return np.repeat(corner[None], 4, axis=0), 0.0, 0.0
    edges = np.diff(np.vstack([hull, hull[:1]]), axis=0)
    angles = np.unique(np.mod(np.arctan2(edges[:, 1], edges[:, 0]), np.pi / 2))
    best = None
    for angle in angles:
        cos, sin = math.cos(angle), math.sin(angle)
        rotation = np.array([[cos, sin], [-sin, cos]])
        rotated = hull @ rotation.T
        low, high = rotated.min(axis=0), rotated.max(axis=0)
        area = float(np.prod(high - low))
        if best is None or area < best[0]:
            best = (area, rotation, low, high)
    _, rotation, low, high = best
    corners = (
        np.array([[low[0], low[1]], [high[0], low[1]], [high[0], high[1]], [low[0], high[1]]])
        @ rotation
    )
    width, height = high - low
    return corners, float(width), float(height)


def order_quad(points: np.ndarray) -> np.ndarray:
    """Corners as top-left, top-right, bottom-right, bottom-left."""
    by_x = points[np.argsort(points[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def expand_rect(corners: np.ndarray, width: float, height: float) -> np.ndarray:
    """DB's "unclip": grows the text kernel by area x ratio / perimeter on every side."""
    perimeter = 2 * (width + height)
    if perimeter <= 0:
        return corners
    distance = width * height * DB_UNCLIP_RATIO / perimeter
    center = corners.mean(axis=0)
    along = corners[1] - corners[0]
    across = corners[3] - corners[0]
    along_unit = along / (np.linalg.norm(along) or 1.0)
    across_unit = across / (np.linalg.norm(across) or 1.0)
    half_along = along_unit * (width / 2 + distance)
    half_across = across_unit * (height / 2 + distance)
    return np.array(
        [
            center - half_along - half_across,
            center + half_along - half_across,
            center + half_along + half_across,
            center - half_along + half_across,
        ]
    )


def db_boxes(
    probability: np.ndarray, scale_x: float, scale_y: float, width: int, height: int
) -> list[np.ndarray]:
    """Text quadrilaterals from a DB probability map, in source-image pixels."""
    bitmap = ndimage.binary_dilation(probability > DB_THRESHOLD, structure=np.ones((2, 2)))
    labels, _count = ndimage.label(bitmap, structure=np.ones((3, 3)))
    boxes = []
    for index, region in enumerate(ndimage.find_objects(labels)[:DB_MAX_CANDIDATES], 1):
        if region is None:
            continue
        ys, xs = np.nonzero(labels[region] == index)
        if len(xs) < 4:
            continue
        ys = ys + region[0].start
        xs = xs + region[1].start
        score = float(probability[ys, xs].mean())
        if score < DB_BOX_THRESHOLD:
            continue
        corners, rect_w, rect_h = min_area_rect(np.stack([xs, ys], axis=1))
        if min(rect_w, rect_h) < DB_MIN_SIZE:
            continue
        quad = order_quad(expand_rect(corners, rect_w, rect_h))
        quad[:, 0] = np.clip(quad[:, 0] * scale_x, 0, width - 1)
        quad[:, 1] = np.clip(quad[:, 1] * scale_y, 0, height - 1)
        if np.linalg.norm(quad[0] - quad[1]) <= 3 or np.linalg.norm(quad[0] - quad[3]) <= 3:
            continue
        boxes.append(quad)
    return boxes


def crop_quad(image: Image.Image, quad: np.ndarray) -> Image.Image:
    """The quadrilateral, straightened to a rectangle; tall crops are turned upright."""
    width = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    height = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    width, height = max(width, 1), max(height, 1)
    tl, tr, br, bl = quad.tolist()
    crop = image.transform(
        (width, height),
        Image.Transform.QUAD,
        data=(*tl, *bl, *br, *tr),
        resample=Image.Resampling.BICUBIC,
    )
    if height / width >= 1.5:
        crop = crop.transpose(Image.Transpose.ROTATE_90)
    return crop


def normalise_bgr(image: Image.Image, width: int, pad_to: int) -> np.ndarray:
    """PaddleOCR's line input: BGR, height 48, (x/255 - 0.5)/0.5, CHW, right-padded with
    zeros to ``pad_to``."""
    resized = image.resize((width, REC_HEIGHT), Image.Resampling.BILINEAR)
    pixels = np.asarray(resized, dtype=np.float32)[:, :, ::-1] / 255.0
    pixels = (pixels - 0.5) / 0.5
    out = np.zeros((3, pixels.shape[0], max(pad_to, width)), dtype=np.float32)
    out[:, :, :width] = pixels.transpose(2, 0, 1)
    return out


def rec_width(image: Image.Image, height: int = REC_HEIGHT, max_width: int | None = None) -> int:
    width = math.ceil(height * image.width / max(image.height, 1))
    return max(1, min(width, max_width) if max_width else width)


# The recogniser often drops the space between words, but its space class still rises in the
# frames between them: measured on rendered lines, at most 0.005 between letters of a word
# (99th percentile) and at least 0.17 at real word breaks (5th percentile).
SPACE_PROBABILITY = 0.05


@dataclass(frozen=True)
class DecodedLine:
    text: str
    confidence: float  # 0..1, mean over the characters the recogniser emitted


def ctc_decode(
    probabilities: np.ndarray,
    characters: list[str],
    frames: int,
    space_probability: float = SPACE_PROBABILITY,
) -> DecodedLine:
    """Greedy CTC over the first ``frames`` steps (the rest is padding). The last class is
    the space: a space is restored between two characters when its probability in the frames
    from one to the next reaches ``space_probability``."""
    steps = probabilities[:frames]
    best = steps.argmax(axis=1)
    peaks = steps.max(axis=1)
    space = len(characters) - 1
    text: list[str] = []
    scores: list[float] = []
    previous, last_start = 0, -1
    for frame, index in enumerate(best.tolist()):
        if index != 0 and index != previous:
            if (
                text
                and index != space
                and text[-1] != " "
                and steps[last_start : frame + 1, space].max() >= space_probability
            ):
                text.append(" ")
            text.append(characters[index])
            scores.append(float(peaks[frame]))
            last_start = frame
        previous = index
    return DecodedLine("".join(text).strip(), float(np.mean(scores)) if scores else 0.0)


@dataclass
class TextBox:
    quad: np.ndarray  # 4 x 2, tl tr br bl, displayed pixels
    text: str
    confidence: float  # 0..1


def _geometry(quad: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """A box's centre, its reading direction (unit) and its height."""
    direction = (quad[1] - quad[0]) + (quad[2] - quad[3])
    direction = direction / (np.linalg.norm(direction) or 1.0)
    height = float((np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2)
    return quad.mean(axis=0), direction, height


def group_lines(boxes: list[TextBox]) -> list[list[TextBox]]:
    """Boxes side by side on one baseline form a line, read along the text's direction;
    lines are ordered top to bottom, also on a tilted page."""
    if not boxes:
        return []
    geometry = [_geometry(box.quad) for box in boxes]
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (center_a, direction_a, height_a) in enumerate(geometry):
        normal_a = np.array([-direction_a[1], direction_a[0]])
        along_a = boxes[i].quad @ direction_a
        for j in range(i + 1, len(boxes)):
            center_b, _, height_b = geometry[j]
            if abs(float((center_b - center_a) @ normal_a)) > 0.5 * min(height_a, height_b):
                continue
            along_b = boxes[j].quad @ direction_a
            overlap = min(along_a.max(), along_b.max()) - max(along_a.min(), along_b.min())
            shorter = min(np.ptp(along_a), np.ptp(along_b))
            if overlap < 0.3 * shorter:  # side by side, not stacked
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        groups.setdefault(root(i), []).append(i)
    angles = [np.arctan2(d[1], d[0]) for _, d, _ in geometry]
    angle = float(np.median(angles))
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    lines = []
    for members in groups.values():
        members.sort(key=lambda k: float(geometry[k][0] @ direction))
        lines.append([boxes[k] for k in members])
    lines.sort(key=lambda line: float(np.mean([_geometry(b.quad)[0] @ normal for b in line])))
    return lines
