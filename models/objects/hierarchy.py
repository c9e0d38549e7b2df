"""The objects labels' display names and parent categories (``tabby`` → ``Tabby``, parents
``Cat``, ``Pet``, ``Mammal``, ``Animal``), from WordNet 3.0's hypernyms, kept in
label_hierarchy.json beside this file (made by scripts/label_hierarchy.py; source licence in
WORDNET_LICENSE.txt). Nothing here reads WordNet itself."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

HIERARCHY_FILE = Path(__file__).with_name("label_hierarchy.json")


@dataclass(frozen=True)
class LabelHierarchy:
    labels: dict[str, tuple[str, tuple[str, ...]]]  # our name -> (display name, parents)
    categories: dict[str, tuple[str, ...]]  # a category's display name -> its parents

    def display_name(self, label: str) -> str:
        """``dining table`` → ``Dining Table``; a name not in the file is title-cased."""
        known = self.labels.get(label)
        if known is not None:
            return known[0]
        return " ".join(w[:1].upper() + w[1:] for w in label.split(" "))

    def parents(self, label: str) -> tuple[str, ...]:
        """A label's categories, most specific first; () for a name not in the file."""
        known = self.labels.get(label)
        return () if known is None else known[1]

    def category_parents(self, category: str) -> tuple[str, ...]:
        return self.categories.get(category, ())


@cache
def label_hierarchy() -> LabelHierarchy:
    tree = json.loads(HIERARCHY_FILE.read_text("utf-8"))
    return LabelHierarchy(
        {k: (v["name"], tuple(v["parents"])) for k, v in tree["labels"].items()},
        {k: tuple(v) for k, v in tree["categories"].items()},
    )
