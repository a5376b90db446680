"""`POST /webhooks` and the other routes, through aiohttp's test client (SPEC §3)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import pytest
from structlog.testing import capture_logs

from app.eventlog import reads as reads_module
from app.eventlog import schema as schema_module
from app.settings import Settings
from projections import discover
from tests._helpers import (
    OTHER_SECRET,
    SECRET,
    conflict_rows,
    event_rows,
    eventually,
    log_rows,
    metric_sample,
    post,
    signed_headers,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from tests._helpers import Client, MakeClient

BODY = b'{"id": "ord_1", "status": "paid", "total": 12.5}'
ISO_MILLIS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def stored_ids(data_dir: Path) -> list[str]:
    return [webhook_id for _, webhook_id, _, _ in event_rows(data_dir)]


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


class TestPayloadTooLarge:
    """413: the body limit, by Content-Length and while reading."""

    @pytest.fixture
    async def small(self, make_client: MakeClient, tmp_path: Path) -> Client:
        """A service that takes bodies of at most 1024 bytes."""
        return await make_client(
            Settings(secrets=(SECRET,), data_dir=tmp_path, max_body_bytes=1024)
        )

    async def test_content_length_over_the_limit(self, small: Client, tmp_path: Path) -> None:
        """A body whose Content-Length exceeds the limit is 413 and not stored."""
        body = b'{"x": "' + b"a" * 2000 + b'"}'
        status, answer = await post(small, body, signed_headers(body))
        assert (status, answer["error"]) == (413, "payload_too_large")
        assert answer["detail"]
        assert event_rows(tmp_path) == []

    async def test_chunked_body_over_the_limit(self, small: Client, tmp_path: Path) -> None:
        """A chunked body (no Content-Length) is cut off once it passes the limit: 413."""
        parts = [b'{"x": "', *([b"a" * 512] * 4), b'"}']
        body = b"".join(parts)

        async def chunks() -> AsyncIterator[bytes]:
            for part in parts:
                yield part

        headers = signed_headers(body)
        async with small.post("/webhooks", data=chunks(), headers=headers) as resp:
            assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
            assert "Content-Length" not in resp.request_info.headers
            assert resp.status == 413
            assert (await resp.json())["error"] == "payload_too_large"
        assert event_rows(tmp_path) == []

    async def test_body_exactly_at_the_limit_is_accepted(
        self, small: Client, tmp_path: Path
    ) -> None:
        """A body of exactly the limit is allowed, chunked or not."""
        body = b'{"x": "' + b"a" * (1024 - 9) + b'"}'
        assert len(body) == 1024
        status, answer = await post(small, body, signed_headers(body))
        assert (status, answer["status"]) == (200, "accepted")

        async def chunks() -> AsyncIterator[bytes]:
            yield body[:500]
            yield body[500:]

        async with small.post("/webhooks", data=chunks(), headers=signed_headers(body)) as resp:
            assert resp.status == 200
        assert len(event_rows(tmp_path)) == 2

    async def test_size_is_checked_before_the_content_type(
        self, small: Client, tmp_path: Path
    ) -> None:
        """An oversized text/plain body is 413, the first check in the SPEC's order."""
        body = b"a" * 2000
        status, answer = await post(small, body, signed_headers(body, content_type="text/plain"))
        assert (status, answer["error"]) == (413, "payload_too_large")
        assert event_rows(tmp_path) == []


class TestContentType:
    """415: only JSON bodies, parameters allowed."""

    @pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
    async def test_not_json_is_415(self, client: Client, tmp_path: Path, content_type: str) -> None:
        """A validly signed body that is not declared JSON is 415 and not stored."""
        status, answer = await post(client, BODY, signed_headers(BODY, content_type=content_type))
        assert (status, answer["error"]) == (415, "unsupported_media_type")
        assert event_rows(tmp_path) == []

    async def test_missing_content_type_is_415(self, client: Client, tmp_path: Path) -> None:
        """No Content-Type at all is not JSON either."""
        headers = without(signed_headers(BODY), "Content-Type")
        async with client.post(
            "/webhooks", data=BODY, headers=headers, skip_auto_headers=["Content-Type"]
        ) as resp:
            assert "Content-Type" not in resp.request_info.headers
            assert resp.status == 415
            assert (await resp.json())["error"] == "unsupported_media_type"
        assert event_rows(tmp_path) == []

    async def test_content_type_is_checked_before_the_signature(self, client: Client) -> None:
        """An unsigned text/plain request is 415, not 401."""
        headers = without(
            signed_headers(BODY, content_type="text/plain"), "X-BitByBit-Webhook-Signature"
        )
        status, answer = await post(client, BODY, headers)
        assert (status, answer["error"]) == (415, "unsupported_media_type")

    @pytest.mark.parametrize(
        "content_type",
        ["application/json; charset=utf-8", "application/json;charset=UTF-8", "Application/JSON"],
    )
    async def test_json_with_parameters_is_accepted(
        self, client: Client, tmp_path: Path, content_type: str
    ) -> None:
        """application/json with a charset parameter, or in capitals, is JSON."""
        status, answer = await post(client, BODY, signed_headers(BODY, content_type=content_type))
        assert (status, answer["status"]) == (200, "accepted")
        assert len(event_rows(tmp_path)) == 1


