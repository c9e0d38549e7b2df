"""`imagerecognize evaluate`: the metrics on synthetic scores (fast), the layouts' refusals
(fast, before any model loads), and real runs on labelled folders of the test photos (slow):
the report's numbers against a count made here from the analysis lines, a second run that
analyses nothing, the page and its pictures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image, ImageOps

import server.cli
from server.collection.evaluate.metrics import (
    Point,
    Target,
    average_precision,
    edit_distance,
    iou,
    recommend,
    sweep,
    text_errors,
    total_text_errors,
)
from server.settings import Settings
from tests.conftest import encode, make_settings

# --- the metrics, on scores made up here ---------------------------------------------------


def test_sweep_counts_each_image_once_per_threshold() -> None:
    scores = [90.0, 80.0, 70.0, 60.0, None, 40.0]
    truth = [True, False, True, True, True, False]
    points = {p.threshold: p for p in sweep(scores, truth, [0, 50, 65, 75, 85, 95])}
    # None (label absent from the answer) is never a detection, even at 0.
    assert (points[0].tp, points[0].fp, points[0].fn) == (3, 2, 1)
    assert (points[50].tp, points[50].fp, points[50].fn) == (3, 1, 1)
    assert (points[65].tp, points[65].fp, points[65].fn) == (2, 1, 2)
    assert (points[85].tp, points[85].fp, points[85].fn) == (1, 0, 3)
    assert (points[95].tp, points[95].fp, points[95].fn) == (0, 0, 4)
    assert points[50].precision == pytest.approx(0.75)
    assert points[50].recall == pytest.approx(0.75)
    assert points[50].f1 == pytest.approx(0.75)
    assert points[95].precision == 0.0  # nothing predicted: never meets a target


def test_a_score_equal_to_the_threshold_counts_as_the_api_does() -> None:
    # min_confidence keeps confidence >= it; a face matches at a distance strictly below.
    assert sweep([50.0], [True], [50])[0].tp == 1
    assert sweep([0.5], [True], [0.5], "lower")[0].tp == 0
    assert sweep([0.49], [True], [0.5], "lower")[0].tp == 1


def test_recommendation_for_each_target() -> None:
    scores = [95.0, 90.0, 85.0, 70.0, 60.0, 55.0, 30.0, 20.0]
    truth = [True, True, False, True, True, False, True, False]
    curve = sweep(scores, truth, range(101))
    best = recommend(curve, Target())
    assert best is not None
    # Best F1: every threshold from 21 to 30 takes the five positives and two negatives;
    # the middle of the tie is taken.
    assert best.f1 == pytest.approx(2 * (5 / 7) * 1 / (5 / 7 + 1))
    assert best.threshold == 25
    precise = recommend(curve, Target("precision", 0.95))
    assert precise is not None and precise.precision >= 0.95
    # 86..90: the two surest positives only; the middle of them.
    assert (precise.tp, precise.fp, precise.threshold) == (2, 0, 88)
    recalled = recommend(curve, Target("recall", 0.8))
    assert recalled is not None and recalled.recall >= 0.8
    # Recall 0.8 or more below 61; the best precision there is 4/5, at 56..60.
    assert (recalled.tp, recalled.fp, recalled.threshold) == (4, 1, 58)
    assert recommend(curve, Target("precision", 1.0)) is not None
    assert recommend(sweep([10.0], [False], range(101)), Target()) is None


def test_recall_target_prefers_the_best_precision() -> None:
    curve = [Point(10, 5, 5, 0), Point(20, 4, 1, 1), Point(30, 4, 0, 1), Point(40, 1, 0, 4)]
    chosen = recommend(curve, Target("recall", 0.8))
    assert chosen is not None and chosen.threshold == 30


def test_distance_thresholds_tie_towards_the_middle() -> None:
    curve = sweep([0.2, 0.3, 0.9], [True, True, False], [0.1, 0.4, 0.5, 0.6, 0.7, 0.8], "lower")
    chosen = recommend(curve, Target(), "lower")
    assert chosen is not None and chosen.threshold == 0.6


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, Target()),
        ("f1", Target()),
        ("precision=0.95", Target("precision", 0.95)),
        ("recall=90", Target("recall", 0.9)),
        (" Recall = 0.5", Target("recall", 0.5)),
    ],
)
def test_targets_parse(text: str | None, expected: Target) -> None:
    assert Target.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["accuracy=0.9", "precision", "precision=high", "recall=0", "recall=101"]
)
def test_bad_targets_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"precision|recall|number|between"):
        Target.parse(text)


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_average_precision_by_hand() -> None:
    truths = {"a": [(0, 0, 10, 10)], "b": [(0, 0, 10, 10)], "c": []}
    detections = [
        ("a", 0.9, (0, 0, 10, 10)),  # TP
        ("c", 0.8, (0, 0, 10, 10)),  # FP
        ("a", 0.75, (1, 1, 10, 10)),  # FP: a's box is taken already
        ("b", 0.7, (1, 0, 10, 10)),  # TP (IoU 0.82)
    ]
    # Precision 1, 1/2, 1/3, 1/2 at recall 1/2, 1/2, 1/2, 1 -> envelope 1, 1/2, 1/2, 1/2.
    result = average_precision(detections, truths)
    assert result.ap == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    assert (result.truths, result.detections, result.true_positives) == (2, 4, 2)
    # A box on a crowd region is neither right nor wrong.
    crowded = average_precision(detections, truths, {"c": [(0, 0, 10, 10)]})
    assert crowded.detections == 3
    assert crowded.ap == pytest.approx(0.5 + 0.5 * 2 / 3)
    # An overlap under 0.5 is a false positive; nothing annotated gives AP 0.
    assert average_precision([("a", 0.9, (5, 5, 10, 10))], truths).ap == 0.0
    assert average_precision([], {"a": []}).ap == 0.0


def test_edit_distance_and_error_rates() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance(["a", "b"], ["a", "b"]) == 0
    errors = text_errors("Open daily from 8:30\nto 19:00", "Open  daily from 8:30 to 19:00")
    assert errors.char_errors == 0 and errors.word_errors == 0  # line breaks are spaces
    errors = text_errors("Opon daily", "Open daily from")
    assert (errors.char_errors, errors.chars) == (1 + 5, 15)
    assert (errors.word_errors, errors.words) == (2, 3)
    assert errors.cer == pytest.approx(6 / 15)
    assert errors.wer == pytest.approx(2 / 3)
    total = total_text_errors([errors, text_errors("abc", "abc")])
    assert total.cer == pytest.approx(6 / 18)
    assert text_errors("", "").cer == 0.0 and text_errors("x", "").cer == 1.0


# --- refusals before any analysis ----------------------------------------------------------


def evaluate(settings: Settings, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """`imagerecognize evaluate ARGS` in this process, on ``settings``."""
    monkeypatch.setattr(server.cli, "get_settings", lambda: settings)
    return server.cli.main(["evaluate", *args])


def tiny_jpeg(path: Path, color: tuple[int, int, int] = (120, 80, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(Image.new("RGB", (64, 48), color)))


@pytest.mark.parametrize(
    ("layout", "type_", "message"),
    [
        ({}, "objects", "has no sub-folders"),
        ({"cat": None}, "objects", "cat/ holds no files"),
        ({"none/a.jpg": 1}, "objects", "holds only none/"),
        ({"catt/a.jpg": 1, "none/b.jpg": 1}, "objects", "catt/ (did you mean cat"),
        ({"porn/a.jpg": 1}, "nsfw", "nsfw accepts nsfw/, sfw/"),
        ({"face/a.jpg": 1}, "detect_faces", "detect_faces accepts faces/, or none/"),
        ({"a.jpg": 1, "b.txt": 1}, "detect_text", "no image with a .txt beside it"),
    ],
)
def test_bad_folders_exit_2_with_a_clear_message(
    tmp_path: Path,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    layout: dict[str, int | None],
    type_: str,
    message: str,
) -> None:
    root = tmp_path / "labelled"
    root.mkdir()
    for name, content in layout.items():
        if content is None:
            (root / name).mkdir()
        else:
            tiny_jpeg(root / name)
    status = evaluate(
        settings, monkeypatch, str(root), "--type", type_, "--out", str(tmp_path / "r")
    )
    err = capsys.readouterr().err
    assert status == 2, err
    assert message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "r" / "analysis").exists()  # nothing analysed


def test_missing_folder_bad_target_and_annotations_exit_2(
    tmp_path: Path,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = str(tmp_path / "r")
    assert (
        evaluate(settings, monkeypatch, str(tmp_path / "nope"), "--type", "nsfw", "--out", out) == 2
    )
    assert "no such folder" in capsys.readouterr().err
    tiny_jpeg(tmp_path / "set" / "nsfw" / "a.jpg")
    args = (str(tmp_path / "set"), "--type", "nsfw", "--out", out)
    assert evaluate(settings, monkeypatch, *args, "--target", "accuracy=1") == 2
    assert "give precision=P or recall=R" in capsys.readouterr().err
    assert evaluate(settings, monkeypatch, *args, "--annotations", "x.json") == 2
    assert "works with objects and detect_faces" in capsys.readouterr().err
    broken = tmp_path / "instances.json"
    broken.write_text("{not json")
    objects = (str(tmp_path / "set"), "--type", "objects", "--out", out, "--annotations")
    assert evaluate(settings, monkeypatch, *objects, str(broken)) == 2
    assert "is not JSON" in capsys.readouterr().err
    broken.write_text(json.dumps({"images": [], "annotations": []}))
    assert evaluate(settings, monkeypatch, *objects, str(broken)) == 2
    assert "is not COCO instances" in capsys.readouterr().err
    coco = {
        "images": [{"id": 1, "file_name": "nsfw/a.jpg"}],
        "annotations": [{"image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5]}],
        "categories": [{"id": 7, "name": "unicorn"}],
    }
    broken.write_text(json.dumps(coco))
    assert evaluate(settings, monkeypatch, *objects, str(broken)) == 2
    assert "categories objects does not know: unicorn" in capsys.readouterr().err


def test_celebrities_needs_enrolled_people(
    tmp_path: Path,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tiny_jpeg(tmp_path / "set" / "Ada Lovelace" / "a.jpg")
    args = (str(tmp_path / "set"), "--type", "celebrities", "--out", str(tmp_path / "r"))
    assert evaluate(settings, monkeypatch, *args) == 2
    assert "the gallery is empty" in capsys.readouterr().err


def test_layout_reports_each_file_it_cannot_use(tmp_path: Path) -> None:
    from server.collection.evaluate.layouts import read_text_folder

    tiny_jpeg(tmp_path / "sign.jpg")
    (tmp_path / "sign.txt").write_text("STOP\n")
    tiny_jpeg(tmp_path / "deeper" / "menu.png")
    (tmp_path / "deeper" / "menu.txt").write_bytes(b"\xff\xfe caf\xe9")
    tiny_jpeg(tmp_path / "lonely.jpg")
    (tmp_path / "orphan.txt").write_text("nobody")
    dataset = read_text_folder(tmp_path)
    assert [(Path(s.path).name, s.text) for s in dataset.samples] == [("sign.jpg", "STOP\n")]
    reasons = {Path(s.path).name: s.reason for s in dataset.skipped}
    assert reasons == {
        "menu.png": "menu.txt is not UTF-8 text",
        "lonely.jpg": "no lonely.txt beside it with its text",
        "orphan.txt": "a .txt with no image of the same name beside it",
    }


# --- real runs ------------------------------------------------------------------------------


def photo(path: Path, image: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=92)


def report_of(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def analysis_lines(report: dict) -> dict[str, dict]:
    lines = {}
    for raw in Path(report["analysis"]["results_file"]).read_text().splitlines():
        line = json.loads(raw)
        lines[line["path"]] = line
    return lines


def count_pipeline_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from server.pipeline.analysis import AnalysisPipeline

    calls: list[str] = []
    original = AnalysisPipeline.analyze

    async def counted(self, data, type_, params):  # type: ignore[no-untyped-def]
        calls.append(type_)
        return await original(self, data, type_, params)

    monkeypatch.setattr(AnalysisPipeline, "analyze", counted)
    return calls


def check_page(out: Path) -> str:
    page = (out / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # offline
    pictures = [part.split('"')[0] for part in page.split('src="')[1:]]
    assert pictures
    for picture in pictures:
        assert not os.path.isabs(picture)
        assert (out / picture).is_file(), picture
        with Image.open(out / picture) as image:
            image.verify()
    return page


@pytest.mark.slow
def test_objects_report_matches_a_count_by_hand_and_a_second_run_analyses_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    reference_photos: dict[str, Image.Image],
) -> None:
    settings = make_settings(tmp_path / "data")
    root = tmp_path / "labelled"
    layout = {
        "cat": ["chelsea"],
        "person": ["astronaut", "grace_hopper"],
        "cup": ["coffee"],
        "none": ["rocket", "china", "flower"],
    }
    for label, names in layout.items():
        for name in names:
            photo(root / label / f"{name}.jpg", reference_photos[name])
    # A person photo seen small and grey: a harder positive, likely a miss at high thresholds.
    small = ImageOps.grayscale(reference_photos["grace_hopper"]).resize((48, 60)).convert("RGB")
    photo(root / "person" / "small_grey.jpg", small)
    (root / "none" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    (root / "none" / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    out = tmp_path / "report"
    calls = count_pipeline_calls(monkeypatch)

    assert evaluate(settings, monkeypatch, str(root), "--type", "objects", "--out", str(out)) == 0
    captured = capsys.readouterr()
    assert len(calls) == 9  # the eight photos and the broken file; the dangling link is not read
    assert "analysis: 9 images analysed, 0 reused" in captured.err
    assert f"skipped {root / 'none' / 'broken.jpg'}: 412 Invalid file" in captured.err
    assert "Traceback" not in captured.err
    assert f"skipped {root / 'none' / 'gone.jpg'}: Invalid file: cannot read" in captured.err
    report = report_of(out)
    assert report["images"]["used"] == 8
    assert set(report["labels"]) == {"cat", "cup", "person"}
    assert report["analysis"]["params"] == {"max_labels": 1000, "min_confidence": 0}

    # The count by hand, from the analysis lines, at each recommended threshold.
    lines = analysis_lines(report)
    images = {p for p in lines if lines[p]["status"] == 200}
    for label, entry in report["labels"].items():
        threshold = entry["recommended_threshold"]
        assert isinstance(threshold, int | float) and entry["target_met"]
        tp = fp = fn = 0
        for path in images:
            confidences = [
                o["confidence"] for o in lines[path]["data"]["objects"] if o["name"] == label
            ]
            detected = bool(confidences) and max(confidences) >= threshold
            truly = Path(path).parent.name == label
            tp += detected and truly
            fp += detected and not truly
            fn += truly and not detected
        assert (entry["tp"], entry["fp"], entry["fn"]) == (tp, fp, fn), label
        assert entry["support"] == tp + fn == len(list((root / label).iterdir()))
        assert entry["precision"] == pytest.approx(tp / (tp + fp), abs=1e-4)
        assert entry["recall"] == pytest.approx(tp / (tp + fn), abs=1e-4)
        assert len(entry["curve"]) == 101
        at = next(p for p in entry["curve"] if p["threshold"] == threshold)
        assert at["f1"] == max(p["f1"] for p in entry["curve"])  # default target: best F1
    assert report["labels"]["cat"]["tp"] == 1 and report["labels"]["cup"]["tp"] == 1
    table = captured.out
    assert table.splitlines()[0].split() == [
        "label",
        "support",
        "threshold",
        "precision",
        "recall",
        "F1",
        "TP",
        "FP",
        "FN",
    ]
    page = check_page(out)
    assert "broken.jpg" in page  # files not used are listed
    for label in report["labels"]:
        assert f"<h2>{label}</h2>" in page

    # Another target: nothing analysed again, no model even loaded.
    calls.clear()
    status = evaluate(
        settings,
        monkeypatch,
        str(root),
        "--type",
        "objects",
        "--out",
        str(out),
        "--target",
        "recall=1",
    )
    assert status == 0
    assert calls == []
    assert "analysis: 0 images analysed, 9 reused" in capsys.readouterr().err
    again = report_of(out)
    assert again["analysis"]["analysed"] == 0 and again["analysis"]["reused"] == 9
    person = again["labels"]["person"]
    assert person["recall"] == 1.0 and person["fn"] == 0
    assert person["recommended_threshold"] <= report["labels"]["person"]["recommended_threshold"]


@pytest.mark.slow
def test_detect_faces_folders_and_boxes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    reference_photos: dict[str, Image.Image],
) -> None:
    from tests.test_faces import ASTRONAUT_BOX, GRACE_HOPPER_BOX

    settings = make_settings(tmp_path / "data")
    root = tmp_path / "faces-set"
    for name in ("astronaut", "grace_hopper"):
        photo(root / "faces" / f"{name}.jpg", reference_photos[name])
    for name in ("rocket", "coffee", "flower"):
        photo(root / "none" / f"{name}.jpg", reference_photos[name])
    out = tmp_path / "report"
    assert (
        evaluate(settings, monkeypatch, str(root), "--type", "detect_faces", "--out", str(out)) == 0
    )
    face = report_of(out)["labels"]["face"]
    assert (face["support"], face["negatives"]) == (2, 3)
    assert face["recall"] == 1.0 and face["precision"] == 1.0

    # COCO boxes: the two measured faces, and one face nobody will find on the coffee cup.
    def xywh(box: tuple[int, int, int, int]) -> list[int]:
        return [box[0], box[1], box[2] - box[0], box[3] - box[1]]

    coco = {
        "images": [
            {"id": 1, "file_name": "faces/astronaut.jpg"},
            {"id": 2, "file_name": "faces/grace_hopper.jpg"},
            {"id": 3, "file_name": "none/coffee.jpg"},
            {"id": 4, "file_name": "none/rocket.jpg"},
        ],
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": xywh(ASTRONAUT_BOX)},
            {"image_id": 2, "category_id": 1, "bbox": xywh(GRACE_HOPPER_BOX)},
            {"image_id": 3, "category_id": 1, "bbox": [10, 10, 40, 40]},
        ],
        "categories": [{"id": 1, "name": "face"}],
    }
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps(coco))
    calls = count_pipeline_calls(monkeypatch)
    args = (
        str(root),
        "--type",
        "detect_faces",
        "--out",
        str(out),
        "--annotations",
        str(annotations),
    )
    assert evaluate(settings, monkeypatch, *args) == 0
    assert calls == []  # the same images: analysed by the first run
    err = capsys.readouterr().err
    assert f"skipped {root / 'none' / 'flower.jpg'}: not listed in instances.json" in err
    report = report_of(out)
    face = report["labels"]["face"]
    assert face["boxes"] == {"annotated": 3, "found": 2, "matched": 2}
    assert face["ap50"] == pytest.approx(2 / 3, abs=1e-4)
    assert (face["support"], face["negatives"]) == (3, 1)  # coffee is annotated with a face
    assert [Path(m["path"]).name for m in face["mistakes"]["misses"]] == ["coffee.jpg"]
    page = check_page(out)
    assert page.count('src="thumbnails/') == 1  # the miss, as a thumbnail


@pytest.mark.slow
def test_celebrities_rates_against_the_threshold_in_use(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    reference_photos: dict[str, Image.Image],
) -> None:
    settings = make_settings(tmp_path / "data")
    enrolment = tmp_path / "enrol" / "Eileen Collins" / "astronaut.png"
    enrolment.parent.mkdir(parents=True)
    reference_photos["astronaut"].save(enrolment)
    monkeypatch.setattr(server.cli, "get_settings", lambda: settings)
    assert server.cli.main(["gallery", "import", str(tmp_path / "enrol")]) == 0
    root = tmp_path / "people"
    astronaut = reference_photos["astronaut"]
    photo(root / "Eileen Collins" / "flipped.jpg", ImageOps.mirror(astronaut))
    photo(root / "Eileen Collins" / "half.jpg", astronaut.resize((256, 256)))
    photo(root / "unknown" / "grace.jpg", reference_photos["grace_hopper"])
    photo(root / "unknown" / "cat.jpg", reference_photos["chelsea"])
    out = tmp_path / "report"
    status = evaluate(settings, monkeypatch, str(root), "--type", "celebrities", "--out", str(out))
    captured = capsys.readouterr()
    assert status == 0, captured.err
    report = report_of(out)
    rates = report["celebrities"]
    assert rates["threshold_in_use"] == 0.5 and rates["analysed_threshold"] == 1.5
    assert (rates["enrolled_images"], rates["stranger_images"]) == (2, 2)
    # By hand: distances back from the confidences of the analysis at threshold 1.5.
    lines = analysis_lines(report)
    distances = {}
    for path, line in lines.items():
        matched = [o for o in line["data"]["objects"] if o["name"] == "Eileen Collins"]
        distances[Path(path).name] = min(
            (2 * 1.5 * (1 - o["confidence"] / 100) for o in matched), default=None
        )
    assert distances["flipped.jpg"] < 0.5 and distances["half.jpg"] < 0.5
    in_use = rates["at_threshold_in_use"]
    strangers_matched = sum(
        1
        for name in ("grace.jpg", "cat.jpg")
        if distances[name] is not None and distances[name] < 0.5
    )
    assert in_use["true_match_rate"] == 1.0
    assert in_use["false_match_rate"] == strangers_matched / 2 == 0.0
    recommended = rates["recommended_threshold"]
    assert recommended is not None
    grace = distances["grace.jpg"]
    # Between the farthest own photo and the nearest stranger.
    assert max(distances["flipped.jpg"], distances["half.jpg"]) < recommended
    assert grace is None or recommended <= grace
    assert f"set IMAGERECOGNIZE_CELEBRITIES_THRESHOLD={recommended:g}" in captured.out
    person = report["labels"]["Eileen Collins"]
    assert (person["tp"], person["fp"], person["fn"]) == (2, 0, 0)
    check_page(out)


@pytest.mark.slow
def test_detect_text_error_rates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from scripts.rendered_text import edit_distance as reference_distance
    from scripts.rendered_text import render_pages

    settings = make_settings(tmp_path / "data")
    root = tmp_path / "pages"
    root.mkdir()
    pages = render_pages()[:3]
    for index, page in enumerate(pages):
        (root / f"page{index}.jpg").write_bytes(page.image)
        (root / f"page{index}.txt").write_text("\n".join(page.lines) + "\n")
    # A blank image whose transcript says otherwise: every character missed.
    (root / "blank.jpg").write_bytes(encode(Image.new("RGB", (300, 100), (250, 250, 250))))
    (root / "blank.txt").write_text("Nothing here")
    out = tmp_path / "report"
    assert (
        evaluate(settings, monkeypatch, str(root), "--type", "detect_text", "--out", str(out)) == 0
    )
    capsys.readouterr()
    text = report_of(out)["text"]
    by_name = {Path(image["path"]).name: image for image in text["images"]}
    assert by_name["blank.jpg"]["cer"] == 1.0 and by_name["blank.jpg"]["wer"] == 1.0
    errors = chars = 0
    for index, page in enumerate(pages):
        image = by_name[f"page{index}.jpg"]
        found = " ".join(image["found"].split())
        expected = " ".join(page.lines)
        assert image["char_errors"] == reference_distance(found, expected)
        errors += image["char_errors"]
        chars += len(expected)
        assert image["cer"] < 0.2  # clean rendered lines are read nearly right
    errors += len("Nothing here")
    chars += len("Nothing here")
    assert text["cer"] == pytest.approx(errors / chars, abs=1e-4)
    check_page(out)
