"""`sync --check`: which base URL and key header answer, and what each endpoint says.

The API's own pages disagree about both (`reference/bitbybit-open-api.md`), so the
configured pair is tried first and then the documented alternatives, until one is not
refused; with that pair, one page of each endpoint is read. Nothing is written.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from app.settings import DEFAULT_API_KEY_HEADER, DEFAULT_API_URL
from app.sync.client import (
    ALTERNATIVE_HEADER,
    ALTERNATIVE_URL,
    Answer,
    Endpoint,
    OpenApiClient,
    Policy,
)

if TYPE_CHECKING:
    import aiohttp

    from app.settings import Settings

# Answers that say "not this URL or header": another documented pair may do better.
_TRY_ANOTHER = frozenset({0, 401, 404})


@dataclasses.dataclass(frozen=True, slots=True)
class Probe:
    """One request of the check and what it answered."""

    endpoint: str
    base_url: str
    key_header: str
    answer: Answer


@dataclasses.dataclass(frozen=True, slots=True)
class CheckReport:
    """Every request the check made; `working` is the pair that read customers, if any."""

    probes: list[Probe]
    working: tuple[str, str] | None

    @property
    def ok(self) -> bool:
        """Customers and orders answered 200, and products 200 or "no list"."""
        answered = {p.endpoint: p.answer.status for p in self.probes if p.endpoint != "try"}
        return (
            self.working is not None
            and answered.get("customers") == 200
            and answered.get("orders") == 200
            and answered.get("products") in {200, 404, 405}
        )


def _pairs(settings: Settings) -> list[tuple[str, str]]:
    urls = list(dict.fromkeys([settings.api_url, DEFAULT_API_URL, ALTERNATIVE_URL]))
    headers = list(
        dict.fromkeys([settings.api_key_header, DEFAULT_API_KEY_HEADER, ALTERNATIVE_HEADER])
    )
    return [(url, header) for url in urls for header in headers]


async def check(
    session: aiohttp.ClientSession, settings: Settings, policy: Policy | None = None
) -> CheckReport:
    """Find a pair that answers, then read one page of customers, orders and products."""
    probes: list[Probe] = []
    chosen: OpenApiClient | None = None
    for url, header in _pairs(settings):
        client = OpenApiClient(session, Endpoint(url, header, settings.api_key), policy)
        answer = await client.probe("customers")
        probes.append(Probe("try", url, header, answer))
        if answer.status not in _TRY_ANOTHER:
            chosen = client
            break
    if chosen is None:
        return CheckReport(probes, None)
    endpoint = chosen.endpoint
    for resource in ("customers", "orders", "products"):
        answer = await chosen.probe(resource)
        probes.append(Probe(resource, endpoint.base_url, endpoint.key_header, answer))
    working = (endpoint.base_url, endpoint.key_header) if probes[-3].answer.status == 200 else None
    return CheckReport(probes, working)


def render(report: CheckReport, settings: Settings) -> str:
    """The check as text: each answer, then what to set."""
    lines = []
    for p in report.probes:
        what = "trying" if p.endpoint == "try" else p.endpoint
        total = "" if p.answer.total is None else f", total {p.answer.total}"
        lines.append(
            f"{what:<10} {p.base_url} ({p.key_header}): {p.answer.status} "
            f"{p.answer.code} {p.answer.detail}{total}"
        )
        if p.endpoint == "products" and p.answer.status in {404, 405}:
            lines.append(
                "           no product list: sync will fetch each product id the log knows"
            )
    lines.append(
        "note: message statuses cannot be read from the Open API; only webhooks bring them"
    )
    if report.working is None:
        lines.append("no base URL and key header combination could read customers")
        return "\n".join(lines)
    url, header = report.working
    lines.append(f"working: BITBYBIT_API_URL={url} BITBYBIT_API_KEY_HEADER={header}")
    if (url, header) != (settings.api_url, settings.api_key_header):
        lines.append("set those two variables: the configured pair did not answer")
    return "\n".join(lines)


def as_json(report: CheckReport) -> dict[str, object]:
    """The check as a JSON-ready object (for `--check --json`)."""
    return {
        "ok": report.ok,
        "working": None
        if report.working is None
        else {"api_url": report.working[0], "api_key_header": report.working[1]},
        "answers": [dataclasses.asdict(p) for p in report.probes],
    }
