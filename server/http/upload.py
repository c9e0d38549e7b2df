"""Reads a request's form fields and file while streaming its body, with a hard size limit.

The body is never read past the limit: an oversized upload raises :class:`UploadTooLargeError`
(carrying the fields seen so far) as soon as the limit is crossed, or at once when the
declared Content-Length is already too large.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from server.service.form import Upload

FILE_FIELD = "file"
# Room for the form's other fields and the multipart framing beyond the file itself.
FORM_OVERHEAD_BYTES = 256 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_URLENCODED_BYTES = 1024 * 1024


class UploadTooLargeError(Exception):
    def __init__(self, upload: Upload):
        super().__init__("upload too large")
        self.upload = upload


class _MultipartCollector:
    """Callbacks for python-multipart: keeps text fields and the file parts (by default,
    those named ``file``)."""

    def __init__(
        self,
        max_file_bytes: int,
        file_fields: frozenset[str] = frozenset({FILE_FIELD}),
        any_filename: bool = False,
    ):
        self.upload = Upload()
        self.max_file_bytes = max_file_bytes
        self.file_fields = file_fields
        self.any_filename = any_filename
        self._is_file = False
        self._headers: dict[bytes, bytes] = {}
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._name: str | None = None
        self._filename = ""
        self._data = bytearray()
        self._file_bytes = 0
        self._body_fields: set[str] = set()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._name = None
        self._is_file = False
        self._data = bytearray()

    def _header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        self._name = name.decode("utf-8", "replace") if name is not None else None
        filename = options.get(b"filename", b"")
        self._filename = filename.decode("utf-8", "replace")
        has_filename = b"filename" in options
        self._is_file = self._name in self.file_fields or (self.any_filename and has_filename)
        if has_filename and not self._is_file:
            # A file under another name ("image") is skipped, so the checks name the missing
            # `file` instead of calling the image a text field that is too long.
            self._name = None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._name is None:
            return
        self._data.extend(data[start:end])
        if self._is_file:
            self._file_bytes += end - start
            # One file over the limit, or all files together: never more than that in memory.
            if len(self._data) > self.max_file_bytes or self._file_bytes > self.max_file_bytes:
                raise UploadTooLargeError(self.upload)
        elif len(self._data) > MAX_FIELD_BYTES:
            # Cut short, not refused here: no valid value is this long, and the checks then
            # answer in their documented order (an overlong apikey 401, type 420, others 421).
            del self._data[MAX_FIELD_BYTES + 1 :]

    def _part_end(self) -> None:
        if self._name is None:
            return
        if self._is_file:
            data = bytes(self._data)
            if self.upload.file is None:  # the first file part counts for analyses
                self.upload.file = data
            name = self._filename or f"file {len(self.upload.files) + 1}"
            self.upload.files.append((name, data))
            self.upload.files_by_field.setdefault(self._name, data)
        elif self._name not in self._body_fields:  # the body's first wins over the query's
            self._body_fields.add(self._name)
            self.upload.fields[self._name] = self._data.decode("utf-8", "replace")
        self._data = bytearray()


async def read_upload(
    request: Request,
    max_file_bytes: int,
    *,
    file_fields: frozenset[str] = frozenset({FILE_FIELD}),
    any_filename: bool = False,
) -> Upload:
    """Query string and body fields (body wins) and the files, read within the size limit.

    A multipart part is a file when its name is one of ``file_fields`` or, with
    ``any_filename``, when it has a filename (DeepStack takes files under any name)."""
    query = Upload(fields=dict(request.query_params))
    body_limit = max_file_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > body_limit:
        raise UploadTooLargeError(query)
    content_type, options = parse_options_header(request.headers.get("content-type"))

    if content_type == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            return query
        collector = _MultipartCollector(max_file_bytes, file_fields, any_filename)
        collector.upload.fields.update(query.fields)
        try:
            parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
        except FormParserError:
            return query  # a boundary it refuses (over 256 bytes): as if there were none
        received = 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > body_limit:
                    raise UploadTooLargeError(collector.upload)
                parser.write(chunk)
            parser.finalize()
        except FormParserError:
            # A malformed form still has the fields read before the error; the checks that
            # follow tell the client what is missing.
            pass
        return collector.upload

    if content_type == b"application/x-www-form-urlencoded":
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_URLENCODED_BYTES:
                raise UploadTooLargeError(query)
        fields = dict(query.fields)
        for name, value in parse_qsl(
            body.decode("latin-1"), keep_blank_values=True, encoding="latin-1"
        ):
            fields[name] = value
        upload = Upload(fields={k: v for k, v in fields.items() if k not in file_fields})
        for name in sorted(file_fields & fields.keys()):
            data = fields[name].encode("latin-1")
            upload.file = upload.file if upload.file is not None else data
            upload.files_by_field[name] = data
        return upload

    # Any other body is not a form: only the query string counts.
    return query


async def whole_body(request: Request, limit: int, too_large: Callable[[], Exception]) -> bytes:
    """A body that is not a form, whole, never read past ``limit`` bytes: ``too_large()`` is
    raised as soon as its declared length or the bytes received pass it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large()
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise too_large()
    return bytes(body)
