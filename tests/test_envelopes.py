"""Every route the app has answers an empty or malformed request in its dialect's envelope:
never a 500, never a traceback, always its X-Request-Id. The routes are read from the app, so
a new route is covered without touching this file; its path needs a checker in ``DIALECTS``
(a prefix: one line per API dialect) or ``SINGLE_ROUTES`` (one exact path), or this fails
saying so. No model loads: no request here carries a valid key."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Mount

from server.errors import ErrorKind
from server.http.app import create_app
from tests.conftest import make_settings

Checker = Callable[[httpx.Response], None]


def v2_envelope(response: httpx.Response) -> None:
    """The imagerecognize v2 body: status (the HTTP status), status_message and data; a client
    error, since none of these requests is valid: a 4xx, or the v2 API's own 300 for a request
    without data (server/errors.py)."""
    body = response.json()
    assert set(body) == {"status", "status_message", "data"}, body
    assert body["status"] == response.status_code, body
    assert isinstance(body["status_message"], str) and body["status_message"], body
    assert response.status_code == ErrorKind.NO_DATA.status or 400 <= response.status_code < 500


def compreface_error(response: httpx.Response) -> None:
    """CompreFace's error body: a message and its numeric code, with a client error status."""
    body = response.json()
    assert set(body) == {"message", "code"}, body
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["code"], int), body
    assert 400 <= response.status_code < 500, body


def deepstack_answer(response: httpx.Response) -> None:
    """DeepStack's body: ``success`` and ``duration`` 0, and on failure only ``error`` beside
    them, with a client error status. The one success here is custom/list, which needs no
    key (docs/compat.md)."""
    body = response.json()
    assert body["duration"] == 0, body
    if body["success"] is True:
        assert response.status_code == 200 and "models" in body, body
        return
    assert body["success"] is False and set(body) == {"success", "error", "duration"}, body
    assert isinstance(body["error"], str) and body["error"], body
    assert 400 <= response.status_code < 500, body


def google_error(response: httpx.Response) -> None:
    """Google's error body: {"error": {"code" (the HTTP status), "message", "status"}}, with a
    client error status (403 without a valid key, 404 or 501 for other paths)."""
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] == response.status_code and error["message"], body
    assert isinstance(error["status"], str) and error["status"].isupper(), body
    assert 400 <= response.status_code < 500 or response.status_code == 501, body


def static_file(response: httpx.Response) -> None:
    """A missing or escaping file of the page's folders: 404 in the v2 envelope (the app's
    handler answers every HTTPException so)."""
    assert response.status_code == 404
    v2_envelope(response)


def livez(response: httpx.Response) -> None:
    assert response.status_code == 200 and response.json() == {"status": "alive"}


def readyz(response: httpx.Response) -> None:
    body = response.json()
    assert response.status_code in (200, 503), body
    assert body["status"] == ("ready" if response.status_code == 200 else "not ready"), body
    assert isinstance(body["not_ready"], list) and isinstance(body["models"], dict), body


def health(response: httpx.Response) -> None:
    body = response.json()
    assert response.status_code == 200 and body["status"] == "ok" and "models" in body, body


