"""The routes of actions: what the registry holds, for forms, scripts and the OpenAPI document."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import bottle

from service.api.http_io import json_response
from service.task_service import TaskService

if TYPE_CHECKING:
    from service.api.app import ApiConfig


def add_routes(app: bottle.Bottle, service: TaskService, cfg: ApiConfig) -> None:
    @app.get("/actions")
    def list_actions() -> NoReturn:
        json_response(200, {"actions": service.registry.describe()})
