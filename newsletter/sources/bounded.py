"""What a feed server may make ``fetch`` do: decode at most ``max_bytes``, and go only where it is allowed.

Why (issue 25): httpx inflates each layer of a stacked ``Content-Encoding`` (``gzip, gzip``) in one call,
before the size cap sees a byte, so a 3.5 KB response made ``fetch`` use more than 2 GB with the event loop
blocked (no deadline could fire). And redirects were followed to any host and port, so whoever controls a
feed host could make the server request its own internal services.

* **Decoding**: the raw bytes are read and each coding (``gzip``, ``x-gzip``, ``deflate``, ``identity``;
  at most ``MAX_CODINGS`` of them) is undone here with zlib, ``CHUNK`` bytes of output at a time, counted
  against the cap after every piece: peak memory is the cap plus a few chunks, whatever the ratio. The
  bytes read are capped too (``max_bytes`` plus one chunk), and bytes after the end of a compressed
  stream are dropped.
  Any other coding (``br``, ``zstd``, …) is refused; the request only offers ``gzip, deflate``.
* **Redirects** are followed here, not by httpx: at most ``MAX_REDIRECTS``, ``http``/``https`` only, and a
  target whose host is (or resolves to) a loopback, private, link-local, multicast or reserved address is
  refused unless ``[fetch] allow_private_redirects`` is on (set-ups whose feeds live on 127.0.0.1). The
  URLs the operator configured are trusted as written. The name is resolved once before the request;
  a DNS answer that changes between that look-up and the connection is not caught.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Iterator

CHUNK = 64 * 1024
"""Most bytes one decompression step may produce before the cap is checked again."""
MAX_CODINGS = 2
MAX_REDIRECTS = 5
ACCEPT_ENCODING = "gzip, deflate"
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class UnsafeResponse(ValueError):
    """A response or redirect this module will not follow or decode; the message says why."""


class TooLarge(UnsafeResponse):
    """The decoded body went past the cap."""


class _Layer:
    """One content coding, undone with zlib, producing at most ``CHUNK`` bytes per step."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self.deflate_raw = False
        self.decoder = zlib.decompressobj(_CODINGS[coding])

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self.decoder.eof:  # bytes after the end of the stream are dropped, never kept as unused_data
            return
        while True:
            try:
                out = self.decoder.decompress(data, CHUNK)
            except zlib.error as error:
                if self.coding == "deflate" and not self.deflate_raw:  # servers send raw deflate too
                    self.deflate_raw, self.decoder = True, zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise UnsafeResponse(f"bad {self.coding} data: {error}") from None
            data = self.decoder.unconsumed_tail
            if out:
                yield out
            if not data and len(out) < CHUNK:  # input used up and nothing left pending
                return

    def flush(self) -> Iterator[bytes]:
        yield from self.feed(b"")
        tail = self.decoder.flush()
        if tail:
            yield tail


def codings_of(header: str | None) -> list[str]:
    """The codings of a Content-Encoding header in the order they are undone (last applied first)."""
    codings = [c.strip().lower() for c in (header or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if len(codings) > MAX_CODINGS:
        raise UnsafeResponse(f"{len(codings)} stacked content codings (at most {MAX_CODINGS} are decoded)")
    for coding in codings:
        if coding not in _CODINGS:
            raise UnsafeResponse(f"content coding {coding[:40]!r} is not accepted (only gzip and deflate)")
    return list(reversed(codings))


def _through(layers: list[_Layer], data: bytes) -> Iterator[bytes]:
    if not layers:
        yield data
        return
    for piece in layers[0].feed(data):
        yield from _through(layers[1:], piece)


def _flushed(layers: list[_Layer]) -> Iterator[bytes]:
    for index, layer in enumerate(layers):
        for piece in layer.flush():
            yield from _through(layers[index + 1:], piece)


async def read_decoded(raw: AsyncIterator[bytes], content_encoding: str | None, max_bytes: int) -> bytes:
    """The body with its codings undone; TooLarge as soon as it passes ``max_bytes`` (nothing more decoded).

    Decoding runs in ``CHUNK`` steps between reads, so the event loop is never held for long either.
    """
    layers = [_Layer(coding) for coding in codings_of(content_encoding)]
    out = bytearray()
    read = 0

    def take(pieces: Iterator[bytes]) -> None:
        for piece in pieces:
            if len(out) + len(piece) > max_bytes:
                raise TooLarge(f"larger than {max_bytes} bytes once decoded")
            out.extend(piece)

    async for chunk in raw:
        read += len(chunk)
        if read > max_bytes + CHUNK:  # compressed data is never much larger than what it decodes to
            raise TooLarge(f"more than {max_bytes} bytes on the wire")
        take(_through(layers, chunk))
        await asyncio.sleep(0)
    take(_flushed(layers))
    return bytes(out)


def _refused_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return bool(address.is_loopback or address.is_private or address.is_link_local or address.is_multicast
                or address.is_reserved or address.is_unspecified or not address.is_global)


async def check_redirect(url: str, *, allow_private: bool) -> None:
    """Raise UnsafeResponse unless a redirect to ``url`` is allowed (see the module docstring)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise UnsafeResponse(f"redirect to a {parts.scheme or 'relative'!r} URL is not followed")
    host = parts.hostname or ""
    if not host:
        raise UnsafeResponse("redirect to a URL without a host is not followed")
    if allow_private:
        return
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise UnsafeResponse("redirect to a URL with a bad port is not followed") from None
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            raise UnsafeResponse(f"redirect to {host[:100]} which does not resolve: {error}") from None
        addresses = {ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos}
    for address in addresses:
        if _refused_address(address):
            raise UnsafeResponse(f"redirect to {host[:100]} ({address}), a loopback, private or reserved "
                                 "address, is not followed (see [fetch] allow_private_redirects)")
