"""The one application error type. Services raise it; the API maps it to HTTP in one place."""


class ApplicationError(Exception):
    status_code = 400

    def __init__(self, message, *, code="invalid", status_code=None, extra=None):
        super().__init__(message)
        self.message = message
        self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.extra = extra or {}


class NotFound(ApplicationError):
    status_code = 404

    def __init__(self, message="Not found.", *, code="not_found"):
        super().__init__(message, code=code)
