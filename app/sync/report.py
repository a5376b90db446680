"""What a pass did, per entity type: the SPEC's report, kept between runs of a resumed pass."""

from __future__ import annotations

import msgspec

# Said in the report, `--help` and the README: the API has no way to read them back.
MESSAGES_NOTE = (
    "message statuses are not synced: the Open API can send WhatsApp messages but "
    "cannot read a message or its status back; only webhooks bring them"
)
MAX_PROBLEMS_LISTED = 20


class KindReport(msgspec.Struct):
    """Counts for one entity type; `problems_seen` lists the first few problems."""

    read: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    gone: int = 0
    problems: int = 0
    problems_seen: list[str] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)

    def problem(self, text: str) -> None:
        """Count a problem; keep its text while the list is short."""
        self.problems += 1
        if len(self.problems_seen) < MAX_PROBLEMS_LISTED:
            self.problems_seen.append(text)


class Report(msgspec.Struct):
    """A whole pass. `ok` is False when it stopped early or any entity had a problem."""

    started_at: str
    entities: dict[str, KindReport]
    finished_at: str | None = None
    ok: bool | None = None
    stopped: str | None = None  # why the pass stopped before its end
    resumed: bool = False
    messages: str = MESSAGES_NOTE

    def conclude(self, finished_at: str) -> None:
        """Mark the pass ended, successfully if nothing stopped it and nothing failed."""
        self.finished_at = finished_at
        self.ok = self.stopped is None and all(k.problems == 0 for k in self.entities.values())


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Report)


def encode(report: Report) -> bytes:
    """The report as JSON (what `--json` prints and the state keeps)."""
    return _encoder.encode(report)


def decode(data: bytes) -> Report:
    """A report `encode` wrote."""
    return _decoder.decode(data)


def render(report: Report) -> str:
    """The report as a few lines of text for a terminal."""
    header = ("entity", "read", "new", "changed", "unchanged", "gone", "problems")
    lines = ["{:<10} {:>7} {:>7} {:>7} {:>9} {:>5} {:>8}".format(*header)]
    for name, k in report.entities.items():
        lines.append(
            f"{name:<10} {k.read:>7} {k.new:>7} {k.changed:>7} {k.unchanged:>9} "
            f"{k.gone:>5} {k.problems:>8}"
        )
        lines.extend(f"  {name}: {note}" for note in k.notes)
        lines.extend(f"  {name}: problem: {text}" for text in k.problems_seen)
    if report.resumed:
        lines.append("this pass resumed one that had stopped")
    if report.stopped:
        lines.append(f"stopped: {report.stopped}")
    lines.append(f"note: {report.messages}")
    lines.append("sync " + ("complete" if report.ok else "did NOT complete cleanly"))
    return "\n".join(lines)
