"""The objects labels' display names and parent categories (models/objects/hierarchy.py),
for the dialects that answer them (Rekognition's DetectLabels)."""

from __future__ import annotations

from models.objects.hierarchy import LabelHierarchy, label_hierarchy

__all__ = ["LabelHierarchy", "label_hierarchy"]
