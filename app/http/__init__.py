"""The HTTP edge: the app factory, its views and typed keys.

The only package that imports `aiohttp.web`.
"""
