"""The worker pool and its parts (see pool.py)."""

from service.workers.pool import WorkerPool

__all__ = ["WorkerPool"]
