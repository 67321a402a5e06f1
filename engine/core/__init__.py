"""Pure scheduling logic: crontab parsing, next-fire computation, catch-up policies.

Nothing in this package touches a database, a thread or the wall clock; every instant is
passed in by the caller, which keeps the logic deterministic and testable.
"""
