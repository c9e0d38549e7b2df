"""The checks of a request's type (420) and parameters (421); server/service/admission.py runs them
in their place among the others."""

from __future__ import annotations

import re
from typing import Any

from server.catalog import ALL_TYPES, CACHE_TYPE, MAX_RESULT_ID_CHARS, TYPE_PARAMETERS
from server.errors import ApiError, ErrorKind
from server.service.form import Upload

# ASCII digits only (int() also takes Arabic-Indic and full-width digits), and few enough
# that int() never meets Python's 4,300-digit limit; leading zeros are allowed.
_DECIMAL = re.compile(r"^\s*[+-]?[0-9]{1,20}\s*$", re.ASCII)

NO_SUCH_RESULT = "id (no such result for this key)"


def could_be_stored_result_id(result_id: str) -> bool:
    """False for an id no stored result has: longer than any, or holding NUL, which
    PostgreSQL refuses outright (a 500 if it got that far)."""
    return len(result_id) <= MAX_RESULT_ID_CHARS and "\x00" not in result_id


def parse_int(value: str) -> int | None:
    """A decimal integer string ("80", " 80 ", "+80") to int; anything else to None."""
    if not _DECIMAL.match(value):
        return None
    return int(value)


def check_type(upload: Upload, is_get: bool, partial: bool = False) -> str | None:
    """The type, or 420. With ``partial`` (body cut short) a missing type is not an error."""
    type_ = upload.fields.get("type")
    if type_ is None and partial:
        return None
    type_ = (type_ or "").strip()
    if type_ not in ALL_TYPES or (is_get and type_ != CACHE_TYPE):
        raise ApiError(ErrorKind.INVALID_TYPE)
    return type_


def check_parameters(type_: str, upload: Upload, partial: bool = False) -> dict[str, Any]:
    """The type's parameters as ints, or 421 naming every missing or malformed one."""
    problems: list[str] = []
    if type_ != CACHE_TYPE and upload.file is None and not partial:
        problems.append("file (missing)")
    params: dict[str, Any] = {}
    for name, rule in TYPE_PARAMETERS.get(type_, {}).items():
        raw = upload.fields.get(name)
        if raw is None or raw.strip() == "":
            if rule.required and not partial:
                problems.append(f"{name} (missing, must be {rule.describe()})")
            continue
        value = parse_int(raw)
        if value is None or not rule.accepts(value):
            problems.append(f"{name} (must be {rule.describe()})")
            continue
        params[name] = value
    if type_ == CACHE_TYPE and "id" in upload.fields:
        result_id = upload.fields["id"].strip()
        if not could_be_stored_result_id(result_id):
            problems.append(NO_SUCH_RESULT)
        else:
            params["id"] = result_id
    if problems:
        raise ApiError(ErrorKind.INVALID_PARAMETER, ", ".join(problems))
    return params
