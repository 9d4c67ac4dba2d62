"""The endpoint toolkit shared by every REST API and every HTML step view.

* ``json_body()`` — the request's JSON object, or a 400 in Chinese;
* ``api_step`` — a REST endpoint's unit of work and error mapping;
* ``html_step`` — the same for an HTML view: a domain error becomes the Chinese
  error page with its status.

A step commits once, when its answer is a success (status < 400); any error
answer or exception rolls the session back, so a refused step changes nothing.
"""
import functools

from flask import request
from flask_babel import lazy_gettext as _l

from ..extensions import db
from ..views.errors import error_response
from ..workflows.errors import DomainError, ValidationError

NOT_AN_OBJECT = _l("请求体必须是 JSON 对象。")


def json_body():
    """The request body as a dict; anything else (no body, not JSON, a list, a
    number) is a ValidationError (400)."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ValidationError(NOT_AN_OBJECT)
    return data


def _status(response):
    if isinstance(response, tuple):
        return response[1] if len(response) > 1 and isinstance(response[1], int) else 200
    return getattr(response, "status_code", 200)


def _finish(response):
    if _status(response) < 400:
        db.session.commit()
    else:
        db.session.rollback()
    return response


def api_step(fn):
    """Wrap a REST endpoint (a method of a FAB BaseApi): DomainError → its status
    with ``to_dict()`` as the body; commit on success, roll back otherwise.
    Put it under ``@protect()`` so the permission is checked first."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            response = fn(self, *args, **kwargs)
        except DomainError as e:
            db.session.rollback()
            return self.response(e.status, **e.to_dict())
        except Exception:
            db.session.rollback()
            raise
        return _finish(response)
    return wrapper


def html_step(fn):
    """Wrap an HTML view method: DomainError → the Chinese error page with its
    status; commit on success, roll back otherwise. A view that wants to show a
    form again with the problems catches ValidationError itself and answers 400
    (rolled back here)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            response = fn(*args, **kwargs)
        except DomainError as e:
            db.session.rollback()
            return error_response(e.status, e.message)
        except Exception:
            db.session.rollback()
            raise
        return _finish(response)
    return wrapper
