"""The page's and the reference's routes, and the OpenAPI description (HTTP level)."""

from __future__ import annotations

import re
import warnings

from fastapi.testclient import TestClient

from server.errors import ErrorKind


def test_openapi_describes_the_api_without_duplicate_ids(client: TestClient) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # FastAPI warns of duplicate ids
        schema = client.get("/openapi.json").json()
    ids = [op["operationId"] for item in schema["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    post = schema["paths"]["/api/v2/"]["post"]
    form = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert {"apikey", "type", "file", "max_labels", "min_confidence", "nsfw_min_confidence"} <= set(
        form["properties"]
    )
    assert form["properties"]["file"]["format"] == "binary"
    for kind in (ErrorKind.NO_DATA, ErrorKind.QUOTA_REACHED, ErrorKind.IMAGE_TOO_LARGE,
                 ErrorKind.INVALID_FORMAT, ErrorKind.UNAVAILABLE):
        example = post["responses"][str(kind.status)]["content"]["application/json"]["example"]
        assert example["status"] == kind.status
        assert example["status_message"].startswith(kind.message)
    get = schema["paths"]["/api/v2/"]["get"]
    assert {p["name"] for p in get["parameters"]} == {"apikey", "type", "limit", "id"}
    assert {"get", "post"} <= set(schema["paths"]["/api/v2/gallery/"])
    assert "delete" in schema["paths"]["/api/v2/gallery/{name}/faces/{face_id}"]
    assert "/api/v2" not in schema["paths"]


def test_page_and_reference_use_only_local_assets(client: TestClient) -> None:
    for path in ("/", "/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        urls = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
        assert urls and all(url.startswith("/") for url in urls), urls
        for url in urls:
            assert client.get(url).status_code == 200, url
