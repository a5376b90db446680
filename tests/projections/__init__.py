"""Tests of each projection: events in, `SELECT` out."""
