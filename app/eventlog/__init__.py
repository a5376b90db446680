"""The event log: schema, store, signatures, group commit and ingest.

Knows nothing of HTTP or projections.
"""
