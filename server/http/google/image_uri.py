"""Images given by URL (``image.source.imageUri``), fetched only where the operator allows:
an on-premise server must not become a way into the network it stands in.

Off unless IMAGERECOGNIZE_GOOGLE_IMAGE_URI_ALLOW lists something. Each entry is one of:

    https://cdn.example.com/public/   a URL prefix (scheme, host, port and path prefix)
    images.example.com, host:8080     a host (any port, or that port)
    *.example.com                     that domain's subdomains
    *                                 any host

http and https only; no user name in the URL; at most MAX_REDIRECTS redirects, each checked
like the first URL; the upload size limit and a deadline for the whole fetch. The host is
resolved here and the connection goes to the address that was checked (so a name cannot
resolve one way for the check and another for the fetch): a private, loopback, link-local or
otherwise non-public address is refused unless the host itself is listed (an exact host or a
prefix's host, not a wildcard)."""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

import urllib3
from starlette.concurrency import run_in_threadpool

MAX_REDIRECTS = 5
DEFAULT_PORTS = {"http": 80, "https": 443}
CHUNK_BYTES = 64 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class ImageUriError(Exception):
    """Why an imageUri was not fetched; safe to show (one image's error)."""

    def __init__(self, message: str, *, refused: bool = False):
        super().__init__(message)
        self.refused = refused  # the operator does not allow it (else: it failed)


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # lower case, IPv6 without brackets
    port: int
    path: str  # as sent, percent-encoded

    @classmethod
    def parse(cls, url: str) -> Target:
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            raise ImageUriError("imageUri is not a valid URL") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise ImageUriError("imageUri must be an http or https URL", refused=True)
        if parts.username is not None or parts.password is not None:
            raise ImageUriError("imageUri must not carry a user name or password", refused=True)
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise ImageUriError("imageUri has no host")
        path = parts.path or "/"
        if any(segment in (".", "..") for segment in unquote(path).split("/")):
            raise ImageUriError("imageUri's path must not contain . or .. segments", refused=True)
        if parts.query:
            path = f"{path}?{parts.query}"
        return cls(scheme, host, port or DEFAULT_PORTS[scheme], path)

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


@dataclass(frozen=True)
class AllowEntry:
    """One entry of the allow-list; ``exact``: names its host, so non-public addresses are
    allowed for it."""

    text: str

    def matches(self, target: Target) -> tuple[bool, bool]:
        """(allowed, exact)"""
        entry = self.text.strip().lower()
        if entry == "*":
            return True, False
        if entry.startswith("*."):
            return target.host.endswith(entry[1:]), False
        if "://" in entry:
            prefix = Target.parse(self.text)
            same_origin = (prefix.scheme, prefix.host, prefix.port) == (
                target.scheme,
                target.host,
                target.port,
            )
            return same_origin and target.path.startswith(prefix.path), same_origin
        try:  # host, host:port, [v6], [v6]:port
            parts = urlsplit(f"//{entry}")
            host, port = (parts.hostname or "").rstrip("."), parts.port
        except ValueError:  # a bare IPv6 address without brackets
            host, port = entry.strip("[]"), None
        same = host == target.host and (port is None or port == target.port)
        return same, same


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


class ImageFetcher:
    """Fetches imageUri images by the operator's rules (above), with urllib3, in a thread."""

    def __init__(self, allow: list[str], max_bytes: int, timeout_s: float):
        self.allow = [AllowEntry(entry) for entry in allow if entry.strip()]
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    @property
    def enabled(self) -> bool:
        return bool(self.allow)

    def check(self, url: str) -> tuple[Target, bool]:
        """The URL parsed, if allowed, and whether its host is listed by name."""
        target = Target.parse(url)
        verdicts = [entry.matches(target) for entry in self.allow]
        if not any(allowed for allowed, _ in verdicts):
            raise ImageUriError(
                "this server does not fetch images from that URL; send the image's content "
                "(the operator allows URLs with IMAGERECOGNIZE_GOOGLE_IMAGE_URI_ALLOW)",
                refused=True,
            )
        return target, any(allowed and exact for allowed, exact in verdicts)

    @staticmethod
    def address(target: Target, exact: bool) -> str:
        """The address to connect to, checked. Blocking (name resolution)."""
        try:
            found = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise ImageUriError(f"imageUri's host {target.host[:100]} does not resolve") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in found]
        if not exact and not all(_public(address) for address in addresses):
            raise ImageUriError(
                "imageUri's host has a private, loopback or link-local address; only hosts "
                "listed by name may",
                refused=True,
            )
        return str(addresses[0])

    async def fetch(self, url: str) -> bytes:
        if not self.enabled:
            raise ImageUriError(
                "this server does not fetch imageUri images; send the image's content",
                refused=True,
            )
        return await run_in_threadpool(self._fetch, url, time.monotonic() + self.timeout_s)

    def _fetch(self, url: str, deadline: float) -> bytes:
        try:
            for _ in range(MAX_REDIRECTS + 1):
                target, exact = self.check(url)
                response = self._get(target, self.address(target, exact), deadline)
                try:
                    if response.status in REDIRECTS:
                        location = response.headers.get("location", "")
                        url = urljoin(f"{target.scheme}://{target.netloc}{target.path}", location)
                        continue
                    if response.status != 200:
                        raise ImageUriError(f"imageUri answered HTTP {response.status}")
                    return self._body(response, deadline)
                finally:
                    response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            if isinstance(exc, urllib3.exceptions.TimeoutError):
                raise self._late() from None
            raise ImageUriError(f"imageUri could not be fetched ({type(exc).__name__})") from None
        raise ImageUriError(f"imageUri redirected more than {MAX_REDIRECTS} times")

    def _late(self) -> ImageUriError:
        return ImageUriError(f"imageUri did not answer within {self.timeout_s:g} s")

    def _get(self, target: Target, address: str, deadline: float) -> urllib3.BaseHTTPResponse:
        """GET from ``address`` itself, with the URL's host name in Host (and for TLS: SNI
        and the certificate's check)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._late()
        timeout = urllib3.Timeout(connect=remaining, read=remaining)
        if target.scheme == "https":
            pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
                address,
                target.port,
                timeout=timeout,
                retries=False,
                cert_reqs="CERT_REQUIRED",
                assert_hostname=target.host,
                server_hostname=target.host,
            )
        else:
            pool = urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False)
        return pool.urlopen(
            "GET",
            target.path,
            headers={"Host": target.netloc, "Accept": "image/*", "Accept-Encoding": "identity"},
            redirect=False,
            preload_content=False,
            decode_content=False,
        )

    def _body(self, response: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise ImageUriError("imageUri's image is larger than this server accepts")
        body = bytearray()
        for chunk in response.stream(CHUNK_BYTES):
            body.extend(chunk)
            if len(body) > self.max_bytes:
                raise ImageUriError("imageUri's image is larger than this server accepts")
            if time.monotonic() > deadline:  # a body that drips in
                raise self._late()
        return bytes(body)
