"""The client's IP address behind reverse proxies: ``X-Forwarded-For`` only from ``[web] trusted_proxies``.

Why: uvicorn's own proxy support trusted ``X-Forwarded-For`` from any peer on 127.0.0.1, so behind a plain
nginx ``proxy_pass`` (which appends the header but keeps what the client sent) a client could claim any IP:
spoofed IPs passed the per-IP limit and were stored as the consent IP. This middleware replaces it: when the
TCP peer is a trusted proxy, the header is read from the right and the first address that is not itself a
trusted proxy is the client (RFC 7239 §7.5's advice); ``X-Forwarded-Proto`` is taken from the same peer.
Otherwise the peer is the client and the headers are ignored. Whatever the source, the result is a parsed
IP address, so no header text ever reaches the database (``consent_ip`` is 64 characters).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip(text: str) -> str | None:
    """The canonical form of one IP address (``[v6]:port`` and ``v4:port`` forms accepted), or None."""
    value = text.strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class TrustedProxies:
    """ASGI middleware: sets ``scope["client"]`` (and ``scheme``) from trusted proxies' headers only."""

    def __init__(self, app: ASGIApp, *, trusted: Iterable[str] = ()) -> None:
        self.app = app
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(t, strict=False) for t in trusted)

    def is_trusted(self, ip: str | None) -> bool:
        if ip is None:
            return False
        address = ipaddress.ip_address(ip)
        return any(address in network for network in self.networks)

    def client_of(self, peer: str | None, headers: dict[bytes, list[bytes]]) -> tuple[str | None, bool]:
        """(client IP, whether the proxy's headers apply)."""
        if not self.is_trusted(peer):
            return peer, False
        hops = [h.strip() for value in headers.get(b"x-forwarded-for", []) for h in value.decode("latin-1").split(",")]
        for hop in reversed(hops):
            ip = parse_ip(hop)
            if ip is None:
                return peer, True  # garbage in the chain: the nearest hop we can name is the proxy itself
            if not self.is_trusted(ip):
                return ip, True
        return (parse_ip(hops[0]) if hops else None) or peer, True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            client = scope.get("client")
            peer = parse_ip(client[0]) if client else None
            headers: dict[bytes, list[bytes]] = {}
            for name, value in scope.get("headers", []):
                headers.setdefault(name.lower(), []).append(value)
            ip, via_proxy = self.client_of(peer, headers)
            scope = dict(scope)
            scope["client"] = (ip or "unknown", client[1] if client else 0)
            proto = headers.get(b"x-forwarded-proto", [b""])[-1].decode("latin-1").strip().lower()
            if via_proxy and proto in ("http", "https"):
                scope["scheme"] = proto
        await self.app(scope, receive, send)


def client_ip(request: Request) -> str | None:
    """The client's IP address as ``TrustedProxies`` determined it; None when it is not an IP (a test client)."""
    return parse_ip(request.client.host) if request.client else None
