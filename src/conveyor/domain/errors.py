"""Domain errors. The API maps each onto one documented error row."""


class ConveyorError(Exception):
    """Base of every error Conveyor raises on purpose."""


class IllegalTransition(ConveyorError):
    def __init__(self, current: object, target: object) -> None:
        super().__init__(f"illegal transition {current!s} -> {target!s}")
        self.current = current
        self.target = target


class RequestError(ConveyorError):
    """A request the caller got wrong or may not make; `detail` says what exactly."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidParam(RequestError):
    """400: an invalid parameter, body, path value or reference."""


class AuthFailed(RequestError):
    """401: no token, or a malformed, unknown, expired or revoked one."""


class Forbidden(RequestError):
    """403: a valid token whose roles lack the permission for this workflow."""


class TaskNotFound(RequestError):
    """404: no task with this (workflow, id)."""


class StateConflict(RequestError):
    """409: the task's current state does not allow this."""


class LostUpdate(StateConflict):
    """409: another writer changed the task between our read and our write."""


class UpstreamError(ConveyorError):
    """A real fault outside the request: a git remote did not answer, say."""
