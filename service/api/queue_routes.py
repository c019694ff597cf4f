"""The routes of the queue as a whole: statistics, health, the OpenAPI document."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import bottle

from service.api.http_io import json_response
from service.openapi import openapi_document
from service.task_service import TaskService
from storage import TaskStatus

if TYPE_CHECKING:
    from service.api.app import ApiConfig


def add_routes(app: bottle.Bottle, service: TaskService, cfg: ApiConfig) -> None:
    @app.get("/stats")
    def stats() -> NoReturn:
        counts = service.counts()
        completed, failed = service.rates.rates(10)
        json_response(200, {
            "counts": counts,
            "queue_depth": counts[TaskStatus.QUEUED],
            "workers": cfg.worker_stats(),
            "throughput": {"completed_per_second": completed, "failed_per_second": failed,
                           "window_seconds": 10},
        })

    @app.get("/health")
    def health() -> NoReturn:
        problems = cfg.problems()
        json_response(200, {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "version": cfg.version,
            "workers": cfg.worker_stats(),
            # Which instance answers, and where its tasks live: with several on one
            # database, the problems above are this one's.
            "node": service.store.identity,
            "database": service.store.location,
        })

    @app.get("/openapi.json")
    def openapi() -> NoReturn:
        json_response(200, openapi_document(cfg.version, service.registry))

