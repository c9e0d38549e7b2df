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

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

import httpx

MAX_REDIRECTS = 5
DEFAULT_PORTS = {"http": 80, "https": 443}
CHUNK_BYTES = 64 * 1024


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
        host, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        host = host.strip("[]")
        same = host == target.host and (not port or port == str(target.port))
        return same, same


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


class ImageFetcher:
    """Fetches imageUri images by the operator's rules (above)."""

    def __init__(self, allow: list[str], max_bytes: int, timeout_s: float):
        self.allow = [AllowEntry(entry) for entry in allow if entry.strip()]
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

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

    async def address(self, target: Target, exact: bool) -> str:
        """The address to connect to, checked."""
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM
            )
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

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        return self._client

    async def fetch(self, url: str) -> bytes:
        if not self.enabled:
            raise ImageUriError(
                "this server does not fetch imageUri images; send the image's content",
                refused=True,
            )
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._fetch(url)
        except TimeoutError:
            raise ImageUriError(f"imageUri did not answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise ImageUriError(f"imageUri could not be fetched ({type(exc).__name__})") from None

    async def _fetch(self, url: str) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            target, exact = self.check(url)
            address = await self.address(target, exact)
            host = f"[{address}]" if ":" in address else address
            request = self.client().build_request(
                "GET",
                f"{target.scheme}://{host}:{target.port}{target.path}",
                headers={"Host": target.netloc, "Accept": "image/*", "Accept-Encoding": "identity"},
                extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
            )
            response = await self.client().send(request, stream=True)
            try:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    url = urljoin(f"{target.scheme}://{target.netloc}{target.path}", location)
                    continue
                if response.status_code != 200:
                    raise ImageUriError(f"imageUri answered HTTP {response.status_code}")
                return await self._body(response)
            finally:
                await response.aclose()
        raise ImageUriError(f"imageUri redirected more than {MAX_REDIRECTS} times")

    async def _body(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise ImageUriError("imageUri's image is larger than this server accepts")
        body = bytearray()
        async for chunk in response.aiter_bytes(CHUNK_BYTES):
            body.extend(chunk)
            if len(body) > self.max_bytes:
                raise ImageUriError("imageUri's image is larger than this server accepts")
        return bytes(body)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
