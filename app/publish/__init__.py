"""Publishing: copies of the projection tables kept elsewhere by consuming the change feed.

What belongs here is the consumer side of SPEC §12: a target (today PostgreSQL, in
`postgres`) that turns feed lines into its own tables, keeps its cursor with them, and
reports its progress and last error where `status` can read them without reaching the
target. The feed itself (what changed, in commit order) belongs to the projection
runtime, and the wiring (the `publish` command, `serve`'s child process) to the CLI.
"""