class TestSignature:
    """401: missing, malformed, stale or wrong signatures."""

    async def test_missing_signature(self, client: Client, tmp_path: Path) -> None:
        """No signature header is 401 missing_signature, nothing stored."""
        headers = without(signed_headers(BODY), "X-BitByBit-Webhook-Signature")
        status, answer = await post(client, BODY, headers)
        assert (status, answer["error"]) == (401, "missing_signature")
        assert event_rows(tmp_path) == []

    @pytest.mark.parametrize("signature", ["t=abc,v1=00", "sha256=deadbeef", f"t={10**13},v1="])
    async def test_malformed_signature(
        self, client: Client, tmp_path: Path, signature: str
    ) -> None:
        """An unparsable signature header is 401 malformed_signature, nothing stored."""
        headers = signed_headers(BODY) | {"X-BitByBit-Webhook-Signature": signature}
        status, answer = await post(client, BODY, headers)
        assert (status, answer["error"]) == (401, "malformed_signature")
        assert event_rows(tmp_path) == []

    async def test_stripes_bad_signature_entry_beside_a_good_one(
        self, client: Client, tmp_path: Path
    ) -> None:
        """`t=...,v1=<good>,v1=bad_signature` is authentic: 200, stored (SPEC §3)."""
        headers = signed_headers(BODY)
        good = headers["X-BitByBit-Webhook-Signature"]
        headers["X-BitByBit-Webhook-Signature"] = f"{good},v1=bad_signature"
        status, answer = await post(client, BODY, headers)
        assert (status, answer["status"]) == (200, "accepted")
        assert len(event_rows(tmp_path)) == 1

    @pytest.mark.parametrize("offset", [-3600, 3600])
    async def test_timestamp_out_of_tolerance(
        self, client: Client, tmp_path: Path, offset: int
    ) -> None:
        """A correct digest signed an hour ago or an hour ahead is 401, nothing stored."""
        headers = signed_headers(BODY, signed_at=int(time.time()) + offset)
        status, answer = await post(client, BODY, headers)
        assert (status, answer["error"]) == (401, "timestamp_out_of_tolerance")
        assert event_rows(tmp_path) == []

    async def test_invalid_signature(self, client: Client, tmp_path: Path) -> None:
        """A fresh signature made with a secret we do not hold is 401 invalid_signature."""
        status, answer = await post(client, BODY, signed_headers(BODY, secret=OTHER_SECRET))
        assert (status, answer["error"]) == (401, "invalid_signature")
        assert event_rows(tmp_path) == []

    async def test_tampered_body(self, client: Client, tmp_path: Path) -> None:
        """A body changed after signing is 401 invalid_signature."""
        headers = signed_headers(BODY)
        status, answer = await post(client, BODY.replace(b"paid", b"void"), headers)
        assert (status, answer["error"]) == (401, "invalid_signature")
        assert event_rows(tmp_path) == []

    async def test_rotation_accepts_both_secrets(
        self, make_client: MakeClient, tmp_path: Path
    ) -> None:
        """With two secrets configured, deliveries signed with either are accepted."""
        client = await make_client(Settings(secrets=(SECRET, OTHER_SECRET), data_dir=tmp_path))
        for secret in (SECRET, OTHER_SECRET):
            status, _ = await post(client, BODY, signed_headers(BODY, secret=secret))
            assert status == 200
        assert len(event_rows(tmp_path)) == 2

    async def test_signature_is_checked_before_the_headers(
        self, client: Client, tmp_path: Path
    ) -> None:
        """An unsigned request without id and event headers is 401, not 400."""
        headers = {"Content-Type": "application/json"}
        status, answer = await post(client, BODY, headers)
        assert (status, answer["error"]) == (401, "missing_signature")
        assert event_rows(tmp_path) == []


