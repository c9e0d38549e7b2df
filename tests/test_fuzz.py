"""Property: whatever the form fields and however the image bytes are mangled, the answer is
never 500 and its HTTP status equals the envelope's status."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from server.http.app import create_app
from tests.conftest import key_store, make_settings

URL = "/api/v2/"
TYPES = ["objects", "celebrities", "detect_faces", "detect_text", "nsfw", "cache"]
INT_FIELDS = ["max_labels", "min_confidence", "nsfw_min_confidence", "limit"]


def small_photo(fmt: str) -> bytes:
    import skimage.data

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).resize((48, 48)).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz") / "data"
    postgres = os.environ.get("IMAGERECOGNIZE_TEST_POSTGRES_URL")
    config = make_settings(data_dir, database_url=postgres)
    key = key_store(config).create(f"fuzz-{os.urandom(4).hex()}")
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        yield client, key


text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "0", "80", "-1", "101", "1e3", "\x00", "9" * 5000, "\u0661\u0660"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)


@st.composite
def image_bytes(draw: st.DrawFn) -> bytes | None:
    base = draw(st.sampled_from([small_photo("PNG"), small_photo("JPEG"), b""]))
    for _ in range(draw(st.integers(0, 3))):
        if not base:
            break
        at = draw(st.integers(0, len(base) - 1))
        match draw(st.sampled_from(["flip", "cut", "insert", "header"])):
            case "flip":
                base = base[:at] + bytes([draw(st.integers(0, 255))]) + base[at + 1 :]
            case "cut":
                base = base[:at]
            case "insert":
                base = base[:at] + draw(st.binary(max_size=64)) + base[at:]
            case "header":  # the width/height bytes of a PNG or the first JPEG segments
                at = draw(st.integers(0, min(len(base), 40) - 1))
                base = base[:at] + bytes([draw(st.integers(0, 255))]) + base[at + 1 :]
    return draw(st.one_of(st.just(base), st.binary(max_size=200), st.none()))


@given(
    transport=st.sampled_from(["multipart", "urlencoded", "get"]),
    # Weighted towards requests that get past the key and type checks.
    apikey=st.sampled_from(["valid", "valid", "valid", "unknown", "empty", "absent"]),
    type_=st.one_of(st.sampled_from(TYPES), st.sampled_from(TYPES), text, st.none()),
    numbers=st.dictionaries(st.sampled_from(INT_FIELDS), text, max_size=4),
    result_id=st.one_of(st.none(), text),
    image=image_bytes(),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.slow
def test_no_input_gives_500(
    fuzz_client: tuple[TestClient, str],
    transport: str,
    apikey: str,
    type_: str | None,
    numbers: dict[str, str],
    result_id: str | None,
    image: bytes | None,
) -> None:
    client, key = fuzz_client
    fields = dict(numbers)
    if apikey != "absent":
        fields["apikey"] = {"valid": key, "unknown": "ir_nobody", "empty": ""}[apikey]
    if type_ is not None:
        fields["type"] = type_
    if result_id is not None:
        fields["id"] = result_id
    if transport == "get":
        # httpx refuses NUL and other control characters in a URL: send them encoded.
        response = client.get(URL, params=fields)
    elif transport == "urlencoded":
        response = client.post(URL, data=fields)
    else:
        files = {"file": ("image", image)} if image is not None else {"other": ("x", b"")}
        response = client.post(URL, data=fields, files=files)
    body = response.json()
    assert response.status_code != 500, body
    assert response.status_code == body["status"], body
    assert set(body) == {"status", "status_message", "data"}
