"""The operator commands' work: status, export/import, backup, inspection, replay, forget.

Each module is called by one command of `app.commands`; none serves HTTP.
"""
