"""Tests of app.eventlog, one module per module there."""
