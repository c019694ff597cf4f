"""The routes of the instances sharing the database: ``GET /nodes``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

import bottle

from service.api.http_io import json_response
from service.task_service import TaskService
from storage import NodeInfo

if TYPE_CHECKING:
    from service.api.app import ApiConfig


def node_json(node: NodeInfo) -> dict[str, Any]:
    return {
        "id": node.id, "host": node.host, "pid": node.pid, "api_url": node.api_url,
        "started_at": node.started_at, "heartbeat_at": node.heartbeat_at,
        "alive": node.alive, "current": node.current, "running": list(node.running),
    }


def add_routes(app: bottle.Bottle, service: TaskService, cfg: ApiConfig) -> None:
    @app.get("/nodes")
    def nodes() -> NoReturn:
        found = service.nodes()
        json_response(200, {
            "nodes": [node_json(n) for n in found],
            "alive": sum(1 for n in found if n.alive),
            "shared": service.store.shared,
        })
