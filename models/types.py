"""The analysis types and the parameters each takes, declared once.

The registry checks each model's type against this list; the server's settings, parameter
checks, command line, OpenAPI description and page all read it (server/catalog.py adds the
API's own type, ``cache``). Light on purpose: importing it loads no model and no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

# No parameter is meaningful beyond this; larger values are refused, not clamped.
MAX_INT = 2**31 - 1


@dataclass(frozen=True)
class IntParameter:
    """An integer parameter of a type, as a form field (``max_labels``) and a CLI flag."""

    name: str
    minimum: int
    maximum: int | None
    required: bool
    help: str
    example: int  # what the page and the examples fill in

    def accepts(self, value: int) -> bool:
        return self.minimum <= value <= (MAX_INT if self.maximum is None else self.maximum)

    def describe(self) -> str:
        top = MAX_INT if self.maximum is None else self.maximum
        return f"an integer from {self.minimum} to {top}"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class AnalysisType:
    name: str
    summary: str
    parameters: tuple[IntParameter, ...] = ()
    # The server's setting that names this type's model (Settings field); None: the type has
    # no such setting and is answered by its registry default.
    model_setting: str | None = None


OBJECTS = AnalysisType(
    "objects",
    "labels of the objects in the image and of the whole image, with boxes",
    (
        IntParameter("max_labels", 1, None, True, "most labels returned", 10),
        IntParameter("min_confidence", 0, 100, True, "lowest confidence returned", 50),
    ),
    model_setting="objects_model",
)
# The type whose model enrols, recognises and compares faces: the gallery's.
CELEBRITIES = AnalysisType(
    "celebrities",
    "the enrolled people whose faces are in the image",
    model_setting="celebrities_model",
)
DETECT_FACES = AnalysisType(
    "detect_faces", "the faces in the image, with landmarks", model_setting="faces_model"
)
DETECT_TEXT = AnalysisType(
    "detect_text", "the lines of text in the image", model_setting="text_model"
)
NSFW = AnalysisType(
    "nsfw",
    "how likely the image is not safe for work",
    (IntParameter("nsfw_min_confidence", 0, 100, True, "lowest confidence returned", 0),),
    model_setting="nsfw_model",
)

ANALYSIS_TYPES: dict[str, AnalysisType] = {
    t.name: t for t in (OBJECTS, CELEBRITIES, DETECT_FACES, DETECT_TEXT, NSFW)
}
API_TYPES: tuple[str, ...] = tuple(ANALYSIS_TYPES)
