"""BitByBit's webhook protocol: signatures, the delivery headers and their rules, samples.

No aiohttp.web here: the HTTP view reads the request and maps `RejectedError`'s code to
its status, and `send-test` and `replay` send what this package builds.
"""
