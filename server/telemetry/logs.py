"""Logging for `imagerecognize serve`: one format for the server's lines, uvicorn's and the
access lines (server/http/observability.py), as text or, with ``IMAGERECOGNIZE_LOG_FORMAT=json``,
one JSON object per line (python-json-logger)."""

from __future__ import annotations

from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


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
