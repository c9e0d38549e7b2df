"""celebrities: faces found by MTCNN, aligned with dlib's 5-point shape predictor, described
by a face descriptor model, and matched against the operator's gallery of known people."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from models.base import Analysis, Part, Recognizer, WeightSource, device_name
from models.common import package_dir
from models.detect_faces.mtcnn import (
    FaceDetection,
    FacesInput,
    MtcnnFaceDetector,
    face_object,
    mtcnn_runtime,
)
from models.images import DecodedImage
from models.options import ModelOptions
from models.runtimes.device import tensor_to_device
from models.weights.fetch import manifest_entry

CHIP_SIZE = 150  # dlib's aligned face: 150 x 150 with 25 % padding
CHIP_PADDING = 0.25
# An optional parameter (never sent by /api/v2/ clients, set by other dialects' routes): with
# it the analysis also holds ``faces``, every face with up to this many matching people.
CANDIDATES_PARAM = "candidates"


def dlib_models_dir() -> Path | None:
    # Found by path: the face_recognition_models package fails to import under
    # setuptools >= 81 (it imports pkg_resources).
    folder = package_dir("face_recognition_models")
    return None if folder is None else folder / "models"


def match_confidence(distance: float, threshold: float) -> float:
    """100 at distance 0, 50 at the threshold, 0 at twice the threshold (linear)."""
    return round(float(np.clip(100.0 * (1.0 - distance / (2.0 * threshold)), 0.0, 100.0)), 2)


@dataclass(frozen=True)
class DescribedFace:
    face: FaceDetection
    chip: np.ndarray  # the aligned crop
    descriptor: np.ndarray


class FaceRecognizer(Recognizer):
    """MTCNN faces → dlib alignment → descriptor → nearest person in the gallery."""

    type: ClassVar[str] = "celebrities"
    # MTCNN, dlib's shape predictor and the torch descriptors keep no state between calls.
    concurrent_calls: ClassVar[bool] = True
    descriptor_name: ClassVar[str]  # recorded with every descriptor in the gallery
    default_threshold: ClassVar[float]  # Euclidean distance under which a face matches

    def __init__(self, device: torch.device, options: ModelOptions):
        super().__init__(device, options)
        self.model_dir = options.model_dir
        self.gallery = options.gallery
        threshold = options.celebrities_threshold
        self.threshold = float(threshold) if threshold is not None else self.default_threshold
        self.detector = MtcnnFaceDetector(device, self.options)
        self.input_max_side = self.detector.input_max_side
        self._shape_predictor: Any = None

    @property
    def version(self) -> str:
        return f"mtcnn+{self.descriptor_name}/t{self.threshold:g}"

    @abstractmethod
    def load_descriptor(self) -> None: ...

    @abstractmethod
    def describe(self, chips: list[np.ndarray]) -> np.ndarray:
        """Descriptors (N x D float32) of aligned crops."""

    def load(self) -> None:
        import dlib

        folder = dlib_models_dir()
        if folder is None:
            raise FileNotFoundError("face_recognition_models is not installed")
        self.detector.load()
        self._shape_predictor = dlib.shape_predictor(
            str(folder / "shape_predictor_5_face_landmarks.dat")
        )
        self.load_descriptor()

    def align(self, pixels: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The face in ``box`` (x1, y1, x2, y2), rotated upright and scaled as dlib does."""
        import dlib

        x1, y1, x2, y2 = (round(v) for v in box.tolist())
        shape = self._shape_predictor(pixels, dlib.rectangle(x1, y1, x2, y2))
        return np.asarray(dlib.get_face_chip(pixels, shape, size=CHIP_SIZE, padding=CHIP_PADDING))

    def preprocess(self, image: DecodedImage) -> FacesInput:
        return self.detector.preprocess(image)

    def batch_key(self, item: FacesInput) -> Hashable:
        return self.detector.batch_key(item)

    def predict(self, batch: Sequence[FacesInput]) -> list[list[DescribedFace]]:
        detections = self.detector.predict(batch)
        chips, owners = [], []
        for index, (item, faces) in enumerate(zip(batch, detections, strict=True)):
            for face in faces:
                chips.append(self.align(item.pixels, face.box))
                owners.append((index, face))
        descriptors = self.describe(chips) if chips else np.zeros((0, 1), dtype=np.float32)
        out: list[list[DescribedFace]] = [[] for _ in batch]
        for (index, face), chip, descriptor in zip(owners, chips, descriptors, strict=True):
            out[index].append(DescribedFace(face, chip, descriptor))
        return out

    def state_token(self) -> str:
        """Part of the stored-result lookup: a gallery change makes earlier results stale."""
        return f"gallery-{self.gallery.version()}" if self.gallery is not None else ""

    def postprocess(
        self,
        output: list[DescribedFace],
        item: FacesInput,
        image: DecodedImage,
        params: dict[str, Any],
    ) -> Analysis:
        width, height = image.info.width, image.info.height
        matrix = self.gallery.matrix(self.descriptor_name) if self.gallery is not None else None
        known, unknown = [], []
        for described in sorted(output, key=lambda d: d.face.probability, reverse=True):
            face = face_object(described.face, item.scale, width, height)
            nearest = matrix.nearest(described.descriptor) if matrix is not None else None
            if nearest is not None and nearest[1] < self.threshold:
                name, distance = nearest
                known.append(
                    {
                        "name": name,
                        "confidence": match_confidence(distance, self.threshold),
                        "box": face["box"],
                        "landmarks": face["landmarks"],
                    }
                )
            else:
                unknown.append(face)
        known.sort(key=lambda person: person["confidence"], reverse=True)
        extra: dict[str, Any] = {"unrecognized": unknown}
        candidates = params.get(CANDIDATES_PARAM)
        if candidates:
            extra["faces"] = self._faces_with_candidates(
                output, item, width, height, matrix, candidates
            )
        return Analysis(known, extra)

    def _faces_with_candidates(
        self,
        output: list[DescribedFace],
        item: FacesInput,
        width: int,
        height: int,
        matrix: Any,
        count: int,
    ) -> list[dict[str, Any]]:
        """Every face, most probable first, with its detection confidence and up to
        ``count`` different people who match it (nearer than the threshold), best first: what
        APIs that name several candidates per face (CompreFace's) answer from."""
        faces = []
        for described in sorted(output, key=lambda d: d.face.probability, reverse=True):
            face = face_object(described.face, item.scale, width, height)
            nearest = (
                matrix.nearest_people(described.descriptor, count, self.threshold)
                if matrix is not None
                else []
            )
            face["matches"] = [
                {"name": name, "confidence": match_confidence(distance, self.threshold)}
                for name, distance in nearest
            ]
            faces.append(face)
        return faces


