"""A request's form as the API's rules read it: its text fields and its files, however they
arrived (a streamed multipart body, a urlencoded one, a query string)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    file: bytes | None = None  # the first part named "file"
    # Every file part, with its filename (gallery enrolment takes several photos).
    files: list[tuple[str, bytes]] = field(default_factory=list)
    # The first file part of each field name ("image"), for dialects that name their files.
    files_by_field: dict[str, bytes] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.fields and self.file is None