def prometheus(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE imagerecognize_requests" in response.text


def openapi(response: httpx.Response) -> None:
    assert response.status_code == 200 and "openapi" in response.json()


def html_page(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


def page_or_rekognition(response: httpx.Response) -> None:
    """``/``: the page (GET); POST is Amazon Rekognition's with an X-Amz-Target header
    (server/http/rekognition/, its errors in AWS's shape: tests/test_compat_rekognition.py),
    and without one, which none of these requests has, 405 in the v2 envelope as before."""
    if response.request.method == "GET":
        html_page(response)
        return
    assert response.status_code == 405 and response.headers["allow"] == "GET"
    v2_envelope(response)


# Per API dialect, the prefix of its routes and the check of its answers. A new dialect adds
# one line (its routes under the prefix then need no more).
DIALECTS: dict[str, Checker] = {
    "/api/v2/": v2_envelope,  # the imagerecognize v2 API and the gallery of known people
    "/api/v1/": compreface_error,  # CompreFace (server/http/compreface/)
    "/v1/vision/": deepstack_answer,  # DeepStack / CodeProject.AI (server/http/deepstack/)
    "/v1/image/": deepstack_answer,
    "/v1/": google_error,  # Google Cloud Vision (server/http/google/)
    "/v1p1beta1/": google_error,
    "/static/": static_file,  # the page's files and the API reference's (mounts)
}
# Routes of no dialect: operations and the page, each with its own answer.
SINGLE_ROUTES: dict[str, Checker] = {
    "/livez": livez,
    "/readyz": readyz,
    "/health": health,
    "/metrics": prometheus,
    "/openapi.json": openapi,
    "/": page_or_rekognition,
    "/docs": html_page,
    "/redoc": html_page,
}


@dataclass(frozen=True)
class Route:
    path: str
    methods: tuple[str, ...]
    mount: bool


def app_routes(app: FastAPI) -> list[Route]:
    """Every route of the app, those of included routers too, with their full paths."""
    # FastAPI >= 0.16x keeps included routers unexpanded in app.routes; this walks them.
    walk = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = []
    for route in walk(app.routes) if walk is not None else app.routes:
        original = getattr(route, "original_route", route)
        mount = isinstance(original, Mount)
        methods = tuple(sorted(route.methods or ())) if not mount else ("GET",)
        routes.append(Route(route.path, methods, mount))
    return routes


def checker_for(path: str) -> Checker | None:
    if path in SINGLE_ROUTES:
        return SINGLE_ROUTES[path]
    matching = [
        prefix for prefix in DIALECTS
        if path == prefix.rstrip("/") or path.startswith(prefix.rstrip("/") + "/")
    ]
    return DIALECTS[max(matching, key=len)] if matching else None


def concrete_paths(route: Route) -> list[str]:
    """The paths to ask: path parameters filled with a name that exists nowhere and with a
    malformed one; for a mount, a missing file and one outside its folder."""
    if route.mount:
        return [f"{route.path}/no-such-file.js", f"{route.path}/..%2f..%2fsettings.py"]
    parameter = re.compile(r"\{[^}]*\}")
    if not parameter.search(route.path):
        return [route.path]
    return [parameter.sub("nobody", route.path), parameter.sub("%00%ff..", route.path)]


BROKEN_MULTIPART = b"--edge\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\nno end"
# (description, query, headers, body): nothing, and malformed in each way a client manages.
REQUESTS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("empty", "", {}, b""),
    ("broken multipart", "", {"Content-Type": "multipart/form-data; boundary=edge"},
     BROKEN_MULTIPART),
    ("multipart without boundary", "", {"Content-Type": "multipart/form-data"}, b"x" * 64),
    ("malformed JSON", "", {"Content-Type": "application/json"}, b"{\"apikey\": "),
    ("form with a wrong key", "apikey=wrong&type=objects",
     {"Content-Type": "application/x-www-form-urlencoded"}, b"apikey=wrong&type=objects"),
    ("undecodable query", "apikey=%ff%fe&type=%00", {}, b""),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("envelopes") / "data", preload=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def test_every_route_has_an_envelope_checker(tmp_path: Path) -> None:
    routes = app_routes(create_app(make_settings(tmp_path / "data", preload=False)))
    assert any(route.path == "/api/v2/" for route in routes), "the route list must be complete"
    unchecked = sorted({route.path for route in routes if checker_for(route.path) is None})
    assert not unchecked, (
        f"routes without an envelope checker: {unchecked}. Add their dialect's prefix to "
        "DIALECTS (or the path to SINGLE_ROUTES) in tests/test_envelopes.py, with a function "
        "that checks its answers"
    )


def test_every_route_answers_bad_requests_in_its_envelope(client: TestClient) -> None:
    problems = []
    asked = 0
    for route in app_routes(client.app):
        check = checker_for(route.path)
        if check is None:
            continue  # reported by test_every_route_has_an_envelope_checker
        for method in route.methods:
            for path in concrete_paths(route):
                for description, query, headers, body in REQUESTS:
                    url = f"{path}?{query}" if query else path
                    response = client.request(method, url, headers=headers, content=body)
                    asked += 1
                    where = f"{method} {url} ({description}): {response.status_code}"
                    if response.status_code >= 500 and route.path != "/readyz":
                        problems.append(f"{where}, a server error: {response.text[:200]}")
                        continue
                    if "Traceback" in response.text:
                        problems.append(f"{where}, a traceback: {response.text[:200]}")
                    if "x-request-id" not in response.headers:
                        problems.append(f"{where}, no X-Request-Id")
                    if method == "HEAD":
                        continue  # no body to check
                    try:
                        check(response)
                    except (AssertionError, ValueError, KeyError) as exc:
                        problems.append(f"{where}, not its envelope: {exc!r} {response.text[:200]}")
    assert asked > 100
    assert not problems, "\n".join(problems)


def test_a_path_no_route_has_answers_the_v2_envelope(client: TestClient) -> None:
    for method in ("GET", "POST", "DELETE"):
        response = client.request(method, "/no/such/route")
        assert response.status_code == 404
        v2_envelope(response)
