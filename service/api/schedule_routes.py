"""The routes of schedules: list them, run one now, pause or resume one."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import bottle

from service.api.http_io import json_error, json_response, parse_optional_empty_body
from service.schedules import ScheduleStatus, UnknownScheduleError
from service.task_service import TaskService

if TYPE_CHECKING:
    from service.api.app import ApiConfig


def add_routes(app: bottle.Bottle, service: TaskService, cfg: ApiConfig) -> None:
    def statuses() -> list[ScheduleStatus]:
        return cfg.schedules.overview() if cfg.schedules is not None else []

    @app.get("/schedules")
    def list_schedules() -> NoReturn:
        json_response(200, {"schedules": [s.to_dict() for s in statuses()]})

    def unknown(name: str) -> NoReturn:
        json_error(404, str(UnknownScheduleError(name)))

    @app.post("/schedules/<name>/run")
    def run_schedule(name: str) -> NoReturn:
        parse_optional_empty_body()
        if cfg.schedules is None:
            unknown(name)
        try:
            task = cfg.schedules.run_now(name)
        except UnknownScheduleError as exc:
            json_error(404, str(exc))
        json_response(202, {"id": task.id, "status": task.status})

    def set_paused(name: str, paused: bool) -> NoReturn:
        parse_optional_empty_body()
        if cfg.schedules is None:
            unknown(name)
        try:
            status = cfg.schedules.set_paused(name, paused)
        except UnknownScheduleError as exc:
            json_error(404, str(exc))
        json_response(200, status.to_dict())

    @app.post("/schedules/<name>/pause")
    def pause_schedule(name: str) -> NoReturn:
        set_paused(name, True)

    @app.post("/schedules/<name>/resume")
    def resume_schedule(name: str) -> NoReturn:
        set_paused(name, False)
