"""Every model of the server, in one list, and which of them serves each API type.

Adding a model: write its class (models/base.py's Recognizer) and add it to ``MODELS``.
Unknown names are refused loudly."""

from __future__ import annotations

from pathlib import Path

from models.base import Recognizer
from models.celebrities.dlib_faces import DlibFaceRecognizer, FacenetFaceRecognizer
from models.detect_faces.mtcnn import MtcnnFaceDetector
from models.detect_text.easyocr_reader import EasyOcrTextReader
from models.detect_text.ppocr import PpOcrV4TextReader
from models.nsfw.open_nsfw import OpenNsfwClassifier
from models.objects.faster_rcnn import FasterRcnnDetector
from models.objects.ssd_mobilenet import SsdMobileNetV2Detector
from models.types import API_TYPES

MODELS: tuple[type[Recognizer], ...] = (
    SsdMobileNetV2Detector,
    FasterRcnnDetector,
    DlibFaceRecognizer,
    FacenetFaceRecognizer,
    MtcnnFaceDetector,
    PpOcrV4TextReader,
    EasyOcrTextReader,
    OpenNsfwClassifier,
)


class UnknownModelError(LookupError):
    pass


def _index(models: tuple[type[Recognizer], ...]) -> dict[tuple[str, str], type[Recognizer]]:
    index: dict[tuple[str, str], type[Recognizer]] = {}
    for cls in models:
        if cls.type not in API_TYPES:
            raise UnknownModelError(f"{cls.__name__} declares unknown type {cls.type!r}")
        if (cls.type, cls.name) in index:
            raise UnknownModelError(f"model {(cls.type, cls.name)} listed twice")
        index[(cls.type, cls.name)] = cls
    return index


_BY_NAME = _index(MODELS)


def recognizer_class(type_: str, name: str) -> type[Recognizer]:
    try:
        return _BY_NAME[(type_, name)]
    except KeyError:
        known = sorted(n for t, n in _BY_NAME if t == type_)
        raise UnknownModelError(
            f"no model {name!r} for type {type_!r}; known: {', '.join(known) or 'none'}"
        ) from None


def models_for(type_: str) -> list[type[Recognizer]]:
    """The models of a type, most preferred first."""
    found = [cls for cls in MODELS if cls.type == type_]
    return sorted(found, key=lambda cls: cls.preference, reverse=True)


def all_models() -> list[type[Recognizer]]:
    return list(MODELS)


def default_model(type_: str, configured: str | None, model_dir: Path) -> type[Recognizer] | None:
    """The configured model of a type, else the most preferred one whose weights are
    present; None when the type has no model on this server."""
    if type_ not in API_TYPES:
        raise UnknownModelError(f"no type {type_!r}; known: {', '.join(API_TYPES)}")
    if configured:
        return recognizer_class(type_, configured)
    for cls in models_for(type_):
        if cls.weights_present(model_dir):
            return cls
    return None
