"""Errors the service raises; each maps to one HTTP status and one message a person can read."""


class ServiceError(Exception):
    """Base class; ``str(error)`` is the message shown to the user or the API client."""


class ValidationError(ServiceError):
    """A submission the service refuses; nothing was written.

    ``fields`` maps the path of each offending field of the task's data (``numbers[1]``,
    ``folder``; ``""`` for the data as a whole) to what is wrong with it, so that a form can
    show each problem beside its field; it is empty when the problem is not about a field.
    """

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields: dict[str, str] = dict(fields or {})


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
