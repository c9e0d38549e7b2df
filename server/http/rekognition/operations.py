"""Rekognition's operations: each reads its input members, makes its service call(s) and
writes its output shape. One unit of quota per operation that analyses an image (the service
charges it); collection management and SearchFaces are free. Collections and their faces
need an admin key's credentials, as the gallery does; searching them does not.
"""

from __future__ import annotations

import base64
import hashlib
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from server.catalog import DETECT_FACES, DETECT_TEXT, FACES_TYPE, MAX_INT, NSFW, OBJECTS
from server.errors import ApiError, ErrorKind
from server.http.observability import GALLERY_TYPE as GALLERY
from server.http.rekognition import shapes
from server.http.rekognition.errors import (
    IMAGE_TOO_LARGE,
    INVALID_PAGINATION_TOKEN,
    INVALID_S3_OBJECT,
    RESOURCE_EXISTS,
    RESOURCE_NOT_FOUND,
    AwsError,
    invalid_parameter,
)
from server.http.rekognition.wire import (
    EXTERNAL_IMAGE_ID,
    FACE_ID,
    MAX_IMAGE_BYTES,
    Members,
)
from server.service.application import (
    ApplicationService,
    CollectionExistsError,
    CollectionNotFoundError,
    EnrolledFace,
    FaceDescription,
    FaceNotFoundError,
    GalleryError,
    KeyRecord,
)
from server.service.aws import ImageObjectTooLargeError, S3ObjectError
from server.service.face_collections import (
    descriptor_similarity,
    similarity_from_match_confidence,
)
from server.service.labels import label_hierarchy
from server.telemetry.requests import note_answer

# Rekognition's defaults.
DEFAULT_LABEL_MIN_CONFIDENCE = 55.0
DEFAULT_MODERATION_MIN_CONFIDENCE = 50.0
DEFAULT_SIMILARITY_THRESHOLD = 80.0
DEFAULT_LIST_FACES = 1000
DEFAULT_LIST_COLLECTIONS = 1000
ACCOUNT = "000000000000"  # ARNs name an account; this server has none
FACE_ATTRIBUTES = (
    "DEFAULT", "ALL", "AGE_RANGE", "BEARD", "EMOTIONS", "EYE_DIRECTION", "EYEGLASSES",
    "EYES_OPEN", "GENDER", "MOUTH_OPEN", "MUSTACHE", "FACE_OCCLUDED", "SMILE", "SUNGLASSES",
)
QUALITY_FILTERS = ("NONE", "AUTO", "LOW", "MEDIUM", "HIGH")
# QualityFilter as the detector's probability and the face's smaller side in pixels that a
# face needs to be indexed or searched (docs/compat.md); AUTO is MEDIUM.
QUALITY_MINIMUMS = {
    "NONE": (0.0, 0),
    "LOW": (0.80, 20),
    "MEDIUM": (0.90, 40),
    "AUTO": (0.90, 40),
    "HIGH": (0.97, 60),
}


@dataclass(frozen=True)
class Call:
    operation: str
    service: ApplicationService
    key: KeyRecord  # the key whose credentials signed the request
    region: str  # the region the client signed for (named in ARNs)
    members: Members  # the input

    def require_admin(self) -> None:
        if not self.key.is_admin:
            raise ApiError(ErrorKind.APIKEY_NOT_ADMIN)

    @property
    def actor(self) -> str:
        return self.service.actor(self.key)

    def arn(self, collection: str) -> str:
        return f"arn:aws:rekognition:{self.region}:{ACCOUNT}:collection/{collection}"

    async def analyze(self, type_: str, params: dict[str, Any], image: bytes) -> dict[str, Any]:
        """One analysis (one unit of quota): /api/v2/'s ``data`` of ``type_``."""
        data = await self.service.analyze(self.key, type_, params, image)
        note_answer(data)  # the model, and whether stored or computed: for the access log
        return data

    async def image(self, name: str = "Image") -> bytes:
        """The image's bytes, at most 5 MiB (the API's limit) and at most the operator's
        IMAGERECOGNIZE_MAX_UPLOAD_BYTES."""
        given = await run_in_threadpool(self.members.image, name)  # base64 of up to 5 MiB
        limit = min(MAX_IMAGE_BYTES, self.service.settings.max_upload_bytes)
        if given.data is not None:
            if len(given.data) > limit:
                raise AwsError(IMAGE_TOO_LARGE, "Image size is too large.")
            return given.data
        assert given.s3 is not None
        try:
            return await self.service.aws.read_s3_object(
                given.s3.bucket, given.s3.name, given.s3.version, limit
            )
        except ImageObjectTooLargeError as exc:
            raise AwsError(IMAGE_TOO_LARGE, str(exc)) from None
        except S3ObjectError as exc:
            raise AwsError(INVALID_S3_OBJECT, str(exc)) from None


