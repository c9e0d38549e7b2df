"""In real Chromium (Debian's, driven by Playwright): the original's JavaScript example from
another origin, the page at /, and /docs with no request leaving the server."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from server.settings import Settings
from server.store.keys import KeyStore
from tests.conftest import ROOT, LiveServer, encode, key_store

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
ASSETS = ROOT / "tests" / "assets"
TIMEOUT_MS = 120_000  # a model's first load (objects converts its weights once)

pytestmark = [
    pytest.mark.slow,  # a live server and Chromium
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        assert chromium.version.split(".")[0] == _debian_chromium_major()
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser") / "data"


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[LiveServer]:
    live = LiveServer(data_dir)  # default settings: CORS for any origin
    yield live
    live.stop()


@pytest.fixture(scope="module")
def keys(server: LiveServer, data_dir: Path) -> KeyStore:
    return key_store(Settings(data_dir=data_dir))


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory, astronaut: Image.Image) -> Path:
    path = tmp_path_factory.mktemp("photos") / "astronaut.jpg"
    path.write_bytes(encode(astronaut, "JPEG", quality=92))
    return path


def _debian_chromium_major() -> str:
    import subprocess

    version = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True).stdout
    return version.split()[1].split(".")[0]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def customer_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Another origin (its own port) serving static files, as a customer's site would."""
    root = tmp_path_factory.mktemp("site")
    (root / "jquery.min.js").write_bytes((ASSETS / "jquery-3.3.1.min.js").read_bytes())
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()


def example_page(site: tuple[str, Path], api_url: str, apikey: str, name: str) -> str:
    """The original's example with only its jQuery URL, API URL and key changed."""
    origin, root = site
    page = (ASSETS / "original_example.html").read_text()
    page = page.replace("https://cdnjs.cloudflare.com/ajax/libs/jquery/3.3.1/jquery.min.js",
                        "jquery.min.js")
    page = page.replace("https://imagerecognize.com/api/v2/", api_url)
    page = page.replace("form_data.append('apikey', APIKEY);",
                        f"form_data.append('apikey', '{apikey}');")
    (root / name).write_text(page)
    return f"{origin}/{name}"


def run_example(browser, url: str, photo: Path) -> tuple[str, str]:
    page = browser.new_page()
    try:
        page.goto(url)
        page.set_input_files("#image-file", str(photo))
        page.click("button[name=submit]")
        page.wait_for_function(
            "document.getElementById('response1').textContent !== ''", timeout=TIMEOUT_MS
        )
        page.wait_for_timeout(300)  # jQuery's statusCode callbacks run after error()
        return page.inner_text("#response1"), page.inner_text("#response2")
    finally:
        page.close()


def test_original_example_from_another_origin(
    browser, server: LiveServer, keys: KeyStore, customer_site, photo: Path
) -> None:
    assert urlsplit(customer_site[0]).port != server.port
    key = keys.create("customer", quota=5)
    response1, response2 = run_example(
        browser, example_page(customer_site, server.url, key, "ok.html"), photo
    )
    assert json.loads(response1)["status"] == 200  # the raw answer, as the example shows it
    data = json.loads(response2)
    assert data["type"] == "objects" and data["quota"] == 4
    # The example asks for min_confidence 80: labels, if any, are at least that sure.
    assert all(label["confidence"] >= 80 for label in data["objects"])
    assert data["image"]["width"] == 512

    empty = keys.create("spent", quota=0)
    assert run_example(
        browser, example_page(customer_site, server.url, empty, "spent.html"), photo
    ) == ("402", "")
    assert run_example(
        browser, example_page(customer_site, server.url, "ir_wrong", "bad.html"), photo
    ) == ("Error", "")


def open_page(browser, server: LiveServer, key: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"http://127.0.0.1:{server.port}/")
    page.fill("#apikey", key)
    return page


def analyse(page, type_: str, photo: Path) -> None:
    page.select_option("#type", type_)
    page.set_input_files("#file", str(photo))
    page.wait_for_function("document.getElementById('canvas').width > 0")
    page.click("#analyse")
    page.wait_for_function(
        "!['', 'Analysing…'].includes(document.getElementById('status').textContent)",
        timeout=TIMEOUT_MS,
    )


def canvas_pixels(page) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(page.locator("#canvas").screenshot())).convert("RGB"))


