"""Logging for `imagerecognize serve`: one format for the server's lines, uvicorn's and the
access lines (server/http/observability.py), as text or, with ``IMAGERECOGNIZE_LOG_FORMAT=json``,
one JSON object per line (python-json-logger)."""

from __future__ import annotations

import re
from typing import Any

# Control characters (C0, DEL, C1) and lone surrogates: a line must stay one printable line.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


def printable(text: str) -> str:
    """``text`` for a text log line: control characters and lone surrogates escaped
    (``\\x0d``, ``\\ud800``), so that a path with %0d%0a cannot forge a line and %00 cannot
    make the log binary."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def logging_config(log_format: str, level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict, handed to uvicorn so that every worker process
    configures itself the same way. uvicorn's own access log is off: the server writes its
    own line per request, without query strings (keys) and with the request id."""
    if log_format == "json":
        formatter: dict[str, Any] = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FIELDS,
            "rename_fields": {"levelname": "level", "name": "logger", "asctime": "time"},
        }
    else:
        formatter = {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            # uvicorn's loggers: through the root handler, in the same format.
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": True},
            # Alembic's INFO lines (a page of plugin set-up and each migration) at every start:
            # only its warnings.
            "alembic": {"handlers": [], "level": "WARNING", "propagate": True},
        },
    }
