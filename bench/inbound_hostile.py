"""Benchmark: CPU to handle one hostile inbound message (issue 25: "any message under max_message_bytes is
classified in about a second of CPU").

Each shape is built just inside the ``[inbound]`` bounds (the worst a message may be and still reach the
parser and flufl.bounce's detectors) and just past them (quarantined unread), at up to
``max_message_bytes`` (2 MB), and handed to ``InboundProcessor.handle`` with a VERP recipient, as the
listener would. Each message is handled once in a fresh SQLite file; CPU time is the process's own.
The old code is measured by pointing PYTHONPATH at a checkout of it (it has no bounds).

    python bench/inbound_hostile.py
"""

from __future__ import annotations

import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.inbound_support import make_inbound

DAEMON = (b"From: MAILER-DAEMON@relay.example.org\r\nSubject: Undelivered Mail Returned to Sender\r\n"
          b"MIME-Version: 1.0\r\n")
LIMIT = 2_000_000


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _fit(head: bytes, unit: bytes, count: int, tail: bytes = b"") -> bytes:
    count = min(count, (LIMIT - len(head) - len(tail)) // len(unit))
    return head + unit * count + tail


def shapes() -> dict[str, bytes]:
    multipart = DAEMON + b'Content-Type: multipart/mixed; boundary="p"\r\n\r\n'
    report = (DAEMON + b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
              b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n")
    block = b"Final-Recipient: rfc822; a@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
    text = DAEMON + b"Content-Type: text/plain\r\n\r\n"
    return {
        "lines, 39,900 (inside)": _fit(text, b"<a@example.org>: 550 5.1.1 no such user here\r\n", 39_900),
        "lines, 600,000 (past)": _fit(text, b"a\r\n", 600_000),
        "long lines, 2 MB in 20": _fit(text, b"x" * 99_998 + b"\r\n", 20),
        "one line of 2 MB": _fit(text, b"x", LIMIT),
        "parts, 499 of 75 lines (inside)": _fit(
            multipart, b"--p\r\n\r\n" + b"550 5.1.1 <a@example.org> unknown\r\n" * 75, 499, b"--p--\r\n"),
        "parts, 199,000 (past)": _fit(multipart, b"--p\r\n\r\nx\r\n", 199_000, b"--p--\r\n"),
        "DSN blocks, 9,900 (inside)": _fit(report, block, 9_900, b"--B--\r\n"),
        "DSN blocks, 9,900 addresses (inside)": report + b"".join(
            b"Final-Recipient: rfc822; a%d@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n" % n
            for n in range(9_900)) + b"--B--\r\n",
        "headers, 39,900": _fit(DAEMON, b"X-Junk: " + b"y" * 40 + b"\r\n", 39_900, b"\r\nbody\r\n"),
        "Subject of 130,000 encoded words": b"From: MAILER-DAEMON@x\r\nSubject: " + b"=?utf-8?q?a?= " * 130_000
        + b"\r\n\r\nbody\r\n",
        "From of 390,000 addresses": b"From: MAILER-DAEMON@x, " + b"a@b, " * 390_000
        + b"\r\nSubject: undeliverable\r\n\r\n",
        "nesting, 49 levels (inside)": DAEMON + b"".join(
            b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n) for n in range(49))
        + b"Content-Type: text/plain\r\n\r\n550 5.1.1 <a@example.org>\r\n",
        "nesting, 2,000 levels (past)": DAEMON + b"".join(
            b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n) for n in range(2_000)),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        inbound = make_inbound(f"sqlite:///{folder}/bench.db")
        reader = inbound.add("reader@example.net")
        print(f"{'shape':<36} {'bytes':>9} {'CPU s':>7}  outcome")
        for name, raw in shapes().items():
            before = _cpu()
            try:
                outcome = inbound.processor.handle(raw, recipients=[inbound.verp(reader)], door="smtp")
                result = f"{outcome.outcome}: {outcome.detail[:60]}"
            except RecursionError as error:
                result = f"RecursionError: {error}"[:70]
            print(f"{name:<36} {len(raw):>9,} {_cpu() - before:>7.2f}  {result}")


if __name__ == "__main__":
    main()
