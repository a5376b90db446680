"""Sync from BitByBit's Open API (SPEC §8): entities read back into the log as snapshots.

`client` knows only HTTP, the API's envelopes and its rate limit; `passes` runs a pass
(snapshots, deletions) with its resumable `state`; `check` is `sync --check`; `runner`
runs either, and passes in the background of `serve`. Knows the event log, never the
HTTP service or the projections.
"""
