"""One module per command of `python -m app`: its options and the call it makes.

Each module has `NAME`, `register(commands)` adding its subparser, and `run(args,
environ)`; `app.cli` lists them. The work itself lives in the layer packages.
"""