Operation = Callable[[Call], Awaitable[dict[str, Any]]]


def _size(data: dict[str, Any]) -> tuple[int, int]:
    return int(data["image"]["width"]), int(data["image"]["height"])


def _model_version(data: dict[str, Any]) -> str:
    model = data.get("model") or {}
    return f"{model.get('name', '')} {model.get('version', '')}".strip()


async def detect_labels(call: Call) -> dict[str, Any]:
    members = call.members
    min_confidence = members.number("MinConfidence", DEFAULT_LABEL_MIN_CONFIDENCE)
    max_labels = members.integer("MaxLabels", None, low=0)
    members.strings("Features", choices=("GENERAL_LABELS", "IMAGE_PROPERTIES"))
    assert min_confidence is not None
    image = await call.image()  # after the other members: an S3 read costs more
    params = {"max_labels": MAX_INT, "min_confidence": math.floor(min_confidence)}
    data = await call.analyze(OBJECTS.name, params, image)
    width, height = _size(data)
    hierarchy = label_hierarchy()
    kept = [o for o in data["objects"] if float(o["confidence"]) >= min_confidence]
    return {
        "Labels": shapes.labels(
            kept,
            width,
            height,
            display_name=hierarchy.display_name,
            parents=hierarchy.parents,
            category_parents=hierarchy.category_parents,
            max_labels=max_labels,
        ),
        "LabelModelVersion": _model_version(data),
    }


async def detect_faces(call: Call) -> dict[str, Any]:
    members = call.members
    members.strings("Attributes", choices=FACE_ATTRIBUTES)  # none adds what we cannot compute
    image = await call.image()
    data = await call.analyze(DETECT_FACES.name, {}, image)
    width, height = _size(data)
    return {"FaceDetails": [shapes.face_detail(f, width, height) for f in data["objects"]]}


async def detect_text(call: Call) -> dict[str, Any]:
    members = call.members
    filters = members.document.get("Filters")
    filters = {} if filters is None else filters
    given = filters.get("WordFilter") if isinstance(filters, dict) else None
    given = {} if given is None else given
    if not isinstance(filters, dict) or not isinstance(given, dict):
        raise invalid_parameter("Filters and Filters.WordFilter must be objects")
    word_filter = Members(given)
    min_confidence = word_filter.number("MinConfidence", 0.0) or 0.0
    min_height = word_filter.number("MinBoundingBoxHeight", 0.0, high=1.0) or 0.0
    min_width = word_filter.number("MinBoundingBoxWidth", 0.0, high=1.0) or 0.0
    image = await call.image()
    data = await call.analyze(DETECT_TEXT.name, {}, image)
    width, height = _size(data)
    detections = shapes.text_detections(data["objects"], width, height)

    def kept(word: dict[str, Any]) -> bool:
        box = word["Geometry"]["BoundingBox"]
        return (
            word["Confidence"] >= min_confidence
            and box["Height"] >= min_height
            and box["Width"] >= min_width
        )

    # WordFilter keeps the words that pass it, and the lines that keep a word.
    words = [d for d in detections if d["Type"] == "WORD" and kept(d)]
    lines = {word["ParentId"] for word in words}
    return {
        "TextDetections": [d for d in detections if d["Id"] in lines] + words,
        "TextModelVersion": _model_version(data),
    }


