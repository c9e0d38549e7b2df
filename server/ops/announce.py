"""The line that says the server answers: `serve` asks its own /readyz (the same path as any
client) and prints "ready" only once it is answered 200, so that the line is true whatever
uvicorn printed before it (with several workers, uvicorn's "running on" comes from the parent
before any worker accepts)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 0.25
PROBE_TIMEOUT_S = 10.0
# The wildcard addresses are asked through the loopback address of their family.
_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def base_url(host: str, port: int) -> str:
    """The URL this machine reaches the server at."""
    host = _LOOPBACK.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on now (taken by another server, no such address),
    or None. Asked before the models are prepared: uvicorn's own bind would say it only
    minutes later, and meanwhile another server on the port would answer our "ready" probe."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            sock.bind(address)
    except OSError as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


READY_LINE = "ready: answering on {url}/"


class ReadyAnnouncer:
    """A daemon thread that waits until the server listens, then says so once: when its
    /readyz answers 200, the line ``ready: answering on URL/`` alone on standard output (for a
    script to wait for; the log, on standard error, says the same in other words); else a log
    line: listening with lazy models, or listening but not ready and why."""

    def __init__(self, host: str, port: int, preload: bool, started: float):
        self.base = base_url(host, port)
        self.preload = preload
        self.started = started  # time.monotonic() when `serve` began
        # Never through a proxy from the environment: this is a question to ourselves.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ready-announcer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _get(self, path: str) -> tuple[int, dict] | None:
        """(status, JSON body), or None while nothing listens."""
        try:
            with self._opener.open(self.base + path, timeout=PROBE_TIMEOUT_S) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            try:
                return error.code, json.loads(error.read() or b"{}")
            except ValueError:
                return error.code, {}
        except (OSError, ValueError):  # refused, reset, timed out while starting
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            answer = self._get("/readyz")
            if answer is not None:
                self._announce(*answer)
                return
            self._stop.wait(PROBE_INTERVAL_S)

    def _announce(self, status: int, body: dict) -> None:
        after = time.monotonic() - self.started
        if status == 200:
            log.info("answering on %s/, every model prepared, %.1f s after start", self.base, after)
            print(READY_LINE.format(url=self.base), flush=True)
        elif not self.preload:
            log.info(
                "listening on %s/ (%.1f s after start); models load on first use "
                "(IMAGERECOGNIZE_PRELOAD=false): each type's first request waits for its model",
                self.base, after,
            )
        else:
            reasons = "; ".join(body.get("not_ready", [])) or f"/readyz answered {status}"
            log.warning("listening on %s/, but not ready: %s", self.base, reasons)