class TestHeaders:
    """400: the id and event headers must be present and at most 255 chars."""

    @pytest.mark.parametrize("name", ["X-BitByBit-Webhook-Id", "X-BitByBit-Webhook-Event"])
    async def test_missing_header(self, client: Client, tmp_path: Path, name: str) -> None:
        """An authentic delivery without its id or event header is 400 missing_header."""
        status, answer = await post(client, BODY, without(signed_headers(BODY), name))
        assert (status, answer["error"]) == (400, "missing_header")
        assert name in answer["detail"]
        assert event_rows(tmp_path) == []

    @pytest.mark.parametrize("name", ["X-BitByBit-Webhook-Id", "X-BitByBit-Webhook-Event"])
    async def test_empty_header(self, client: Client, tmp_path: Path, name: str) -> None:
        """An empty id or event header is 400 missing_header."""
        status, answer = await post(client, BODY, signed_headers(BODY) | {name: ""})
        assert (status, answer["error"]) == (400, "missing_header")
        assert event_rows(tmp_path) == []

    @pytest.mark.parametrize("name", ["X-BitByBit-Webhook-Id", "X-BitByBit-Webhook-Event"])
    async def test_header_of_256_chars(self, client: Client, tmp_path: Path, name: str) -> None:
        """An id or event header longer than 255 characters is 400 malformed_header."""
        status, answer = await post(client, BODY, signed_headers(BODY) | {name: "x" * 256})
        assert (status, answer["error"]) == (400, "malformed_header")
        assert event_rows(tmp_path) == []

    async def test_headers_of_255_chars_are_accepted(self, client: Client, tmp_path: Path) -> None:
        """Exactly 255 characters is still a valid id and event type."""
        headers = signed_headers(BODY, webhook_id="i" * 255, event="e" * 255)
        status, answer = await post(client, BODY, headers)
        assert (status, answer["status"]) == (200, "accepted")
        assert event_rows(tmp_path)[0][1:3] == ("i" * 255, "e" * 255)


class TestReplay:
    """409: a signature reused under another event type."""

    async def test_same_signature_other_event_type_is_409(
        self, client: Client, tmp_path: Path
    ) -> None:
        """A captured update replayed with a new id as a delete is 409, not stored."""
        original = signed_headers(BODY, webhook_id="wh_1", event="order.updated")
        assert (await post(client, BODY, original))[0] == 200
        replay = original | {
            "X-BitByBit-Webhook-Id": "wh_2",
            "X-BitByBit-Webhook-Event": "order.deleted",
        }
        status, answer = await post(client, BODY, replay)
        assert (status, answer["error"]) == (409, "signature_replayed")
        assert stored_ids(tmp_path) == ["wh_1"]

    async def test_same_signature_same_event_type_new_id_is_accepted(
        self, client: Client, tmp_path: Path
    ) -> None:
        """Identical bodies signed in the same second under two ids are both kept."""
        first = signed_headers(BODY, webhook_id="wh_1", event="message.read")
        second = first | {"X-BitByBit-Webhook-Id": "wh_2"}
        assert await post(client, BODY, first) == (200, {"status": "accepted", "position": 1})
        assert await post(client, BODY, second) == (200, {"status": "accepted", "position": 2})
        assert stored_ids(tmp_path) == ["wh_1", "wh_2"]

    async def test_resigned_retry_relabelled_under_a_new_id_is_409(
        self, client: Client, tmp_path: Path
    ) -> None:
        """A retry answered `duplicate` still binds its new signature to the logged type.

        BitByBit signs each retry anew; were only accepted deliveries remembered, a
        captured retry could come back under a new id as a delete.
        """
        now = int(time.time())
        first = signed_headers(BODY, webhook_id="wh_1", event="order.updated", signed_at=now - 30)
        retry = signed_headers(BODY, webhook_id="wh_1", event="order.updated", signed_at=now)
        assert (await post(client, BODY, first))[1]["status"] == "accepted"
        assert (await post(client, BODY, retry))[1]["status"] == "duplicate"
        forged = retry | {
            "X-BitByBit-Webhook-Id": "wh_forged",
            "X-BitByBit-Webhook-Event": "order.deleted",
        }
        status, answer = await post(client, BODY, forged)
        assert (status, answer["error"]) == (409, "signature_replayed")
        assert stored_ids(tmp_path) == ["wh_1"]