async def detect_moderation_labels(call: Call) -> dict[str, Any]:
    members = call.members
    min_confidence = members.number("MinConfidence", DEFAULT_MODERATION_MIN_CONFIDENCE)
    assert min_confidence is not None
    image = await call.image()
    data = await call.analyze(NSFW.name, {"nsfw_min_confidence": 0}, image)
    return {
        "ModerationLabels": shapes.moderation_labels(data["objects"], min_confidence),
        "ModerationModelVersion": _model_version(data),
    }


def celebrity_id(name: str) -> str:
    """A stable id for a known person, of the pattern Rekognition's ids have."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]


async def recognize_celebrities(call: Call) -> dict[str, Any]:
    image = await call.image()
    # Every face with the detector's confidence and its best match, if any (one unit).
    data = await call.service.recognize_candidates(call.key, image, 1)
    note_answer(data)
    width, height = _size(data)
    celebrities, unrecognized = [], []
    for face in data["faces"]:  # most probable first
        detail = shapes.face_detail(face, width, height)
        if not face["matches"]:
            unrecognized.append(detail)
            continue
        best = face["matches"][0]
        celebrities.append(
            {
                "Urls": [],
                "Name": best["name"],
                "Id": celebrity_id(best["name"]),
                "Face": detail,
                "MatchConfidence": similarity_from_match_confidence(float(best["confidence"])),
            }
        )
    celebrities.sort(key=lambda celebrity: celebrity["MatchConfidence"], reverse=True)
    return {"CelebrityFaces": celebrities, "UnrecognizedFaces": unrecognized}


def _described_face(face: FaceDescription, width: int, height: int) -> dict[str, Any]:
    """A face of the service's describe_faces as a ComparedFace / FaceDetail."""
    return shapes.face_detail(face.shape(), width, height)


def _area(face: FaceDescription) -> int:
    return int(face.box["width"]) * int(face.box["height"])


async def compare_faces(call: Call) -> dict[str, Any]:
    members = call.members
    threshold = members.number("SimilarityThreshold", DEFAULT_SIMILARITY_THRESHOLD)
    quality = members.string("QualityFilter", "NONE", choices=QUALITY_FILTERS)
    assert threshold is not None and quality is not None
    source_image = await call.image("SourceImage")
    target_image = await call.image("TargetImage")
    # One unit for the pair.
    source, target = await call.service.describe_face_pair(call.key, source_image, target_image)
    if not source.faces:
        raise invalid_parameter("There are no faces in the source image")
    searched = max(source.faces, key=_area)  # AWS compares the largest face of the source
    matches, unmatched = [], []
    for face in target.faces:  # most probable first
        if _quality_reasons(face, quality):
            continue
        alike = descriptor_similarity(
            searched.descriptor, face.descriptor, call.service.match_threshold
        )
        compared = _described_face(face, target.width, target.height)
        if alike >= threshold:
            matches.append({"Similarity": alike, "Face": compared})
        else:
            unmatched.append(compared)
    matches.sort(key=lambda match: match["Similarity"], reverse=True)
    source_face = _described_face(searched, source.width, source.height)
    return {
        "SourceImageFace": {
            "BoundingBox": source_face["BoundingBox"],
            "Confidence": source_face["Confidence"],
        },
        "FaceMatches": matches,
        "UnmatchedFaces": unmatched,
    }


# Collections.


def _gallery_error(exc: GalleryError) -> AwsError:
    if isinstance(exc, CollectionNotFoundError):
        return AwsError(RESOURCE_NOT_FOUND, str(exc))
    if isinstance(exc, CollectionExistsError):
        return AwsError(RESOURCE_EXISTS, str(exc))
    return invalid_parameter(str(exc))


def _face_model(call: Call) -> str:
    return call.service.face_model_name()


