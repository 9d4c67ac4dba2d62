"""Domain errors. ``message`` is already translated (lazy) Chinese text."""


class DomainError(Exception):
    status = 400

    def __init__(self, message, field=None):
        super().__init__(str(message))
        self.message = message
        self.field = field

    def to_dict(self):
        body = {"message": str(self.message)}
        if self.field:
            body["field"] = self.field
        return body


class ValidationError(DomainError):
    """Bad input: which field and why (400/422)."""
    status = 400


class Forbidden(DomainError):
    """The actor may not do this (403); nothing changed."""
    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    """Wrong state, or a lost race on compare-and-set (409); nothing changed."""
    status = 409
