"""The endpoint toolkit shared by every REST API and every HTML step view.

* ``json_body()`` — the request's JSON object, or a 400 in Chinese;
* ``api_step`` — a REST endpoint's unit of work and error mapping;
* ``html_read`` — an HTML view that only reads: the error page, no commit;
* ``html_step`` — the same for an HTML view: a domain error becomes the Chinese
  error page with its status;
* ``commit_step()`` — end one unit of work inside a step that is two (below).

A step commits once, when its answer is a success (status < 400); any error
answer or exception rolls the session back, so a refused step changes nothing.
A step with an effect outside the database (sending a mail over SMTP) is two
units: what must survive the effect is committed first with ``commit_step()``,
then the outcome, whatever the answer (a failed send is kept, answered 502).
This module and the CLI/scheduler jobs are the only places that commit.
"""
import functools

from flask import request
from flask_appbuilder.models.filters import BaseFilter
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..views.errors import error_response
from ..workflows.errors import Conflict, DomainError, ValidationError

NOT_AN_OBJECT = _l("请求体必须是 JSON 对象。")
# a unique key taken by a concurrent request between our check and our write
LOST_RACE = _l("其他用户刚刚同时修改了相同的数据，本次操作没有保存；请刷新后重试。")


class QuickSearchFilter(BaseFilter):
    """``q=(filters:!((col:<column>,opr:search,value:'词1 词2')))``: the 快速搜索 of a
    list's page on its ModelRestApi — the workflow's own condition for the model
    (``CONDITIONS``: model → ``condition(text, dialect)``, e.g. service's
    ``search_condition``). One class for every resource: FAB looks a REST operator up
    in one global table by its name (``map_args_filter``), so two filter classes named
    ``search`` would replace each other."""

    name = _l("快速搜索")
    arg_name = "search"
    CONDITIONS = {}

    @classmethod
    def on(cls, model, condition):
        """Register ``condition`` for ``model``; returns the class (for ``search_filters``)."""
        cls.CONDITIONS[model] = condition
        return cls

    def apply(self, query, value):
        condition = self.CONDITIONS.get(self.datamodel.obj)
        text = "" if isinstance(value, bool) or value is None else str(value)
        cond = condition(text, query.session.get_bind().dialect.name) if condition else None
        return query if cond is None else query.filter(cond)


def json_body():
    """The request body as a dict; anything else (no body, not JSON, a list, a
    number) is a ValidationError (400)."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ValidationError(NOT_AN_OBJECT)
    return data


def commit_step():
    """Commit the unit of work so far (see the module doc: only for a step that
    must persist before, or whatever the outcome of, an outside effect)."""
    db.session.commit()


def int_arg(args, key, default=0, minimum=0, maximum=None, field=None):
    """``args[key]`` as an int clamped to [minimum, maximum] (``default`` when
    absent); not an integer → ValidationError (400) naming the parameter."""
    try:
        value = int(args.get(key, default))
    except (TypeError, ValueError):
        raise ValidationError(_l("参数 %(f)s 必须是整数。", f=key), field or key)
    value = max(value, minimum)
    return min(value, maximum) if maximum else value


def lenient_int(value, default=0):
    """A page number or id from an HTML page's query string: a non-negative int, or
    ``default`` for anything else (a page simply shows its first page)."""
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return default


def _status(response):
    if isinstance(response, tuple):
        return response[1] if len(response) > 1 and isinstance(response[1], int) else 200
    return getattr(response, "status_code", 200)


def _finish(response):
    if _status(response) < 400:
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            raise Conflict(LOST_RACE)
    else:
        db.session.rollback()
    return response


def api_step(fn):
    """Wrap a REST endpoint (a method of a FAB BaseApi): DomainError → its status
    with ``to_dict()`` as the body, a unique key lost to a concurrent request
    (IntegrityError) → 409; commit on success, roll back otherwise.
    Put it under ``@protect()`` so the permission is checked first."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return _finish(fn(self, *args, **kwargs))
        except IntegrityError:
            db.session.rollback()
            return self.response(409, **Conflict(LOST_RACE).to_dict())
        except DomainError as e:
            db.session.rollback()
            return self.response(e.status, **e.to_dict())
        except Exception:
            db.session.rollback()
            raise
    return wrapper


def html_step(fn):
    """Wrap an HTML view method: DomainError → the Chinese error page with its
    status; commit on success, roll back otherwise. A view that wants to show a
    form again with the problems catches ValidationError itself and answers 400
    (rolled back here)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return _finish(fn(*args, **kwargs))
        except IntegrityError:
            db.session.rollback()
            return error_response(409, LOST_RACE)
        except DomainError as e:
            db.session.rollback()
            return error_response(e.status, e.message)
        except Exception:
            db.session.rollback()
            raise
    return wrapper


def html_read(fn):
    """Wrap an HTML view that only reads (a page, a streamed export): DomainError → the
    Chinese error page with its status, and no commit — a streamed export keeps reading
    its rows after the view returned, which a commit (expiring them) would break."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DomainError as e:
            db.session.rollback()
            return error_response(e.status, e.message)
    return wrapper
