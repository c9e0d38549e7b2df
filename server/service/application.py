"""The application service: every operation an API dialect offers, over the keys, the
quota, stored results, the gallery and the pipeline. Built once at start and held by the app's
state; each dialect reads its wire format, calls one operation here, and writes its wire
format. Errors are raised (server/errors.py), never returned; each dialect maps them to its
envelope once.

One unit of quota per image operation (an analysis, a face comparison): taken before the
work, given back when it fails (``QuotaCharge``). Gallery operations are free and need an
admin key.
"""

from __future__ import annotations

import asyncio
import functools
import io
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from starlette.concurrency import run_in_threadpool

from models.base import Analysis, ModelId
from models.celebrities.dlib_faces import CANDIDATES_PARAM
from models.images import ImageInfo
from server.catalog import CACHE_DEFAULT_LIMIT, CACHE_TYPE, FACES_TYPE
from server.errors import ApiError, ErrorKind, ModelUnavailableError
from server.pipeline.analysis import AnalysisPipeline, PipelineResult
from server.pipeline.batching import Batcher
from server.service import faces, multi
from server.service.admission import FormRequest, check_form
from server.service.aws import AwsSupport
from server.service.checks import NO_SUCH_RESULT, could_be_stored_result_id
from server.service.faces import DescribedImage, FaceDescription
from server.service.form import Upload
from server.service.quota import QuotaCharge
from server.settings import Settings
from server.store.audit import api_actor
from server.store.db import StoredResult
from server.store.gallery import (
    DEFAULT_COLLECTION,
    ChangedMeanwhileError,
    CollectionExistsError,
    CollectionInfo,
    CollectionNotFoundError,
    EnrolledFace,
    FaceNotFoundError,
    FaceRecord,
    Gallery,
    GalleryError,
    ManyFacesError,
    NoFaceError,
    PersonExistsError,
    PersonNotFoundError,
    UnreadablePhotoError,
    check_name,
    check_source,
)
from server.store.keys import KeyRecord, KeyStore
from server.store.results import ResultStore, lookup_hash

# What the dialects name in their signatures and error tables, without reaching the store.
__all__ = [
    "DEFAULT_COLLECTION",
    "ApplicationService",
    "ChangedMeanwhileError",
    "CollectionExistsError",
    "CollectionInfo",
    "CollectionNotFoundError",
    "DescribedImage",
    "EnrolledFace",
    "FaceComparison",
    "FaceDescription",
    "FaceNotFoundError",
    "FaceRecord",
    "FormRequest",
    "GalleryError",
    "KeyRecord",
    "ManyFacesError",
    "NoFaceError",
    "PersonExistsError",
    "PersonNotFoundError",
    "UnreadablePhotoError",
]


@dataclass(frozen=True)
class _CheckedImage:
    """An image past 413/415/412 and 503, and the identical result stored earlier if any."""

    info: ImageInfo
    batcher: Batcher
    model_id: ModelId
    lookup: str  # key of this analysis among stored results
    stored: StoredResult | None


@dataclass(frozen=True)
class FaceComparison:
    """An image's faces to be compared with one enrolled face."""

    image: DescribedImage
    enrolled: np.ndarray  # the enrolled face's descriptor
    threshold: float
    model: str

    def similarity(self, face: FaceDescription) -> float:
        """0..100, 50 at the match threshold."""
        return faces.match_confidence(
            float(np.linalg.norm(face.descriptor - self.enrolled)), self.threshold
        )