async def create_collection(call: Call) -> dict[str, Any]:
    members = call.members
    call.require_admin()
    name = members.collection_id()
    try:
        await call.service.create_collection(name, actor=call.actor)
    except GalleryError as exc:
        raise _gallery_error(exc) from None
    return {
        "StatusCode": 200,
        "CollectionArn": call.arn(name),
        "FaceModelVersion": _face_model(call),
    }


async def delete_collection(call: Call) -> dict[str, Any]:
    members = call.members
    call.require_admin()
    name = members.collection_id()
    try:
        await call.service.delete_collection(name, actor=call.actor)
    except GalleryError as exc:
        raise _gallery_error(exc) from None
    return {"StatusCode": 200}


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(members: Members) -> int:
    token = members.string("NextToken", max_length=255)
    if token is None:
        return 0
    try:
        kind, _, number = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind != "offset" or not number.isdigit():
            raise ValueError(token)
        return int(number)
    except ValueError:
        raise AwsError(INVALID_PAGINATION_TOKEN, "Invalid pagination token") from None


async def list_collections(call: Call) -> dict[str, Any]:
    members = call.members
    call.require_admin()
    offset = _offset(members)
    # 0 is in AWS's range but would page forever: the default then.
    limit = members.integer("MaxResults", 0, low=0, high=4096) or DEFAULT_LIST_COLLECTIONS
    assert limit is not None
    names = [info.name for info in await call.service.collections()]
    page = names[offset : offset + limit]
    output: dict[str, Any] = {
        "CollectionIds": page,
        "FaceModelVersions": [_face_model(call)] * len(page),
    }
    if offset + limit < len(names):
        output["NextToken"] = _token(offset + limit)
    return output


def _creation_timestamp(created: datetime) -> float:
    return created.timestamp() if created.tzinfo else created.replace(tzinfo=None).timestamp()


async def describe_collection(call: Call) -> dict[str, Any]:
    members = call.members
    call.require_admin()
    name = members.collection_id()
    info = await _collection_info(call, name)
    return {
        "FaceCount": info.faces,
        "FaceModelVersion": _face_model(call),
        "CollectionARN": call.arn(name),
        "CreationTimestamp": _creation_timestamp(info.created_at),
        "UserCount": 0,
    }


def _face(record: Any, model: str) -> dict[str, Any]:
    """A face the collection keeps, as Rekognition's Face."""
    face: dict[str, Any] = {"FaceId": record.id, "IndexFacesModelVersion": model}
    if record.box is not None:
        left, top, width, height = record.box
        face["BoundingBox"] = {"Width": width, "Height": height, "Left": left, "Top": top}
    if record.image_id is not None:
        face["ImageId"] = record.image_id
    if record.external_image_id is not None:
        face["ExternalImageId"] = record.external_image_id
    if record.confidence is not None:
        face["Confidence"] = round(100.0 * float(record.confidence), 4)
    return face


def _quality_reasons(face: FaceDescription, quality: str) -> list[str]:
    min_probability, min_side = QUALITY_MINIMUMS[quality]
    reasons = []
    if face.probability < min_probability:
        reasons.append("LOW_CONFIDENCE")
    if min(face.box["width"], face.box["height"]) < min_side:
        reasons.append("SMALL_BOUNDING_BOX")
    return reasons