class DlibFaceRecognizer(FaceRecognizer):
    """dlib's ResNet face descriptor (128-D, LFW 99.38 %), packaged."""

    name: ClassVar[str] = "dlib_resnet"
    source: ClassVar[WeightSource] = WeightSource.PACKAGED
    weights: ClassVar[str] = (
        "face_recognition_models/models/{dlib_face_recognition_resnet_model_v1,"
        "shape_predictor_5_face_landmarks}.dat (package face-recognition-models)"
    )
    descriptor_name: ClassVar[str] = "dlib_face_recognition_resnet_model_v1"
    # Measured on the test photos: the same person at most 0.28 apart under flips, crops,
    # half size, JPEG q30 and brightening; two different people 0.62-0.68 (dlib's own
    # threshold for LFW is 0.6). 0.5 keeps a margin on both sides.
    default_threshold: ClassVar[float] = 0.5

    @classmethod
    def weights_present(cls, model_dir: Path) -> bool:
        folder = dlib_models_dir()
        return folder is not None and all(
            (folder / name).is_file()
            for name in (
                "dlib_face_recognition_resnet_model_v1.dat",
                "shape_predictor_5_face_landmarks.dat",
            )
        )

    @classmethod
    def placement(cls, device: torch.device, options: ModelOptions) -> tuple[Part, ...]:
        from models.celebrities.dlib_resnet import descriptor_runtime

        runtime = descriptor_runtime(
            device, options.celebrities_descriptor_runtime, options.cpu_runtime
        )
        where = "cpu" if runtime in ("dlib", "openvino") else device_name(device)
        return (
            Part("mtcnn", mtcnn_runtime(device, options), device_name(device)),
            Part(cls.name, runtime, where),
        )

    def load_descriptor(self) -> None:
        # dlib's own network or its torch port (always on CUDA): see dlib_resnet.py.
        from models.celebrities.dlib_resnet import SOURCE_FILE, load_descriptor

        folder = dlib_models_dir()
        assert folder is not None
        self._encoder = load_descriptor(
            folder / SOURCE_FILE,
            self.model_dir,
            self.device,
            self.options.celebrities_descriptor_runtime,
            self.options.cpu_runtime,
            self.options.torch_threads,
        )

    def describe(self, chips: list[np.ndarray]) -> np.ndarray:
        return self._encoder.describe(chips)

    @property
    def takes_concurrent_calls(self) -> bool:
        # dlib's own network keeps each call's activations in its layers.
        from models.celebrities.dlib_resnet import DlibDescriptor

        return not isinstance(self._encoder, DlibDescriptor)


