"""Maps (type, model name) to the class that implements it, and tells which model serves
each type. Unknown pairs are refused loudly."""

from __future__ import annotations

from pathlib import Path

from models.base import Recognizer

API_TYPES = ("objects", "celebrities", "detect_faces", "detect_text", "nsfw")

_REGISTRY: dict[tuple[str, str], type[Recognizer]] = {}


class UnknownModelError(LookupError):
    pass


def register(cls: type[Recognizer]) -> type[Recognizer]:
    key = (cls.type, cls.name)
    if cls.type not in API_TYPES:
        raise UnknownModelError(f"{cls.__name__} declares unknown type {cls.type!r}")
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise UnknownModelError(f"model {key} registered twice")
    _REGISTRY[key] = cls
    return cls


def _load_builtin_models() -> None:
    # Imported here so that each model module registers itself exactly once.
    from models import (  # noqa: F401
        celebrities,
        easyocr_text,
        faces,
        faster_rcnn,
        nsfw,
        objects,
        text,
    )


def recognizer_class(type_: str, name: str) -> type[Recognizer]:
    _load_builtin_models()
    try:
        return _REGISTRY[(type_, name)]
    except KeyError:
        known = sorted(n for t, n in _REGISTRY if t == type_)
        raise UnknownModelError(
            f"no model {name!r} for type {type_!r}; known: {', '.join(known) or 'none'}"
        ) from None


def models_for(type_: str) -> list[type[Recognizer]]:
    """The registered models of a type, most preferred first."""
    _load_builtin_models()
    found = [cls for (t, _), cls in _REGISTRY.items() if t == type_]
    return sorted(found, key=lambda cls: cls.preference, reverse=True)


def all_models() -> list[type[Recognizer]]:
    _load_builtin_models()
    return list(_REGISTRY.values())


def default_model(type_: str, configured: str | None, model_dir: Path) -> type[Recognizer] | None:
    """The configured model of a type, else the most preferred one whose weights are
    present; None when the type has no model on this server."""
    if configured:
        return recognizer_class(type_, configured)
    for cls in models_for(type_):
        if cls.weights_present(model_dir):
            return cls
    return None