async def index_faces(call: Call) -> dict[str, Any]:
    call.require_admin()
    members = call.members
    collection = members.collection_id()
    external_image_id = members.string(
        "ExternalImageId", pattern=EXTERNAL_IMAGE_ID, max_length=255
    )
    members.strings("DetectionAttributes", choices=FACE_ATTRIBUTES)
    max_faces = members.integer("MaxFaces", None, low=1)
    quality = members.string("QualityFilter", "AUTO", choices=QUALITY_FILTERS)
    assert quality is not None
    image = await call.image()
    await _collection_info(call, collection)  # ResourceNotFoundException before the work
    described = await call.service.describe_faces(call.key, image)
    width, height = described.width, described.height
    chosen, unindexed = [], []
    for face in sorted(described.faces, key=_area, reverse=True):  # the largest first
        reasons = _quality_reasons(face, quality)
        if not reasons and max_faces is not None and len(chosen) >= max_faces:
            reasons = ["EXCEEDS_MAX_FACES"]
        if reasons:
            unindexed.append(
                {"Reasons": reasons, "FaceDetail": _described_face(face, width, height)}
            )
        else:
            chosen.append(face)
    model = _face_model(call)
    image_id = str(uuid.uuid4())
    # Each face joins the person named by ExternalImageId (the default collection's
    # celebrities then know them by it), else one named by the image id.
    person = external_image_id or image_id
    details = [_described_face(face, width, height) for face in chosen]
    face_ids: list[str] = []
    if chosen:
        enrolled = [
            EnrolledFace(
                source=person,
                aligned=face.aligned,
                descriptor=face.descriptor,
                image_id=image_id,
                external_image_id=external_image_id,
                box=_ratios(detail["BoundingBox"]),
                confidence=face.probability,
            )
            for face, detail in zip(chosen, details, strict=True)
        ]
        try:
            added = await call.service.add_faces(
                person, enrolled, actor=call.actor, collection=collection
            )
        except GalleryError as exc:
            raise _gallery_error(exc) from None
        face_ids = list(added["face_ids"])
    records = []
    for detail, face_id in zip(details, face_ids, strict=True):
        entry: dict[str, Any] = {
            "FaceId": face_id,
            "BoundingBox": detail["BoundingBox"],
            "ImageId": image_id,
            "Confidence": detail["Confidence"],
            "IndexFacesModelVersion": model,
        }
        if external_image_id is not None:
            entry["ExternalImageId"] = external_image_id
        records.append({"Face": entry, "FaceDetail": detail})
    return {"FaceRecords": records, "FaceModelVersion": model, "UnindexedFaces": unindexed}


def _ratios(box: dict[str, float]) -> tuple[float, float, float, float]:
    return box["Left"], box["Top"], box["Width"], box["Height"]


async def _collection_info(call: Call, collection: str) -> Any:
    try:
        return await call.service.describe_collection(collection)
    except GalleryError as exc:
        raise _gallery_error(exc) from None


async def list_faces(call: Call) -> dict[str, Any]:
    members = call.members
    call.require_admin()
    collection = members.collection_id()
    offset = _offset(members)
    limit = members.integer("MaxResults", 0, low=0, high=4096) or DEFAULT_LIST_FACES
    wanted = members.strings("FaceIds", pattern=FACE_ID, max_items=4096)
    assert limit is not None
    model = _face_model(call)
    try:
        if wanted:  # those faces of the collection, paged among themselves
            every, _ = await call.service.face_records(0, None, collection=collection)
            ids = {face_id.lower() for face_id in wanted}
            chosen = [record for record in every if record.id in ids]
            records, total = chosen[offset : offset + limit], len(chosen)
        else:
            records, total = await call.service.face_records(
                offset, limit, collection=collection
            )
    except GalleryError as exc:
        raise _gallery_error(exc) from None
    output: dict[str, Any] = {
        "Faces": [_face(record, model) for record in records],
        "FaceModelVersion": model,
    }
    if offset + limit < total:
        output["NextToken"] = _token(offset + limit)
    return output


async def delete_faces(call: Call) -> dict[str, Any]:
    members = call.members
    call.require_admin()
    collection = members.collection_id()
    face_ids = members.strings("FaceIds", max_items=4096, required=True)
    try:
        removed = await call.service.remove_faces(
            face_ids, actor=call.actor, collection=collection
        )
    except GalleryError as exc:
        raise _gallery_error(exc) from None
    deleted = [face_id for face_id, _ in removed]
    gone = set(deleted)
    return {
        "DeletedFaces": deleted,
        "UnsuccessfulFaceDeletions": [
            {"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND"]}
            for face_id in dict.fromkeys(face_ids)
            if face_id.lower() not in gone and face_id not in gone
        ],
    }


def _search_limits(members: Members) -> tuple[int, float]:
    """MaxFaces and FaceMatchThreshold, read before anything is charged."""
    max_faces = members.integer("MaxFaces", 4096, low=1, high=4096)
    threshold = members.number("FaceMatchThreshold", DEFAULT_SIMILARITY_THRESHOLD)
    assert max_faces is not None and threshold is not None
    return max_faces, threshold


