"""Sync from BitByBit's Open API (SPEC §8): entities read back into the log as snapshots.

`client` and `ratelimit` know only HTTP and the API's envelopes; `snapshots` turns an
entity into a delivery for the log; `passes` runs a pass with its resumable `state`;
`check` is `sync --check`; `schedule` runs passes in the background of `serve`. Knows the
event log, never the HTTP service or the projections.
"""
