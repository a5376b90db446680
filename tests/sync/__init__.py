"""Tests of app.sync against a local fake of the Open API."""
