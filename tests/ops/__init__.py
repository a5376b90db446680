"""Tests of app.ops, one module per module there."""
