"""The Rekognition dialect's output shapes from /api/v2/'s analyses (no model: made-up
analyses in /api/v2/'s shape)."""

from __future__ import annotations

from server.http.rekognition import shapes
from server.service.labels import label_hierarchy


def test_labels_with_parents_as_labels_of_their_own() -> None:
    hierarchy = label_hierarchy()
    objects = [
        {"name": "cup", "confidence": 96.5, "instances": [
            {"confidence": 96.5, "box": {"left": 10, "top": 20, "width": 100, "height": 50}}
        ]},
        {"name": "espresso", "confidence": 85.2, "instances": []},
        {"name": "tabby", "confidence": 60.0, "instances": []},
    ]
    labels = shapes.labels(
        objects, 200, 100,
        display_name=hierarchy.display_name,
        parents=hierarchy.parents,
        category_parents=hierarchy.category_parents,
        max_labels=None,
    )
    names = [label["Name"] for label in labels]
    # A label found comes before the parents it implies at the same confidence.
    assert names[:2] == ["Cup", "Container"]
    order = [names.index(name) for name in ("Espresso", "Beverage", "Food", "Tabby")]
    assert order == sorted(order)
    cup = labels[0]
    box = cup["Instances"][0]["BoundingBox"]
    assert box == {"Width": 0.5, "Height": 0.5, "Left": 0.05, "Top": 0.2}
    beverage = next(label for label in labels if label["Name"] == "Beverage")
    assert beverage["Instances"] == [] and beverage["Parents"] == [{"Name": "Food"}]
    assert beverage["Confidence"] == 85.2
    cat = next(label for label in labels if label["Name"] == "Cat")
    assert [p["Name"] for p in cat["Parents"]] == ["Mammal", "Animal"]
    limited = shapes.labels(
        objects, 200, 100, display_name=hierarchy.display_name, parents=hierarchy.parents,
        category_parents=hierarchy.category_parents, max_labels=2,
    )
    assert [label["Name"] for label in limited] == ["Cup", "Container"]


def test_lines_and_their_words() -> None:
    lines = [
        {"text": "Hello  wide world", "confidence": 97.0,
         "box": {"left": 0, "top": 0, "width": 170, "height": 10},
         "polygon": [[0, 0], [170, 0], [170, 10], [0, 10]]},
        {"text": "again", "confidence": 90.0,
         "box": {"left": 0, "top": 20, "width": 50, "height": 10}},
    ]
    found = shapes.text_detections(lines, 200, 40)
    assert [(d["Type"], d["DetectedText"], d["Id"], d.get("ParentId")) for d in found] == [
        ("LINE", "Hello  wide world", 0, None),
        ("LINE", "again", 1, None),
        ("WORD", "Hello", 2, 0),
        ("WORD", "wide", 3, 0),
        ("WORD", "world", 4, 0),
        ("WORD", "again", 5, 1),
    ]
    hello, wide = found[2]["Geometry"], found[3]["Geometry"]
    # A word's share of its line by character position: "Hello" is 5 of 17 characters.
    assert hello["BoundingBox"]["Left"] == 0 and round(hello["BoundingBox"]["Width"], 4) == 0.25
    assert round(wide["BoundingBox"]["Left"], 4) == round(7 / 17 * 170 / 200, 4)
    assert len(wide["Polygon"]) == 4 and wide["Polygon"][0]["Y"] == 0.0


def test_one_moderation_label_from_the_nsfw_score() -> None:
    objects = [{"name": "sfw", "confidence": 70.0}, {"name": "nsfw", "confidence": 30.0}]
    assert shapes.moderation_labels(objects, 50.0) == []
    assert shapes.moderation_labels(objects, 20.0) == [
        {"Confidence": 30.0, "Name": "Explicit", "ParentName": "", "TaxonomyLevel": 1}
    ]
