"""Tests of app.publish, one module per module there, against a real PostgreSQL."""