FACENET_MANIFEST_NAME = "facenet_vggface2"


class FacenetFaceRecognizer(FaceRecognizer):
    """facenet-pytorch InceptionResnetV1 trained on VGGFace2 (512-D), fetched."""

    name: ClassVar[str] = "facenet_vggface2"
    source: ClassVar[WeightSource] = WeightSource.FETCHED
    weights: ClassVar[str] = (
        "model folder: 20180402-114759-vggface2.pt "
        "(`imagerecognize models fetch facenet_vggface2`); dlib's shape predictor aligns"
    )
    # Never chosen on its own: a switch needs `imagerecognize gallery reindex`.
    preference: ClassVar[int] = -10
    descriptor_name: ClassVar[str] = "facenet_inception_resnet_v1_vggface2"
    # Unit-length 512-D embeddings: the usual verification threshold is about 1.0.
    default_threshold: ClassVar[float] = 1.0

    @classmethod
    def placement(cls, device: torch.device, options: ModelOptions) -> tuple[Part, ...]:
        return (
            Part("mtcnn", mtcnn_runtime(device, options), device_name(device)),
            Part(cls.name, "torch", device_name(device)),
        )

    @classmethod
    def weights_file(cls, model_dir: Path) -> Path:
        return model_dir / manifest_entry(FACENET_MANIFEST_NAME).filename

    @classmethod
    def weights_present(cls, model_dir: Path) -> bool:
        return cls.weights_file(model_dir).is_file() and DlibFaceRecognizer.weights_present(
            model_dir
        )

    def load_descriptor(self) -> None:
        from facenet_pytorch import InceptionResnetV1

        net = InceptionResnetV1(pretrained=None, classify=False)
        state = torch.load(self.weights_file(self.model_dir), map_location="cpu", weights_only=True)
        # The published file also holds the VGGFace2 identity classifier: not needed here.
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        net.load_state_dict(state)
        self._net = net.eval().to(self.device)

    def describe(self, chips: list[np.ndarray]) -> np.ndarray:
        batch = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float()
        batch = torch.nn.functional.interpolate(
            batch, size=(160, 160), mode="bilinear", align_corners=False
        )
        batch = (batch - 127.5) / 128.0  # facenet-pytorch's fixed standardisation
        with torch.inference_mode():
            return self._net(tensor_to_device(batch, self.device)).cpu().numpy().astype(np.float32)
