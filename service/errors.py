"""Errors the service raises; each maps to one HTTP status and one message a person can read."""


class ServiceError(Exception):
    """Base class; ``str(error)`` is the message shown to the user or the API client."""


class ValidationError(ServiceError):
    """A submission the service refuses; nothing was written."""


class ConflictError(ServiceError):
    """The request conflicts with what is stored (an idempotency key used for another
    request); nothing was written."""


class TaskNotFoundError(ServiceError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} not found")
        self.task_id = task_id


class InvalidTransitionError(ServiceError):
    """The task exists but is in a status that does not allow the requested change."""

    def __init__(self, task_id: str, status: str, action: str, allowed: str) -> None:
        super().__init__(f"cannot {action} task {task_id}: it is {status} ({allowed})")
        self.task_id = task_id
        self.status = status
