"""Tests of app.webhooks, one module per module there."""