class TestDuplicates:
    """200 duplicate: a webhook id already in the log."""

    async def test_duplicate_answers_the_original_position(
        self, client: Client, tmp_path: Path
    ) -> None:
        """A retried delivery is 200 duplicate with the first position, and stored once."""
        other = b'{"id": "ord_0"}'
        assert (await post(client, other, signed_headers(other)))[0] == 200
        headers = signed_headers(BODY, webhook_id="wh_retry")
        assert await post(client, BODY, headers) == (200, {"status": "accepted", "position": 2})
        assert await post(client, BODY, headers) == (200, {"status": "duplicate", "position": 2})
        assert stored_ids(tmp_path).count("wh_retry") == 1

    async def test_resigned_retry_is_a_duplicate(self, client: Client, tmp_path: Path) -> None:
        """A retry signed at a later second (new digest) is still a duplicate of its id."""
        now = int(time.time())
        first = signed_headers(BODY, webhook_id="wh_retry", signed_at=now - 60)
        retry = signed_headers(BODY, webhook_id="wh_retry", signed_at=now)
        assert (await post(client, BODY, first))[1]["status"] == "accepted"
        assert await post(client, BODY, retry) == (200, {"status": "duplicate", "position": 1})
        assert len(event_rows(tmp_path)) == 1

    async def test_conflicting_duplicate_is_logged_and_kept_aside(
        self, client: Client, tmp_path: Path
    ) -> None:
        """Same id, different body: 200 duplicate, a warning, and the body kept aside."""
        changed = BODY.replace(b"paid", b"refunded")
        assert (await post(client, BODY, signed_headers(BODY, webhook_id="wh_1")))[0] == 200
        with capture_logs() as logs:
            answer = await post(client, changed, signed_headers(changed, webhook_id="wh_1"))
        assert answer == (200, {"status": "duplicate", "position": 1})
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert [(e["webhook_id"], e["outcome"]) for e in warnings] == [
            ("wh_1", "conflicting_duplicate")
        ]
        assert event_rows(tmp_path) == [(1, "wh_1", "order.created", BODY)]
        assert conflict_rows(tmp_path) == [("wh_1", 1, changed)]


class TestDeliveryLine:
    """Each delivery's log line says where it came from (SPEC §3)."""

    async def test_peer_and_forwarded_for_as_sent(self, client: Client) -> None:
        """A refused and an accepted delivery: the peer, and X-Forwarded-For escaped."""
        headers = signed_headers(BODY) | {"X-Forwarded-For": "203.0.113.9, 10.0.0.1"}
        refused = headers | {"X-Forwarded-For": "198.51.100.4 \u00fc"}
        refused["X-BitByBit-Webhook-Signature"] = "garbage"
        with capture_logs() as logs:
            assert (await post(client, BODY, headers))[0] == 200
            assert (await post(client, BODY, refused))[0] == 401
        lines = [e for e in logs if e["event"] == "delivery"]
        assert [(e["outcome"], e["peer"], e["forwarded_for"]) for e in lines] == [
            ("accepted", "127.0.0.1", "203.0.113.9, 10.0.0.1"),
            ("malformed_signature", "127.0.0.1", "198.51.100.4 \\xfc"),
        ]

    async def test_no_forwarded_for_is_none(self, client: Client) -> None:
        """Without the header the line says so, rather than guessing."""
        with capture_logs() as logs:
            assert (await post(client, BODY, signed_headers(BODY)))[0] == 200
        [line] = [e for e in logs if e["event"] == "delivery"]
        assert (line["peer"], line["forwarded_for"]) == ("127.0.0.1", None)


