"""Benchmark: peak memory of one fetch of a hostile response, per content coding (issue 25: within
``max_bytes`` plus a small constant, whatever the coding).

A server on 127.0.0.1 answers with 200 MB of zeros sent as ``identity`` (streamed), ``gzip``, ``deflate``
and ``gzip, gzip`` (a few KB on the wire). ``fetch_one`` reads it with ``max_bytes`` = 1 MB and 10 MB;
the peak of Python allocations (tracemalloc) during the fetch is printed, with the wall time. The old code
is measured by pointing PYTHONPATH at a checkout of it.

    python bench/fetch_bomb.py
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import sys
import threading
import time
import tracemalloc
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.config import FetchSettings
from newsletter.errors import SourceError
from newsletter.sources.fetching import FetchRequest, HostPacer, fetch_one, new_client

SIZE = 200_000_000


def _compressed(wbits: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = bytes(1_000_000)
    return b"".join(compressor.compress(zeros) for _ in range(SIZE // len(zeros))) + compressor.flush()


BODIES = {"gzip": _compressed(16 + zlib.MAX_WBITS), "deflate": _compressed(zlib.MAX_WBITS)}
BODIES["gzip, gzip"] = gzip.compress(BODIES["gzip"], 9)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        coding = self.path.strip("/").replace("-", ", ")
        self.send_response(200)
        if coding == "identity":
            self.send_header("Content-Type", "application/rss+xml")  # no Content-Length: streamed to the end
            self.end_headers()
            piece = bytes(65536)
            try:
                for _ in range(SIZE // len(piece)):
                    self.wfile.write(piece)
            except OSError:
                pass
            return
        body = BODIES[coding]
        self.send_header("Content-Encoding", coding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


async def _one(url: str, max_bytes: int) -> tuple[int, float, str]:
    settings = dataclasses.replace(FetchSettings(), max_bytes=max_bytes, max_retries=0, timeout_seconds=120,
                                   per_host_delay_seconds=0)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        async with new_client(settings) as client:
            await fetch_one(FetchRequest("bomb", url), settings=settings, client=client, pacer=HostPacer(0))
        result = "read whole"
    except SourceError as error:
        result = str(error).split(": ", 1)[1][:50]
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, elapsed, result


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"{'coding':<12} {'on the wire':>12} {'max_bytes':>10} {'peak MB':>8} {'wall s':>7}  result")
    for coding in ("identity", "gzip", "deflate", "gzip, gzip"):
        wire = len(BODIES[coding]) if coding in BODIES else SIZE
        for max_bytes in (1_000_000, 10_000_000):
            peak, elapsed, result = asyncio.run(_one(f"{base}/{coding.replace(', ', '-')}", max_bytes))
            print(f"{coding:<12} {wire:>12,} {max_bytes:>10,} {peak / 1e6:>8.1f} {elapsed:>7.2f}  {result}")
    server.shutdown()


if __name__ == "__main__":
    main()
