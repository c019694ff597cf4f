"""The HTTP API (see app.py): routes by subject in *_routes.py, reading and writing in
http_io.py. The app runs on the API server's threads and never touches a Qt object."""

from service.api.app import LOOPBACK_NAMES, ApiConfig, create_app
from service.limits import DEFAULT_LIMIT, MAX_BODY_BYTES, MAX_LIMIT

__all__ = ["DEFAULT_LIMIT", "LOOPBACK_NAMES", "MAX_BODY_BYTES", "MAX_LIMIT", "ApiConfig",
           "create_app"]
