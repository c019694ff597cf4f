"""The routes of the queue as a whole: pause and resume, statistics, health, the OpenAPI
document."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import bottle

from service.api.http_io import json_response, parse_optional_empty_body
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
            "paused": service.paused(),
        })

    # Paused: running tasks finish, nothing new starts, submissions are still accepted; the
    # state is stored, so it survives a restart. Asking twice is not an error.
    @app.post("/queue/pause")
    def pause() -> NoReturn:
        parse_optional_empty_body()
        service.set_paused(True)
        json_response(200, {"paused": True})

    @app.post("/queue/resume")
    def resume() -> NoReturn:
        parse_optional_empty_body()
        service.set_paused(False)
        json_response(200, {"paused": False})

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