async def _search(
    call: Call,
    collection: str,
    descriptor: Any,
    limits: tuple[int, float],
    excluding: str | None,
) -> list[dict[str, Any]]:
    max_faces, threshold = limits
    model = _face_model(call)
    try:
        found = await call.service.aws.collections.search_faces(
            descriptor,
            call.service.face_model_name(),
            call.service.match_threshold,
            collection=collection,
            max_faces=max_faces,
            min_similarity=threshold,
            excluding=excluding,
        )
    except GalleryError as exc:
        raise _gallery_error(exc) from None
    return [{"Similarity": alike, "Face": _face(record, model)} for record, alike in found]


async def search_faces_by_image(call: Call) -> dict[str, Any]:
    members = call.members
    collection = members.collection_id()
    quality = members.string("QualityFilter", "NONE", choices=QUALITY_FILTERS)
    assert quality is not None
    limits = _search_limits(members)
    image = await call.image()
    await _collection_info(call, collection)
    described = await call.service.describe_faces(call.key, image)
    if not described.faces:
        raise invalid_parameter("There are no faces in the image. Should be at least 1.")
    searched = max(described.faces, key=_area)  # AWS searches with the largest face
    if _quality_reasons(searched, quality):
        raise invalid_parameter("The largest face in the image does not pass QualityFilter")
    detail = _described_face(searched, described.width, described.height)
    return {
        "SearchedFaceBoundingBox": detail["BoundingBox"],
        "SearchedFaceConfidence": detail["Confidence"],
        "FaceMatches": await _search(call, collection, searched.descriptor, limits, None),
        "FaceModelVersion": _face_model(call),
    }


async def search_faces(call: Call) -> dict[str, Any]:
    members = call.members
    collection = members.collection_id()
    face_id = members.string("FaceId", pattern=FACE_ID, max_length=36, required=True)
    assert face_id is not None
    limits = _search_limits(members)
    try:
        descriptor = await call.service.face_descriptor(face_id, collection=collection)
    except FaceNotFoundError:
        raise invalid_parameter(f"Face {face_id} is not in collection {collection}") from None
    except GalleryError as exc:
        raise _gallery_error(exc) from None
    return {
        "SearchedFaceId": face_id,
        "FaceMatches": await _search(call, collection, descriptor, limits, face_id.lower()),
        "FaceModelVersion": _face_model(call),
    }


OPERATIONS: dict[str, Operation] = {
    "DetectLabels": detect_labels,
    "DetectFaces": detect_faces,
    "DetectText": detect_text,
    "DetectModerationLabels": detect_moderation_labels,
    "RecognizeCelebrities": recognize_celebrities,
    "CompareFaces": compare_faces,
    "CreateCollection": create_collection,
    "DeleteCollection": delete_collection,
    "ListCollections": list_collections,
    "DescribeCollection": describe_collection,
    "IndexFaces": index_faces,
    "ListFaces": list_faces,
    "DeleteFaces": delete_faces,
    "SearchFacesByImage": search_faces_by_image,
    "SearchFaces": search_faces,
}
# Each operation's type, as the access log and the request metrics label it.
TYPES: dict[str, str] = {
    "DetectLabels": OBJECTS.name,
    "DetectFaces": DETECT_FACES.name,
    "DetectText": DETECT_TEXT.name,
    "DetectModerationLabels": NSFW.name,
    "RecognizeCelebrities": FACES_TYPE,
    "CompareFaces": FACES_TYPE,
    "CreateCollection": GALLERY,
    "DeleteCollection": GALLERY,
    "ListCollections": GALLERY,
    "DescribeCollection": GALLERY,
    "IndexFaces": GALLERY,
    "ListFaces": GALLERY,
    "DeleteFaces": GALLERY,
    "SearchFacesByImage": FACES_TYPE,
    "SearchFaces": FACES_TYPE,
}