class ApplicationService:
    def __init__(
        self,
        settings: Settings,
        keys: KeyStore,
        results: ResultStore,
        gallery: Gallery,
        pipeline: AnalysisPipeline,
    ):
        self.settings = settings
        self.keys = keys
        self.results = results
        self.gallery = gallery
        self.pipeline = pipeline
        # AWS-style credentials, S3 images, face-level search (the Rekognition dialect).
        self.aws = AwsSupport(keys.engine, settings, gallery)

    # --- keys -------------------------------------------------------------------------------

    async def authenticate(self, secret: str | None, *, admin: bool = False) -> KeyRecord:
        """The active key ``secret`` is; 400 without one, 401 when unknown, revoked, or (with
        ``admin``) not an admin's."""
        secret = (secret or "").strip()
        if not secret:
            raise ApiError(ErrorKind.APIKEY_MISSING)
        key = await run_in_threadpool(self.keys.authenticate, secret)
        if key is None:
            raise ApiError(ErrorKind.APIKEY_INVALID)
        if admin and not key.is_admin:
            raise ApiError(ErrorKind.APIKEY_NOT_ADMIN)
        return key

    async def key_named(self, name: str) -> KeyRecord | None:
        """The active key of that name (for a setting that names one)."""
        key = await run_in_threadpool(self.keys.find, name)
        return None if key is None or key.revoked else key

    @staticmethod
    def actor(key: KeyRecord) -> str:
        """Who a change made with ``key`` is, in the audit log."""
        return api_actor(key.name)

    async def remaining_quota(self, key: KeyRecord) -> int | None:
        return await run_in_threadpool(self.keys.remaining, key)

    # --- analyses ---------------------------------------------------------------------------

    async def check_form(self, upload: Upload, *, is_get: bool, cut_off: bool) -> FormRequest:
        """/api/v2/'s checks of the form, 300 to 421 (server/service/admission.py)."""

        async def authenticate(secret: str) -> KeyRecord | None:
            return await run_in_threadpool(self.keys.authenticate, secret)

        return await check_form(
            upload,
            is_get,
            authenticate=authenticate,
            remaining=self.remaining_quota,
            cut_off=cut_off,
        )

    def models_status(self) -> dict[str, Any]:
        """Where the models compute and how each is (for /health)."""
        return {"device": str(self.pipeline.device), "models": self.pipeline.status()}

    def model_name(self, type_: str) -> str | None:
        """The name of the model serving ``type_``; None when no model serves it here."""
        try:
            return self.pipeline.model_class(type_).name
        except ApiError:
            return None

    async def analyze(
        self, key: KeyRecord, type_: str, params: dict[str, Any], data: bytes
    ) -> dict[str, Any]:
        """One analysis charged to ``key``: /api/v2/'s ``data`` of ``type_``. Checks 402 →
        413/415/412 → 503, then answers an identical stored result or runs the pipeline
        (storing its result); the unit is given back when it fails."""
        started = time.perf_counter()
        # 503 is known now (loading the model on first use) but answered after the image checks.
        batcher, unavailable = await self.pipeline.batcher_or_error(type_)
        if batcher is not None and not batcher.has_room():
            await run_in_threadpool(self._refuse_overloaded, key, data, batcher)
        checks = functools.partial(
            self._check_image, key, type_, params, data, batcher, unavailable
        )
        async with QuotaCharge(self.keys, key, lambda _reservation: checks()) as charge:
            image = charge.value
            assert image is not None
            if image.stored is not None:
                stored = image.stored
                analysis = Analysis(stored.objects, stored.extra or {})
                result = PipelineResult(type_, image.info, image.model_id, analysis)
                result_id, cached = stored.id, True
            else:
                result, result_id = await self.pipeline.run(
                    image.batcher,
                    type_,
                    data,
                    image.info,
                    params,
                    then=functools.partial(self._save, key, params, image, charge),
                )
                charge.stored()
                cached = False
        return {
            **result.data(),
            "quota": charge.remaining,
            "id": result_id,  # None: storing is off (IMAGERECOGNIZE_STORE_RESULTS=false)
            "cached": cached,
            "elapsed_ms": round((time.perf_counter() - started) * 1000.0, 1),
        }

    async def analyze_batch(
        self, key: KeyRecord, jobs: list[multi.ImageJob]
    ) -> list[dict[str, dict[str, Any]] | Exception]:
        """Several types of each image, one unit per image answered (server/service/multi.py)."""
        return await multi.analyze_batch(self, key, jobs)

    async def recognize_candidates(
        self, key: KeyRecord, data: bytes, candidates: int
    ) -> dict[str, Any]:
        """celebrities on the default collection, with every face and up to ``candidates``
        people matching each (``faces``): what APIs naming several candidates answer from."""
        return await self.analyze(key, FACES_TYPE, {CANDIDATES_PARAM: candidates}, data)

    def _refuse_overloaded(self, key: KeyRecord, data: bytes, batcher: Batcher) -> None:
        """Overloaded: refused before decoding and without taking quota, so that a flood
        cannot keep the cores decoding images that will not be analysed. The checks before
        503 still answer first (the image ones from the header only). Blocking."""
        if self.keys.remaining(key) == 0:
            raise ApiError(ErrorKind.QUOTA_REACHED)
        self.pipeline.inspect(data)
        raise batcher.overloaded()

    def _check_image(
        self,
        key: KeyRecord,
        type_: str,
        params: dict[str, Any],
        data: bytes,
        batcher: Batcher | None,
        unavailable: ModelUnavailableError | None,
    ) -> _CheckedImage:
        """413, 415, 412 from the header, 503, then an identical stored result. Blocking: in
        the same trip off the event loop as the quota."""
        info = self.pipeline.inspect(data)
        if batcher is None:
            self.pipeline.check_decodable(data, info)  # an undecodable file is 412 before 503
            raise unavailable or ModelUnavailableError(f"type {type_} is unavailable")
        model = batcher.model
        # The model's state (the gallery, for celebrities) may be read from the database.
        identity = {**params, "_state": model.state_token()}
        lookup = lookup_hash(key.id, info.sha256, type_, identity, model.model_id)
        stored = self.results.find_identical(key.id, lookup)
        return _CheckedImage(info, batcher, model.model_id, lookup, stored)

    def _save(
        self,
        key: KeyRecord,
        params: dict[str, Any],
        image: _CheckedImage,
        charge: QuotaCharge[Any],
        result: PipelineResult,
    ) -> str | None:
        # The unit is settled in the same transaction as the result is stored.
        return self.results.save(
            key.id,
            result.type,
            result.info,
            params,
            result.model,
            result.analysis,
            image.lookup,
            charge.reservation,
        )

    async def stored_results(self, key: KeyRecord, params: dict[str, Any]) -> dict[str, Any]:
        """type=cache: this key's stored results, newest first; free of charge. With storing
        off, none, and ``storing: false`` says why."""
        if not self.results.storing:
            entries = []
        elif "id" in params:
            entry = await run_in_threadpool(self.results.one, key.id, params["id"])
            if entry is None:
                raise ApiError(ErrorKind.INVALID_PARAMETER, NO_SUCH_RESULT)
            entries = [entry]
        else:
            limit = params.get("limit", CACHE_DEFAULT_LIMIT)
            entries = await run_in_threadpool(self.results.recent, key.id, limit)
        return {
            "error": 0,
            "type": CACHE_TYPE,
            "objects": entries,
            "quota": await self.remaining_quota(key),
            "storing": self.results.storing,
        }

    async def delete_result(self, key: KeyRecord, result_id: str) -> dict[str, Any]:
        """Deletes one of ``key``'s stored results; 421 when it has none by that id (another
        key's result is not told apart from none)."""
        if not could_be_stored_result_id(result_id):
            raise ApiError(ErrorKind.INVALID_PARAMETER, NO_SUCH_RESULT)
        deleted = await run_in_threadpool(
            functools.partial(self.results.delete, key.id, result_id, actor=self.actor(key))
        )
        if not deleted:
            raise ApiError(ErrorKind.INVALID_PARAMETER, NO_SUCH_RESULT)
        return {"deleted": result_id}

    # --- faces ------------------------------------------------------------------------------

    @property
    def match_threshold(self) -> float:
        """The descriptor distance under which two faces are the same person."""
        configured = self.settings.celebrities_threshold
        if configured is not None:
            return float(configured)
        return float(self.pipeline.model_class(FACES_TYPE).default_threshold)

    async def describe_faces(
        self, key: KeyRecord, data: bytes, *, charge: bool = True
    ) -> DescribedImage:
        """Every face of one image with its box, landmarks and descriptor (one unit of quota
        unless ``charge`` is False: a caller that charges once for several images)."""
        if not charge:
            return await faces.describe(self.pipeline, data)
        async with QuotaCharge(self.keys, key):
            return await faces.describe(self.pipeline, data)

    async def describe_face_pair(
        self, key: KeyRecord, first: bytes, second: bytes
    ) -> tuple[DescribedImage, DescribedImage]:
        """The faces of two images, compared with each other: one unit for the pair."""
        async with QuotaCharge(self.keys, key):
            return await asyncio.gather(
                faces.describe(self.pipeline, first), faces.describe(self.pipeline, second)
            )

    async def compare_faces(self, key: KeyRecord, first: bytes, second: bytes) -> float:
        """How alike the most probable faces of two images are, 0..100 (50 at the match
        threshold); 421 when either image has no face (then nothing is charged)."""
        async with QuotaCharge(self.keys, key):
            pair = await asyncio.gather(
                faces.describe(self.pipeline, first), faces.describe(self.pipeline, second)
            )
            similarity = faces.similarity(*pair, self.match_threshold)
            if similarity is None:
                raise ApiError(ErrorKind.INVALID_PARAMETER, "no face detected")
        return similarity

    def face_similarity(self, first: FaceDescription, second: FaceDescription) -> float:
        """How alike two faces are, 0..100 (50 at the match threshold)."""
        return faces.match_confidence(faces.distance(first, second), self.match_threshold)

    def face_model_name(self) -> str:
        """The name of the model that describes faces (for answers that name it)."""
        return self.pipeline.model_class(FACES_TYPE).descriptor_name

    async def verify_with_face(
        self,
        key: KeyRecord,
        face_id: str,
        data: bytes,
        *,
        collection: str = DEFAULT_COLLECTION,
    ) -> FaceComparison:
        """One image's faces, to compare with one enrolled face (one unit of quota); 404 for
        an unknown face id, before anything is charged."""
        enrolled = await self.face_descriptor(face_id, collection=collection)
        return FaceComparison(
            await self.describe_faces(key, data),
            enrolled,
            self.match_threshold,
            self.face_model_name(),
        )

    # --- the gallery ------------------------------------------------------------------------

    async def enrol(
        self,
        name: str,
        photos: list[tuple[str, bytes]],
        *,
        actor: str,
        min_probability: float | None = None,
        collection: str = DEFAULT_COLLECTION,
    ) -> dict[str, Any]:
        """Adds a face from each photo to ``name`` (all or nothing); what the database cannot
        hold is refused before any model runs."""
        check_name(name)
        for source, _ in photos:
            check_source(source)
        enrolled = await asyncio.gather(
            *(
                faces.enrolment_face(self.pipeline, source, data, min_probability)
                for source, data in photos
            )
        )
        return await self.add_faces(name, list(enrolled), actor=actor, collection=collection)

    async def add_faces(
        self,
        name: str,
        enrolled: list[EnrolledFace],
        *,
        actor: str,
        collection: str = DEFAULT_COLLECTION,
    ) -> dict[str, Any]:
        """Adds faces already described (``describe_faces``) to ``name``, all or nothing:
        ``{"name", "face_ids"}``."""
        descriptor = self.pipeline.model_class(FACES_TYPE).descriptor_name
        return await run_in_threadpool(
            functools.partial(
                self.gallery.enrol, name, enrolled, descriptor, actor=actor, collection=collection
            )
        )

    async def people(self, *, collection: str = DEFAULT_COLLECTION) -> list[dict[str, Any]]:
        """Every person with their faces, and whether each is described by the current model."""
        descriptor = self.pipeline.model_class(FACES_TYPE).descriptor_name
        return await run_in_threadpool(
            functools.partial(self.gallery.people, descriptor, collection=collection)
        )

    async def people_names(self, *, collection: str = DEFAULT_COLLECTION) -> list[str]:
        people = await run_in_threadpool(
            functools.partial(self.gallery.people, collection=collection)
        )
        return [person["name"] for person in people]

    async def add_person(
        self, name: str, *, actor: str, collection: str = DEFAULT_COLLECTION
    ) -> str:
        return await run_in_threadpool(
            functools.partial(self.gallery.add_person, name, actor=actor, collection=collection)
        )

    async def rename_person(
        self, name: str, new_name: str, *, actor: str, collection: str = DEFAULT_COLLECTION
    ) -> None:
        await run_in_threadpool(
            functools.partial(
                self.gallery.rename_person, name, new_name, actor=actor, collection=collection
            )
        )

    async def remove_person(
        self, name: str, *, actor: str, collection: str = DEFAULT_COLLECTION
    ) -> int:
        """Removes a person and their faces: how many faces."""
        return await run_in_threadpool(
            functools.partial(self.gallery.remove_person, name, actor=actor, collection=collection)
        )

    async def remove_everyone(
        self, *, actor: str, collection: str = DEFAULT_COLLECTION
    ) -> tuple[int, int]:
        """Empties a collection: how many people and faces."""
        return await run_in_threadpool(
            functools.partial(self.gallery.remove_everyone, actor=actor, collection=collection)
        )

    async def faces(
        self,
        name: str | None,
        offset: int,
        limit: int | None,
        *,
        collection: str = DEFAULT_COLLECTION,
    ) -> tuple[list[tuple[str, str]], int]:
        """One page of (face id, person), oldest first, and the total."""
        return await run_in_threadpool(
            functools.partial(self.gallery.faces, name, offset, limit, collection=collection)
        )

    async def face_records(
        self,
        offset: int,
        limit: int | None,
        *,
        name: str | None = None,
        collection: str = DEFAULT_COLLECTION,
    ) -> tuple[list[FaceRecord], int]:
        """One page of a collection's faces with what is kept of each, and the total."""
        return await run_in_threadpool(
            functools.partial(
                self.gallery.face_records, offset, limit, name=name, collection=collection
            )
        )

    async def remove_face(
        self,
        face_id: str,
        *,
        name: str | None = None,
        actor: str,
        collection: str = DEFAULT_COLLECTION,
    ) -> str:
        """Removes one face (of ``name`` when given): its person's name, who stays."""
        if name is not None:
            await run_in_threadpool(
                functools.partial(
                    self.gallery.remove_face, name, face_id, actor=actor, collection=collection
                )
            )
            return name
        return await run_in_threadpool(
            functools.partial(
                self.gallery.remove_face_by_id, face_id, actor=actor, collection=collection
            )
        )

    async def remove_faces(
        self, face_ids: list[str], *, actor: str, collection: str = DEFAULT_COLLECTION
    ) -> list[tuple[str, str]]:
        """Removes the faces of ``face_ids`` the collection holds: (face id, person) of each;
        the others are left out."""
        return await run_in_threadpool(
            functools.partial(
                self.gallery.remove_faces, face_ids, actor=actor, collection=collection
            )
        )

    async def face_descriptor(
        self, face_id: str, *, collection: str = DEFAULT_COLLECTION
    ) -> np.ndarray:
        """An enrolled face's descriptor by the current model."""
        descriptor = self.pipeline.model_class(FACES_TYPE).descriptor_name
        return await run_in_threadpool(
            functools.partial(
                self.gallery.face_descriptor, face_id, descriptor, collection=collection
            )
        )

    async def face_crop_jpeg(self, face_id: str, *, collection: str = DEFAULT_COLLECTION) -> bytes:
        """An enrolled face as the gallery keeps it, its aligned crop, as a JPEG."""

        def jpeg() -> bytes:
            pixels = self.gallery.aligned_face(face_id, collection=collection)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
            return buffer.getvalue()

        return await run_in_threadpool(jpeg)

    # --- collections ------------------------------------------------------------------------

    async def collections(self) -> list[CollectionInfo]:
        return await run_in_threadpool(self.gallery.collections)

    async def describe_collection(self, name: str) -> CollectionInfo:
        return await run_in_threadpool(self.gallery.describe_collection, name)

    async def create_collection(self, name: str, *, actor: str) -> str:
        return await run_in_threadpool(
            functools.partial(self.gallery.create_collection, name, actor=actor)
        )

    async def delete_collection(self, name: str, *, actor: str) -> tuple[int, int]:
        """Deletes a collection with its people and faces: how many of each."""
        return await run_in_threadpool(
            functools.partial(self.gallery.delete_collection, name, actor=actor)
        )

    async def nearest_people(
        self, descriptor: np.ndarray, count: int, *, collection: str = DEFAULT_COLLECTION
    ) -> list[tuple[str, float]]:
        """Up to ``count`` people of a collection nearer to ``descriptor`` than the match
        threshold, nearest first: ``[(name, distance)]``."""
        descriptor_name = self.pipeline.model_class(FACES_TYPE).descriptor_name

        def nearest() -> list[tuple[str, float]]:
            matrix = self.gallery.matrix(descriptor_name, collection=collection)
            return matrix.nearest_people(descriptor, count, self.match_threshold)

        return await run_in_threadpool(nearest)
