"""Tests of app.projection, one module per module there."""