class TestAccepted:
    """200 accepted: authentic deliveries are stored durably, whatever they say."""

    async def test_accepted_row_is_committed_before_the_answer(
        self, client: Client, tmp_path: Path
    ) -> None:
        """When the 200 arrives the row is already readable by another connection."""
        headers = signed_headers(BODY, webhook_id="wh_1", event_timestamp="1705314600")
        assert await post(client, BODY, headers) == (200, {"status": "accepted", "position": 1})
        (row,) = log_rows(
            tmp_path,
            "SELECT webhook_id, event_type, event_timestamp, signed_at, received_at, "
            "signature, payload FROM events",
        )
        webhook_id, event_type, event_timestamp, signed_at, received_at, signature, payload = row
        assert (webhook_id, event_type, event_timestamp) == ("wh_1", "order.created", 1705314600)
        assert signature == headers["X-BitByBit-Webhook-Signature"]
        assert signed_at == int(signature.split(",")[0].removeprefix("t="))
        assert ISO_MILLIS_Z.fullmatch(received_at)
        assert payload == BODY

    @pytest.mark.parametrize("value", [None, "soon", "1.5", ""])
    async def test_unusable_event_timestamp_is_null(
        self, client: Client, tmp_path: Path, value: str | None
    ) -> None:
        """An absent or non-integer timestamp header stores NULL but still accepts."""
        status, _ = await post(client, BODY, signed_headers(BODY, event_timestamp=value))
        assert status == 200
        assert log_rows(tmp_path, "SELECT event_timestamp FROM events") == [(None,)]

    @pytest.mark.parametrize(
        ("event", "body"),
        [
            ("invoice.created", b'{"id": "inv_1"}'),
            ("order.created", b"[1, 2]"),
            ("order.created", b'"x"'),
            ("customer.updated", b"not json at all"),
            ("product.deleted", b"{}"),
        ],
    )
    async def test_unknown_type_or_odd_body_is_stored(
        self, client: Client, tmp_path: Path, event: str, body: bytes
    ) -> None:
        """An authentic delivery is the sender's data: stored whatever its type or shape."""
        status, answer = await post(client, body, signed_headers(body, event=event))
        assert (status, answer["status"]) == (200, "accepted")
        assert [(e, p) for _, _, e, p in event_rows(tmp_path)] == [(event, body)]

    async def test_each_delivery_logs_one_line(self, client: Client) -> None:
        """One log line per delivery: webhook id, event type, outcome and duration."""
        with capture_logs() as logs:
            await post(client, BODY, signed_headers(BODY, webhook_id="wh_log"))
        lines = [e for e in logs if e["event"] == "delivery"]
        assert len(lines) == 1
        assert lines[0]["webhook_id"] == "wh_log"
        assert lines[0]["event_type"] == "order.created"
        assert lines[0]["outcome"] == "accepted"
        assert lines[0]["duration_ms"] >= 0

    async def test_concurrent_deliveries_get_distinct_positions(
        self, client: Client, tmp_path: Path
    ) -> None:
        """200 deliveries at once are all accepted, each at its own position, in fewer commits."""
        bodies = {f"wh_{i:03d}": f'{{"n": {i}}}'.encode() for i in range(200)}
        answers = await asyncio.gather(
            *(post(client, body, signed_headers(body, webhook_id=w)) for w, body in bodies.items())
        )
        assert {(status, a["status"]) for status, a in answers} == {(200, "accepted")}
        positions = {w: a["position"] for w, (_, a) in zip(bodies, answers, strict=True)}
        assert sorted(positions.values()) == list(range(1, 201))
        rows = event_rows(tmp_path)
        assert [p for p, _, _, _ in rows] == list(range(1, 201))
        # Each answer's position holds that very delivery.
        assert {w: p for p, w, _, _ in rows} == positions
        assert all(bodies[w] == payload for _, w, _, payload in rows)
        async with client.get("/metrics") as resp:
            text = await resp.text()
        commits = metric_sample(text, "bitbybit_commit_batch_size_count")
        assert metric_sample(text, "bitbybit_commit_batch_size_sum") == 200
        assert commits < 200  # group commit: some transactions held several deliveries


