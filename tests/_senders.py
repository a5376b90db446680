"""Signed deliveries arriving at a running `serve`, for tests that copy a live log."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import msgspec

from tests.conftest import signed_headers

if TYPE_CHECKING:
    from tests._serve import ServeProcess

# Bounded: the sender stops after this many, whatever happens to the test.
MAX_DELIVERIES = 3000


class DeliverySender(threading.Thread):
    """Posts signed deliveries one after another, remembering each id answered 200."""

    def __init__(self, serve: ServeProcess) -> None:
        super().__init__(daemon=True)
        self.serve = serve
        self.acknowledged: list[str] = []
        self.refused = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        for number in range(MAX_DELIVERIES):
            if self.stop.is_set():
                return
            body = msgspec.json.encode({"id": f"cust_{number}", "email": f"{number}@x.id"})
            headers = signed_headers(body, webhook_id=f"wh_{number}", event="customer.created")
            status, _ = self.serve.request("POST", "/webhooks", body, headers)
            if status == 200:
                with self.lock:
                    self.acknowledged.append(f"wh_{number}")
            else:
                self.refused += 1

    def snapshot(self) -> list[str]:
        """The ids acknowledged so far."""
        with self.lock:
            return list(self.acknowledged)
