"""Generated deliveries (bench/deliveries.py) as complete HTTP requests, signed now.

Each request is signed the way BitByBit signs, with `t` = now so that a round is well
within the signature tolerance; `post.lua` reads one file of them per wrk thread.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from deliveries import Generator  # bench/deliveries.py, beside this script

from app.webhooks.signature import sign

if TYPE_CHECKING:
    from deliveries import Generated


class SignedRequests:
    """Takes the generator's deliveries in order, a round's worth at a time, and signs them.

    The generator is sized for the whole run (`events`), so its entities are created,
    updated and deleted across the rounds as they are across a stored log.
    """

    def __init__(self, events: int, seed: int, secret: bytes) -> None:
        self._deliveries = itertools.chain.from_iterable(Generator(events, seed).deliveries())
        self._secret = secret

    def build(self, count: int, host: str, signed_at: int | None = None) -> list[bytes]:
        """The next `count` deliveries as HTTP requests, signed at `signed_at` (now)."""
        signed_at = int(time.time()) if signed_at is None else signed_at
        return [
            self._request(generated, signed_at, host)
            for generated in itertools.islice(self._deliveries, count)
        ]

    def _request(self, generated: Generated, signed_at: int, host: str) -> bytes:
        body = generated.body
        head = (
            "POST /webhooks HTTP/1.1\r\n"
            f"Host: {host}\r\n"
            "User-Agent: BitByBit-Webhooks/1.0\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"X-BitByBit-Webhook-Id: {generated.webhook_id}\r\n"
            f"X-BitByBit-Webhook-Event: {generated.event_type}\r\n"
            f"X-BitByBit-Webhook-Timestamp: {generated.when}\r\n"
            f"X-BitByBit-Webhook-Signature: {sign(self._secret, signed_at, body)}\r\n"
            "\r\n"
        )
        return head.encode() + body


def write_slices(requests: list[bytes], prefix: Path, threads: int) -> None:
    """One file per wrk thread (`prefix.1` ...), each a contiguous, disjoint slice."""
    size = math.ceil(len(requests) / threads)
    for thread in range(threads):
        with Path(f"{prefix}.{thread + 1}").open("wb") as out:
            for request in requests[thread * size : (thread + 1) * size]:
                out.write(b"%d\n" % len(request))
                out.write(request)
