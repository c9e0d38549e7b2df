"""The numbers of `imagerecognize evaluate`, pure and independent of the models: the threshold
sweep (precision, recall, F1 at each threshold), the recommended threshold for a target,
average precision of boxes at IoU 0.5, and character and word error rates."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Direction = Literal["higher", "lower"]


@dataclass(frozen=True)
class Target:
    """What the recommended threshold optimises: ``f1`` (best F1), or the best recall with
    at least ``value`` precision, or the best precision with at least ``value`` recall."""

    metric: Literal["f1", "precision", "recall"] = "f1"
    value: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> Target:
        """``precision=0.95``, ``recall=0.9`` (also as percentages: ``precision=95``) or
        ``f1``; ValueError with the reason otherwise."""
        if text is None or text.strip().lower() in ("", "f1", "best-f1"):
            return cls()
        name, sep, raw = text.partition("=")
        name = name.strip().lower()
        if not sep or name not in ("precision", "recall"):
            raise ValueError(f"{text!r}: give precision=P or recall=R (e.g. precision=0.95)")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{text!r}: {raw.strip()!r} is not a number") from None
        if 1 < value <= 100:
            value /= 100  # precision=95 means 0.95
        if not 0 < value <= 1:
            raise ValueError(f"{text!r}: the target must be between 0 and 1 (or 0 and 100 %)")
        return cls(name, value)  # type: ignore[arg-type]

    def describe(self) -> str:
        if self.metric == "f1":
            return "best F1"
        other = "recall" if self.metric == "precision" else "precision"
        return f"{self.metric} >= {self.value:g}, then best {other}"


@dataclass(frozen=True)
class Point:
    """The counts and rates at one threshold."""

    threshold: float
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        # Nothing predicted: precision 0, so that "predict nothing" never meets a target.
        predicted = self.tp + self.fp
        return self.tp / predicted if predicted else 0.0

    @property
    def recall(self) -> float:
        positives = self.tp + self.fn
        return self.tp / positives if positives else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "threshold": self.threshold,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }


def predicted(score: float | None, threshold: float, direction: Direction) -> bool:
    """Whether a score counts as a detection at ``threshold``: confidences at or above it
    (the API's ``min_confidence`` keeps ``confidence >= min_confidence``), distances strictly
    below it (a face matches when its distance is under the celebrities threshold). None:
    never detected (the label was not in the answer at all)."""
    if score is None:
        return False
    return score >= threshold if direction == "higher" else score < threshold


def sweep(
    scores: Sequence[float | None],
    positive: Sequence[bool],
    thresholds: Iterable[float],
    direction: Direction = "higher",
) -> list[Point]:
    """One Point per threshold: each image is one prediction, positive when its score
    passes the threshold; ``positive`` tells which images truly have the label."""
    if len(scores) != len(positive):
        raise ValueError("one truth per score")
    points = []
    for threshold in thresholds:
        tp = fp = fn = 0
        for score, truth in zip(scores, positive, strict=True):
            hit = predicted(score, threshold, direction)
            if hit and truth:
                tp += 1
            elif hit:
                fp += 1
            elif truth:
                fn += 1
        points.append(Point(threshold, tp, fp, fn))
    return points


def recommend(
    points: Sequence[Point], target: Target, direction: Direction = "higher"
) -> Point | None:
    """The point of the recommended threshold, or None when no threshold meets the target.

    Several thresholds often score the same on a small set (every one between the surest
    negative and the least sure positive): the middle one of them is taken, so that an image
    a little different from these ones falls on the same side."""
    useful = [p for p in points if p.tp]
    if target.metric == "f1":
        meeting = useful
        key = lambda p: (round(p.f1, 12),)  # noqa: E731
    elif target.metric == "precision":
        assert target.value is not None
        meeting = [p for p in useful if p.precision >= target.value - 1e-12]
        key = lambda p: (round(p.recall, 12), round(p.precision, 12))  # noqa: E731
    else:
        assert target.value is not None
        meeting = [p for p in useful if p.recall >= target.value - 1e-12]
        key = lambda p: (round(p.precision, 12), round(p.recall, 12))  # noqa: E731
    if not meeting:
        return None
    best = max(key(p) for p in meeting)
    tied = sorted((p for p in meeting if key(p) == best), key=lambda p: p.threshold)
    return tied[(len(tied) - 1) // 2 if direction == "higher" else len(tied) // 2]


# --- boxes -------------------------------------------------------------------------------

Box = tuple[float, float, float, float]  # left, top, width, height


def iou(a: Box, b: Box) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    width = min(ax2, bx2) - max(a[0], b[0])
    height = min(ay2, by2) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class ApResult:
    ap: float  # 0..1
    truths: int  # boxes annotated (crowd regions not counted)
    detections: int  # boxes found
    true_positives: int  # of them, matched to an annotated box at IoU >= 0.5


def average_precision(
    detections: Sequence[tuple[str, float, Box]],
    truths: dict[str, list[Box]],
    crowds: dict[str, list[Box]] | None = None,
    iou_threshold: float = 0.5,
) -> ApResult:
    """AP of one label's boxes over a set of images, as PASCAL VOC (2010 on) computes it.

    ``detections``: (image, confidence, box); ``truths``: the annotated boxes of each image.
    Detections are taken most confident first; each is a true positive when its best-overlap
    annotated box of the same image, not yet taken, overlaps it by IoU >= ``iou_threshold``,
    else a false positive; one overlapping a crowd region (COCO ``iscrowd``) and no box is
    neither. AP is the area under the precision-recall curve made monotone (all points)."""
    crowds = crowds or {}
    total = sum(len(boxes) for boxes in truths.values())
    taken: dict[str, set[int]] = {image: set() for image in truths}
    hits: list[bool] = []
    for image, _confidence, box in sorted(detections, key=lambda d: -d[1]):
        candidates = truths.get(image, [])
        best, best_iou = None, iou_threshold
        for index, truth in enumerate(candidates):
            if index in taken[image]:
                continue
            overlap = iou(box, truth)
            if overlap >= best_iou:
                best, best_iou = index, overlap
        if best is not None:
            taken[image].add(best)
            hits.append(True)
        elif any(iou(box, crowd) >= iou_threshold for crowd in crowds.get(image, [])):
            continue
        else:
            hits.append(False)
    if total == 0:
        return ApResult(0.0, 0, len(hits), 0)
    precisions, recalls = [], []
    tp = 0
    for rank, hit in enumerate(hits, 1):
        tp += hit
        precisions.append(tp / rank)
        recalls.append(tp / total)
    # The monotone envelope, then the area under the steps.
    for index in range(len(precisions) - 2, -1, -1):
        precisions[index] = max(precisions[index], precisions[index + 1])
    ap, previous_recall = 0.0, 0.0
    for precision, recall in zip(precisions, recalls, strict=True):
        ap += (recall - previous_recall) * precision
        previous_recall = recall
    return ApResult(ap, total, len(hits), tp)


# --- text --------------------------------------------------------------------------------

_SPACES = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Runs of white space (line breaks too) as one space, none at the ends: a page read as
    other line breaks than its transcript's is not an error."""
    return _SPACES.sub(" ", text).strip()


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one element each)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, item_a in enumerate(a, 1):
        current = [i]
        for j, item_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (item_a != item_b))
            )
        previous = current
    return previous[-1]


@dataclass(frozen=True)
class TextErrors:
    char_errors: int
    chars: int  # in the expected text
    word_errors: int
    words: int

    @property
    def cer(self) -> float:
        return self.char_errors / self.chars if self.chars else float(self.char_errors > 0)

    @property
    def wer(self) -> float:
        return self.word_errors / self.words if self.words else float(self.word_errors > 0)


def text_errors(found: str, expected: str) -> TextErrors:
    """Edit distances of the found text to the expected one, by characters (spaces counted)
    and by words, both after normalise_text; case and punctuation count."""
    found, expected = normalise_text(found), normalise_text(expected)
    found_words, expected_words = found.split(), expected.split()
    return TextErrors(
        edit_distance(found, expected),
        len(expected),
        edit_distance(found_words, expected_words),
        len(expected_words),
    )


def total_text_errors(each: Iterable[TextErrors]) -> TextErrors:
    """Over many images: errors summed over lengths summed (long pages weigh more)."""
    items = list(each)
    return TextErrors(
        sum(e.char_errors for e in items),
        sum(e.chars for e in items),
        sum(e.word_errors for e in items),
        sum(e.words for e in items),
    )