def test_page_draws_face_boxes(browser, server: LiveServer, keys: KeyStore, photo: Path) -> None:
    page = open_page(browser, server, keys.create("page-user"))
    page.select_option("#type", "detect_faces")
    page.set_input_files("#file", str(photo))
    page.wait_for_function("document.getElementById('canvas').width > 0")
    before = canvas_pixels(page)
    analyse(page, "detect_faces", photo)
    assert page.inner_text("#status").startswith("Done in")
    data = json.loads(page.inner_text("#json"))["data"]
    after = canvas_pixels(page)
    scale = after.shape[1] / data["image"]["width"]
    box = data["objects"][0]["box"]
    top = round(box["top"] * scale)
    left, right = round(box["left"] * scale), round((box["left"] + box["width"]) * scale)
    edge = after[top - 1 : top + 2, left + 5 : right - 5].reshape(-1, 3).astype(int)
    magenta = np.array([255, 0, 255])
    # The box's top edge is drawn in the faces' colour, where the photo was not that colour.
    assert (np.abs(edge - magenta).max(axis=1) < 60).mean() > 0.5
    photo_edge = before[top - 1 : top + 2, left + 5 : right - 5].reshape(-1, 3).astype(int)
    assert (np.abs(photo_edge - magenta).max(axis=1) < 60).mean() < 0.05
    # Away from every face's box, label and landmarks, the photo is untouched.
    assert after.shape == before.shape
    away = np.ones(after.shape[:2], dtype=bool)
    away[:3, :] = away[-3:, :] = away[:, :3] = away[:, -3:] = False  # the canvas's border
    for face in data["objects"]:
        b = {k: round(v * scale) for k, v in face["box"].items()}
        away[max(0, b["top"] - 25) : b["top"] + b["height"] + 25,
             max(0, b["left"] - 10) : b["left"] + b["width"] + 80] = False
    assert away.mean() > 0.5
    # The page's layout changes once the answer is shown, so the canvas may sit a pixel
    # further: the best of the small shifts is compared.
    differences = [
        np.percentile(np.abs(np.roll(after, (dy, dx), axis=(0, 1)).astype(int) - before)[away], 99)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    ]
    assert min(differences) < 8
    assert page.evaluate("localStorage.length") == 0  # not remembered unless asked
    page.check("#remember")
    assert page.evaluate("localStorage.length") == 1
    page.close()


def test_page_tells_errors_in_words(
    browser, server: LiveServer, keys: KeyStore, photo: Path, tmp_path: Path
) -> None:
    gif = tmp_path / "animation.gif"
    Image.new("RGB", (32, 32), "red").save(gif, "GIF")
    page = open_page(browser, server, keys.create("words"))
    page.select_option("#type", "nsfw")
    page.set_input_files("#file", str(gif))
    page.click("#analyse")
    page.wait_for_function("document.getElementById('status').textContent.includes('(')")
    assert page.inner_text("#status") == (
        "Only PNG and JPEG images are accepted. (415 Invalid file format)"
    )
    page.close()
    page = open_page(browser, server, keys.create("no-quota", quota=0))
    analyse(page, "nsfw", photo)
    assert page.inner_text("#status") == (
        "This key has no quota left: ask the server's operator for more. (402 Quota limit reached)"
    )
    page.close()


def test_page_gallery_enrolment(browser, server: LiveServer, keys: KeyStore, photo: Path) -> None:
    page = open_page(browser, server, keys.create("ordinary"))
    page.click("#gallery-load")
    page.wait_for_function("document.getElementById('gallery-status').textContent !== ''")
    assert "needs an admin key" in page.inner_text("#gallery-status")
    page.close()

    page = open_page(browser, server, keys.create("ops", is_admin=True))
    page.click("#gallery-load")
    page.wait_for_function(
        "document.getElementById('gallery-status').textContent.includes('enrolled')"
    )
    assert page.inner_text("#gallery-status") == "0 person(s) enrolled."
    page.fill("#enrol-name", "Eileen Collins")
    page.set_input_files("#enrol-files", str(photo))
    page.click("#enrol")
    page.wait_for_function(
        "document.getElementById('gallery-status').textContent.startsWith('Enrolled')",
        timeout=TIMEOUT_MS,
    )
    assert page.inner_text("#gallery-status") == "Enrolled Eileen Collins (1 face(s))."
    assert page.inner_text("#people").startswith("Eileen Collins: 1 face(s)")
    # The enrolled person is then recognised on the same page, drawn with her name.
    analyse(page, "celebrities", photo)
    data = json.loads(page.inner_text("#json"))["data"]
    assert [person["name"] for person in data["objects"]] == ["Eileen Collins"]
    page.click("#people button")
    page.wait_for_function(
        "document.getElementById('gallery-status').textContent.startsWith('Removed')"
    )
    assert page.inner_text("#people") == ""
    page.close()


@pytest.mark.parametrize(("path", "rendered"), [("/docs", ".opblock"), ("/redoc", "h1")])
def test_reference_renders_offline(browser, server: LiveServer, path: str, rendered: str) -> None:
    context = browser.new_context()
    left: list[str] = []

    def only_local(route) -> None:
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            left.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{server.port}{path}")
    page.wait_for_selector(rendered, timeout=30_000)
    page.wait_for_load_state("networkidle")
    text = page.inner_text("body")
    assert "/api/v2/" in text and "gallery" in text
    assert left == []
    context.close()