class TestStoreUnavailable:
    """503: a log that cannot be written."""

    @pytest.fixture
    def full_disk(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Every log connection the app opens is capped at its current size, like a full disk."""
        real_connect: Callable[..., sqlite3.Connection] = schema_module.open_log

        def capped(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = real_connect(*args, **kwargs)
            conn.execute("PRAGMA max_page_count = 1")  # clamps to the current page count
            return conn

        monkeypatch.setattr(reads_module, "open_log", capped)

    @pytest.mark.usefixtures("full_disk")
    async def test_full_disk_is_503(self, client: Client, tmp_path: Path) -> None:
        """When the log file cannot grow, the answer is 503 store_unavailable, nothing stored."""
        body = b'{"blob": "' + b"x" * 20_000 + b'"}'  # larger than a page: the file must grow
        with capture_logs() as logs:
            status, answer = await post(client, body, signed_headers(body))
        assert (status, answer["error"]) == (503, "store_unavailable")
        assert event_rows(tmp_path) == []
        assert any(e["event"] == "delivery" and e["outcome"] == "store_unavailable" for e in logs)
        async with client.get("/metrics") as resp:
            assert 'bitbybit_rejections_total{code="store_unavailable"} 1.0' in await resp.text()

    @pytest.mark.usefixtures("full_disk")
    async def test_readyz_is_503_when_the_log_cannot_grow(self, client: Client) -> None:
        """/readyz commits a write on the deliveries' own path, so a full log fails it."""
        async with client.get("/readyz") as resp:
            status, answer = resp.status, await resp.json()
        assert (status, answer["error"]) == (503, "store_unavailable")

    async def test_readyz_probe_commits_a_write(self, client: Client, tmp_path: Path) -> None:
        """A 200 from /readyz means a write reached the log: the probe row is there."""
        async with client.get("/readyz") as resp:
            assert resp.status == 200
        assert log_rows(tmp_path, "SELECT id, length(room) FROM write_probe") == [(1, 4096)]


class TestStartup:
    """The endpoint never waits on projections.db."""

    async def test_deliveries_are_taken_while_projections_db_is_locked(
        self, make_client: MakeClient, settings: Settings
    ) -> None:
        """Started while another process holds projections.db (a rebuild's switch, say)."""
        locker = sqlite3.connect(settings.projections_path, isolation_level=None)
        locker.execute("PRAGMA journal_mode=WAL")
        locker.execute("BEGIN IMMEDIATE")
        try:
            client = await make_client(settings)
            assert (await post(client, BODY, signed_headers(BODY)))[0] == 200
        finally:
            locker.execute("ROLLBACK")
            locker.close()

        # Once the lock is gone the projections open and take the delivery.
        async def projections() -> list[dict[str, Any]]:
            async with client.get("/readyz") as resp:
                found: list[dict[str, Any]] = (await resp.json())["projections"]
                return found

        await eventually(
            projections, lambda found: bool(found) and all(p["lag"] == 0 for p in found), "lag 0"
        )


class TestOtherRoutes:
    """/healthz, /readyz and /metrics."""

    async def test_healthz(self, client: Client) -> None:
        """/healthz answers 200 while the process runs."""
        async with client.get("/healthz") as resp:
            assert resp.status == 200
            assert await resp.json() == {"status": "ok"}

    async def test_readyz_lists_every_projection(self, client: Client) -> None:
        """/readyz is 200 with each projection's position and lag."""
        assert (await post(client, BODY, signed_headers(BODY)))[0] == 200
        async with client.get("/readyz") as resp:
            assert resp.status == 200
            answer = await resp.json()
        assert answer["status"] == "ready"
        names = [p["name"] for p in answer["projections"]]
        assert sorted(names) == sorted(p.NAME for p in discover())
        assert names
        for projection in answer["projections"]:
            assert {"position", "lag", "errors", "stale"} <= projection.keys()
            assert projection["lag"] >= 0

    async def test_readyz_during_a_burst_disturbs_no_delivery(self, client: Client) -> None:
        """Probing /readyz while batches commit never fails a delivery or the probe."""

        async def probe() -> int:
            async with client.get("/readyz") as resp:
                return resp.status

        deliveries = [
            post(client, BODY, signed_headers(BODY, webhook_id=f"wh_burst_{i}")) for i in range(150)
        ]
        probes = [probe() for _ in range(30)]
        answers = await asyncio.gather(*deliveries, *probes)
        assert [status for status, _ in answers[:150]] == [200] * 150
        assert answers[150:] == [200] * 30

    async def test_metrics(self, client: Client) -> None:
        """/metrics counts deliveries, rejections, duplicates and commits in Prometheus text."""
        headers = signed_headers(BODY, webhook_id="wh_1")
        await post(client, BODY, headers)
        await post(client, BODY, headers)
        await post(client, BODY, signed_headers(BODY, secret=OTHER_SECRET))
        async with client.get("/metrics") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/plain"
            text = await resp.text()
        deliveries = 'bitbybit_deliveries_total{{event_type="order.created",outcome="{}"}}'
        assert metric_sample(text, deliveries.format("accepted")) == 1
        assert metric_sample(text, deliveries.format("duplicate")) == 1
        assert metric_sample(text, 'bitbybit_rejections_total{code="invalid_signature"}') == 1
        assert metric_sample(text, "bitbybit_duplicates_total") == 1
        assert metric_sample(text, "bitbybit_commit_batch_size_count") == 2
        assert metric_sample(text, "bitbybit_commit_seconds_count") == 2
        assert "bitbybit_commit_seconds_bucket{" in text
        for projection in discover():
            assert f'bitbybit_projection_lag{{projection="{projection.NAME}"}}' in text


class TestUnknownRoutes:
    """Paths and methods nobody serves still answer in JSON, with the right status."""

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [("GET", "/webhooks", "POST"), ("PUT", "/webhooks", "POST"), ("POST", "/healthz", "GET")],
    )
    async def test_wrong_method_is_405_json(
        self, client: Client, method: str, path: str, allowed: str
    ) -> None:
        """A known path asked with another method: 405, its Allow header, a JSON error."""
        async with client.request(method, path) as resp:
            assert resp.status == 405
            assert resp.headers["Allow"] == allowed
            assert (await resp.json())["error"] == "method_not_allowed"

    async def test_unknown_path_is_404_json(self, client: Client, tmp_path: Path) -> None:
        """A delivery sent to a wrong path: 404 in JSON, and nothing stored."""
        async with client.post("/webhook", data=BODY, headers=signed_headers(BODY)) as resp:
            assert resp.status == 404
            answer = await resp.json()
        assert answer["error"] == "not_found"
        assert "POST /webhooks" in answer["detail"]
        assert event_rows(tmp_path) == []

    async def test_a_bug_is_a_json_500_and_nothing_is_stored(
        self, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An unexpected failure answers 500 internal_error (so the sender retries)."""

        def broken(*_args: object) -> None:
            raise ZeroDivisionError

        monkeypatch.setattr("app.webhooks.delivery.parse_event_timestamp", broken)
        with capture_logs() as logs:
            status, answer = await post(client, BODY, signed_headers(BODY))
        assert (status, answer["error"]) == (500, "internal_error")
        assert event_rows(tmp_path) == []
        assert any(e["event"] == "delivery_failed" for e in logs)

    async def test_a_sender_hanging_up_is_no_bug(
        self, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A body cut off by the sender's hang-up is logged as such, not as a failure."""

        async def hung_up(*_args: object) -> bytes:
            raise ConnectionResetError

        monkeypatch.setattr("app.http.views._read_body", hung_up)
        with capture_logs() as logs:
            status, _ = await post(client, BODY, signed_headers(BODY))
        assert status == 400
        assert [e["outcome"] for e in logs if e["event"] == "delivery"] == ["client_disconnected"]
        assert not any(e["event"] == "delivery_failed" for e in logs)
        assert event_rows(tmp_path) == []


class TestSecretsStayHidden:
    """Secrets and raw bodies never leave the process."""

    async def test_no_secret_in_any_answer_or_log(
        self, make_client: MakeClient, settings: Settings
    ) -> None:
        """No response body and no log line, start-up included, carries a secret or a raw body."""
        marker = b"raw-body-marker-51d2"
        body = b'{"note": "' + marker + b'"}'
        fresh = signed_headers(body, webhook_id="wh_1")
        requests = [
            fresh,
            fresh,
            signed_headers(body, webhook_id="wh_1", secret=OTHER_SECRET),
            signed_headers(body, content_type="text/plain"),
            signed_headers(body) | {"X-BitByBit-Webhook-Signature": "t=1,v1=zz"},
            signed_headers(body, signed_at=0),
            without(signed_headers(body), "X-BitByBit-Webhook-Id"),
            signed_headers(body.replace(b"note", b"nope"), webhook_id="wh_1"),
        ]
        texts: list[str] = []
        with capture_logs() as logs:
            client = await make_client(settings)
            for headers in requests:
                async with client.post("/webhooks", data=body, headers=headers) as resp:
                    texts.append(await resp.text())
            for path in ("/healthz", "/readyz", "/metrics"):
                async with client.get(path) as resp:
                    texts.append(await resp.text())
        assert len(texts) == len(requests) + 3
        everything = "\n".join(texts) + "\n" + repr(logs)
        for secret in (SECRET, OTHER_SECRET):
            assert secret.decode() not in everything
        assert marker.decode() not in repr(logs)
        assert len([e for e in logs if e["event"] == "delivery"]) == len(requests)
        assert any(e["event"] == "started" for e in logs)
