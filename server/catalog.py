"""Every type of the API with its parameters: the analysis types of models/types.py and the
API's own ``cache`` (this key's stored results). Settings, checks, the CLI, OpenAPI, the
page and the request metrics read it; nothing else spells a type's name or parameters."""

from __future__ import annotations

from models.types import (
    ANALYSIS_TYPES,
    API_TYPES,
    CELEBRITIES,
    DETECT_FACES,
    DETECT_TEXT,
    MAX_INT,
    NSFW,
    OBJECTS,
    AnalysisType,
    IntParameter,
)

CACHE_TYPE = "cache"
# The type whose model enrols, recognises and compares faces: the gallery's.
FACES_TYPE = CELEBRITIES.name
CACHE_DEFAULT_LIMIT = 10
MAX_RESULT_ID_CHARS = 32  # StoredResult.id: a uuid4 in hex

TYPES: dict[str, AnalysisType] = {
    **ANALYSIS_TYPES,
    CACHE_TYPE: AnalysisType(
        CACHE_TYPE,
        "this key's stored results, newest first, or one by its id",
        (
            IntParameter(
                "limit", 1, 100, False, f"most results returned (default {CACHE_DEFAULT_LIMIT})",
                CACHE_DEFAULT_LIMIT,
            ),
        ),
    ),
}
ALL_TYPES: tuple[str, ...] = tuple(TYPES)
TYPE_PARAMETERS: dict[str, dict[str, IntParameter]] = {
    t.name: {p.name: p for p in t.parameters} for t in TYPES.values()
}

__all__ = [
    "ALL_TYPES",
    "API_TYPES",
    "CACHE_TYPE",
    "CELEBRITIES",
    "DETECT_FACES",
    "DETECT_TEXT",
    "FACES_TYPE",
    "MAX_INT",
    "NSFW",
    "OBJECTS",
    "TYPES",
    "TYPE_PARAMETERS",
    "IntParameter",
]
