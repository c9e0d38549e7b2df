"""The replicas recipe as documented: two server processes on one PostgreSQL database behind
Debian's nginx with deploy/nginx.conf: quota exact across both, a gallery change made through
one seen by the other, the upload limit at the proxy."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image

from server.store.db import init_db, make_engine
from server.store.keys import KeyStore
from tests.conftest import ROOT, LiveServer, encode, free_port
from tests.databases import fresh_postgres_database
from tests.test_live import _hammer

pytestmark = pytest.mark.slow

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_site(upstreams: list[int], port: int) -> str:
    """deploy/nginx.conf with its ports replaced (each must still be there to be replaced)."""
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    for placeholder, actual in zip(("8001", "8002"), upstreams, strict=True):
        assert f"server 127.0.0.1:{placeholder} " in site
        site = site.replace(f"127.0.0.1:{placeholder}", f"127.0.0.1:{actual}")
    assert "    listen 80;" in site
    return site.replace("    listen 80;", f"    listen 127.0.0.1:{port};")


class Nginx:
    """nginx in the foreground, with its own pid, log and temp paths under ``prefix``."""

    def __init__(self, prefix: Path, site: str, port: int):
        prefix.mkdir(parents=True)
        (prefix / "imagerecognize.conf").write_text(site)
        self.access_log = prefix / "access.log"
        self.error_log = prefix / "error.log"
        temp_paths = "\n".join(
            f"    {kind}_temp_path {prefix / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # As root nginx would run its workers as nobody, who cannot enter pytest's folders.
        user = "user root;\n" if os.geteuid() == 0 else ""
        (prefix / "nginx.conf").write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\n"
            f"error_log {self.error_log} info;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n    log_format upstream '$status $upstream_addr';\n"
            f"    access_log {self.access_log} upstream;\n{temp_paths}\n"
            f"    include {prefix / 'imagerecognize.conf'};\n}}\n"
        )
        self.url = f"http://127.0.0.1:{port}/api/v2/"
        self.process = subprocess.Popen(
            [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(self.error_log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.error_log.read_text()}")
            try:
                requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("nginx did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def replicas(
    tmp_path: Path, postgres_url: str
) -> Iterator[tuple[Nginx, LiveServer, LiveServer, str]]:
    if not Path(NGINX).is_file():
        pytest.skip("nginx is not installed (`apt-get install nginx`)")
    with fresh_postgres_database(postgres_url) as database_url:
        environment = {"IMAGERECOGNIZE_DATABASE_URL": database_url}
        # Each replica its own data folder: all they share is the database.
        (tmp_path / "one").mkdir()
        (tmp_path / "two").mkdir()
        first = LiveServer(tmp_path / "one" / "data", environment)
        try:
            second = LiveServer(tmp_path / "two" / "data", environment)
            try:
                port = free_port()
                proxy = Nginx(tmp_path / "nginx", nginx_site([first.port, second.port], port), port)
                try:
                    yield proxy, first, second, database_url
                finally:
                    proxy.stop()
            finally:
                second.stop()
        finally:
            first.stop()


def test_two_replicas_behind_nginx(replicas, astronaut: Image.Image) -> None:
    proxy, first, second, database_url = replicas
    engine = make_engine(database_url)
    init_db(engine)
    keys = KeyStore(engine)
    key = keys.create("ten-behind-nginx", quota=10)
    admin, user = keys.create("admin", is_admin=True), keys.create("user")

    statuses = _hammer([proxy.url], key, encode(astronaut.resize((80, 80))), 60)
    assert statuses.count(200) == 10 and statuses.count(402) == 50
    assert keys.find("ten-behind-nginx").quota == 0
    upstreams = {line.split()[1] for line in proxy.access_log.read_text().splitlines()}
    assert upstreams == {f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"}

    def recognised(url: str) -> list[str]:
        response = requests.post(
            url, data={"apikey": user, "type": "celebrities"}, files={"file": encode(astronaut)}
        )
        assert response.status_code == 200, response.text
        return [face["name"] for face in response.json()["data"]["objects"]]

    enrolled = requests.post(
        first.url + "gallery/",
        data={"apikey": admin, "name": "Eileen Collins"},
        files=[("file", ("a.png", encode(astronaut, "PNG")))],
    )
    assert enrolled.status_code == 200, enrolled.text
    assert recognised(second.url) == ["Eileen Collins"]
    assert recognised(proxy.url) == ["Eileen Collins"]
    removed = requests.delete(second.url + "gallery/Eileen Collins", params={"apikey": admin})
    assert removed.status_code == 200
    assert recognised(first.url) == []

    # Far beyond the server's own limit: nginx refuses it before passing anything on.
    too_big = requests.post(
        proxy.url,
        data={"apikey": user, "type": "nsfw"},
        files={"file": b"\0" * (61 * 1024 * 1024)},
    )
    assert too_big.status_code == 413
    engine.dispose()
