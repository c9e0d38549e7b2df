"""From the analysis lines and the truth to the report's numbers: per label sweeps (objects,
nsfw, detect_faces), gallery matches (celebrities) and error rates (detect_text).

The report is a plain dict, written as report.json; its keys are documented in
docs/evaluate.md and kept stable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.collection.evaluate.layouts import FACE, Dataset, Sample
from server.collection.evaluate.metrics import (
    Box,
    Direction,
    Point,
    Target,
    average_precision,
    predicted,
    recommend,
    sweep,
    text_errors,
    total_text_errors,
)

MISTAKES_KEPT = 20  # per label and kind, most telling first
CONFIDENCE_GRID = tuple(range(101))  # min_confidence and nsfw_min_confidence are integers


@dataclass(frozen=True)
class Found:
    """One thing an answer names: a label (objects, nsfw), a face, a person."""

    name: str
    confidence: float
    box: Box | None = None


def _box(box: dict[str, Any]) -> Box:
    return (float(box["left"]), float(box["top"]), float(box["width"]), float(box["height"]))


def found_in(data: dict[str, Any], type_: str) -> tuple[dict[str, float], list[Found]]:
    """(score of each label named in the answer, the boxes of the answer)."""
    scores: dict[str, float] = {}
    boxes: list[Found] = []
    for item in data.get("objects") or []:
        if type_ == "detect_faces":
            name, confidence = FACE, float(item["confidence"])
            boxes.append(Found(name, confidence, _box(item["box"])))
        else:
            name, confidence = str(item["name"]), float(item["confidence"])
            for instance in item.get("instances") or []:
                boxes.append(Found(name, float(instance["confidence"]), _box(instance["box"])))
        scores[name] = max(confidence, scores.get(name, confidence))
    return scores, boxes


def thresholds_for(type_: str, scores: Sequence[float | None]) -> list[float]:
    """Objects and nsfw: every integer 0..100, what the API's parameters can be set to.
    detect_faces is filtered by its callers, so also every score seen."""
    grid: list[float] = list(CONFIDENCE_GRID)
    if type_ == "detect_faces":
        grid = sorted(set(grid) | {s for s in scores if s is not None})
    return grid


def label_report(
    label: str,
    samples: Sequence[Sample],
    scores: Sequence[float | None],
    thresholds: Sequence[float],
    target: Target,
    direction: Direction = "higher",
    fixed_threshold: float | None = None,
) -> dict[str, Any]:
    """One label's sweep, its recommended threshold, the numbers there and the mistakes.
    ``fixed_threshold``: evaluate there instead of choosing (celebrities' one threshold)."""
    truth = [label in sample.labels for sample in samples]
    curve = sweep(scores, truth, thresholds, direction)
    if fixed_threshold is not None:
        chosen: Point | None = sweep(scores, truth, [fixed_threshold], direction)[0]
        at, met = chosen, True
    else:
        chosen = recommend(curve, target, direction)
        met = chosen is not None
        # Unmet target: the numbers at the best F1 say how far off it is.
        at = chosen or recommend(curve, Target(), direction) or curve[0]
    assert at is not None
    false_positives, misses = [], []
    for sample, score, positive in zip(samples, scores, truth, strict=True):
        hit = predicted(score, at.threshold, direction)
        if hit and not positive:
            false_positives.append({"path": sample.path, "score": score})
        elif positive and not hit:
            misses.append({"path": sample.path, "score": score})
    # Most telling first: the surest wrong answers, the least seen right ones.
    sign = -1 if direction == "higher" else 1
    false_positives.sort(key=lambda m: sign * m["score"])
    missing = float("inf") if direction == "higher" else float("-inf")
    misses.sort(key=lambda m: -sign * (missing if m["score"] is None else m["score"]))
    return {
        "support": sum(truth),
        "negatives": len(truth) - sum(truth),
        "recommended_threshold": chosen.threshold if met and chosen else None,
        "target_met": met,
        "evaluated_at": at.threshold,
        "precision": round(at.precision, 4),
        "recall": round(at.recall, 4),
        "f1": round(at.f1, 4),
        "tp": at.tp,
        "fp": at.fp,
        "fn": at.fn,
        "curve": [point.as_dict() for point in curve],
        "mistakes": {
            "false_positives": false_positives[:MISTAKES_KEPT],
            "misses": misses[:MISTAKES_KEPT],
        },
    }


def overall(labels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Micro-average over the labels, each at its own evaluated threshold."""
    tp = sum(entry["tp"] for entry in labels.values())
    fp = sum(entry["fp"] for entry in labels.values())
    fn = sum(entry["fn"] for entry in labels.values())
    point = Point(0.0, tp, fp, fn)
    return {
        "precision": round(point.precision, 4),
        "recall": round(point.recall, 4),
        "f1": round(point.f1, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def score_labels(
    dataset: Dataset, data: dict[str, dict[str, Any]], target: Target
) -> dict[str, Any]:
    """objects, nsfw, detect_faces: each label's sweep over the images' best confidence for
    it, and AP at IoU 0.5 of its boxes when annotations give boxes."""
    samples = [s for s in dataset.samples if s.path in data]
    found = {s.path: found_in(data[s.path], dataset.type) for s in samples}
    labels: dict[str, dict[str, Any]] = {}
    for label in dataset.labels:
        scores = [found[s.path][0].get(label) for s in samples]
        entry = label_report(label, samples, scores, thresholds_for(dataset.type, scores), target)
        if dataset.boxes is not None:
            detections = [
                (s.path, f.confidence, f.box)
                for s in samples
                for f in found[s.path][1]
                if f.name == label and f.box is not None
            ]
            truths = {s.path: dataset.boxes[s.path].get(label, []) for s in samples}
            crowd_regions = dataset.crowds or {}
            crowds = {s.path: crowd_regions.get(s.path, {}).get(label, []) for s in samples}
            result = average_precision(detections, truths, crowds)
            entry["ap50"] = round(result.ap, 4)
            entry["boxes"] = {
                "annotated": result.truths,
                "found": result.detections,
                "matched": result.true_positives,
            }
        labels[label] = entry
    return {"labels": labels, "overall": overall(labels)}


# --- celebrities -------------------------------------------------------------------------


def match_distance(confidence: float, threshold: float) -> float:
    """The descriptor distance behind a match's confidence, 100 * (1 - d / (2 * threshold))
    (models/celebrities/dlib_faces.py), to 4 decimals (confidences have 2)."""
    return round(2 * threshold * (1 - confidence / 100), 4)


def matches_in(data: dict[str, Any], analysed_threshold: float) -> dict[str, float]:
    """person -> the smallest distance of a face of the image matched to them."""
    matches: dict[str, float] = {}
    for item in data.get("objects") or []:
        distance = match_distance(float(item["confidence"]), analysed_threshold)
        name = str(item["name"])
        matches[name] = min(distance, matches.get(name, distance))
    return matches


def distance_grid(analysed_threshold: float) -> list[float]:
    """Thresholds every 0.01 up to the one the images were analysed with."""
    return [round(0.01 * step, 2) for step in range(1, round(analysed_threshold * 100) + 1)]


def _rates(point: Point, stranger_matches: int, strangers: int, enrolled: int) -> dict[str, Any]:
    return {
        "threshold": point.threshold,
        # Enrolled people's images matched to themselves: the recall.
        "true_match_rate": round(point.tp / enrolled, 4) if enrolled else 0.0,
        # Strangers' images matched to anybody.
        "false_match_rate": round(stranger_matches / strangers, 4) if strangers else 0.0,
        "precision": round(point.precision, 4),
        "recall": round(point.recall, 4),
        "f1": round(point.f1, 4),
        "tp": point.tp,
        "fp": point.fp,
        "fn": point.fn,
        "stranger_matches": stranger_matches,
    }


def score_celebrities(
    dataset: Dataset,
    data: dict[str, dict[str, Any]],
    target: Target,
    analysed_threshold: float,
    threshold_in_use: float,
) -> dict[str, Any]:
    """Matches at every threshold: per person (each image one prediction: its person is
    matched or not, anyone else matched is a false positive), and over everybody."""
    samples = [s for s in dataset.samples if s.path in data]
    matches = [matches_in(data[s.path], analysed_threshold) for s in samples]
    strangers = [not s.labels for s in samples]
    grid = distance_grid(analysed_threshold)
    if threshold_in_use not in grid and threshold_in_use <= analysed_threshold:
        grid = sorted({*grid, threshold_in_use})

    def people_at(threshold: float) -> Point:
        tp = fp = fn = 0
        for sample, matched in zip(samples, matches, strict=True):
            names = {n for n, d in matched.items() if d < threshold}
            tp += len(names & sample.labels)
            fp += len(names - sample.labels)
            fn += len(sample.labels - names)
        return Point(threshold, tp, fp, fn)

    def stranger_matches(threshold: float) -> int:
        return sum(
            1
            for matched, stranger in zip(matches, strangers, strict=True)
            if stranger and any(d < threshold for d in matched.values())
        )

    enrolled = sum(not s for s in strangers)
    unknown = sum(strangers)
    curve = [people_at(t) for t in grid]
    chosen = recommend(curve, target, "lower")
    at = chosen or recommend(curve, Target(), "lower") or curve[0]
    labels = {
        person: label_report(
            person,
            samples,
            [m.get(person) for m in matches],
            grid,
            target,
            direction="lower",
            fixed_threshold=at.threshold,
        )
        for person in dataset.labels
    }
    for person, entry in labels.items():
        entry["recommended_threshold"] = chosen.threshold if chosen else None
        entry["target_met"] = chosen is not None
        # A stranger matched to this person is one of their false positives; say who matched.
        for mistake in entry["mistakes"]["false_positives"]:
            mistake["matched"] = person
    in_use = people_at(threshold_in_use)
    return {
        "labels": labels,
        "overall": overall(labels),
        "celebrities": {
            "enrolled_images": enrolled,
            "stranger_images": unknown,
            "analysed_threshold": analysed_threshold,
            "threshold_in_use": threshold_in_use,
            "at_threshold_in_use": _rates(
                in_use, stranger_matches(threshold_in_use), unknown, enrolled
            ),
            "recommended_threshold": chosen.threshold if chosen else None,
            "target_met": chosen is not None,
            "at_recommended": _rates(at, stranger_matches(at.threshold), unknown, enrolled),
            "curve": [_rates(p, stranger_matches(p.threshold), unknown, enrolled) for p in curve],
        },
    }


# --- detect_text -------------------------------------------------------------------------


def found_text(data: dict[str, Any]) -> str:
    if isinstance(data.get("text"), str):
        return data["text"]
    return "\n".join(str(item.get("text", "")) for item in data.get("objects") or [])


def score_text(dataset: Dataset, data: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """CER and WER of each image and over all of them."""
    images = []
    each = []
    for sample in dataset.samples:
        if sample.path not in data:
            continue
        text = found_text(data[sample.path])
        errors = text_errors(text, sample.text or "")
        each.append(errors)
        images.append(
            {
                "path": sample.path,
                "cer": round(errors.cer, 4),
                "wer": round(errors.wer, 4),
                "char_errors": errors.char_errors,
                "chars": errors.chars,
                "word_errors": errors.word_errors,
                "words": errors.words,
                "expected": sample.text,
                "found": text,
            }
        )
    total = total_text_errors(each)
    images.sort(key=lambda image: (-image["cer"], image["path"]))
    return {
        "labels": {},
        "text": {
            "cer": round(total.cer, 4),
            "wer": round(total.wer, 4),
            "char_errors": total.char_errors,
            "chars": total.chars,
            "word_errors": total.word_errors,
            "words": total.words,
            "images": images,
        },
    }
