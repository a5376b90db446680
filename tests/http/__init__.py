"""Tests of app.http, one module per module there."""
