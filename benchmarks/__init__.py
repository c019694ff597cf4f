"""Benchmarks of Taskdesk against huey's SqliteHuey; entry point: ``python -m benchmarks``."""
