"""Domain errors. ``message`` is already translated (lazy) Chinese text."""


class DomainError(Exception):
    status = 400

    def __init__(self, message, field=None, errors=None):
        super().__init__(str(message))
        self.message = message
        self.field = field
        # every problem found, [(field, message)]; the first is ``field``/``message``
        self.errors = list(errors) if errors else [(field, message)]

    def to_dict(self):
        body = {"message": str(self.message)}
        if self.field:
            body["field"] = self.field
        if isinstance(self, ValidationError):
            body["errors"] = [{"field": f, "message": str(m)} for f, m in self.errors]
        return body


class ValidationError(DomainError):
    """Bad input: which field and why (400/422)."""
    status = 400

    @classmethod
    def of(cls, errors):
        """One error carrying several: ``message``/``field`` are the first one's."""
        flat = []
        for e in errors:
            flat.extend(e.errors)
        field, message = flat[0]
        return cls(message, field=field, errors=flat)


class Forbidden(DomainError):
    """The actor may not do this (403); nothing changed."""
    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    """Wrong state, or a lost race on compare-and-set (409); nothing changed."""
    status = 409


class Collect:
    """Check every field, then report every problem at once::

        errs = Collect()
        with errs:
            out["a"] = parse_a(data)   # a ValidationError here is kept, not raised
        with errs:
            out["b"] = parse_b(data)
        errs.raise_any()               # one ValidationError listing all of them
    """

    def __init__(self):
        self.errors = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, ValidationError):
            self.errors.append(exc)
            return True
        return False

    def fields(self):
        return {f for e in self.errors for f, _m in e.errors}

    def raise_any(self):
        if self.errors:
            raise ValidationError.of(self.errors)


