"""Shared view helpers: the acting user, domain-error mapping, guarded CRUD."""
import functools

from flask import abort, flash, g, redirect, request
from flask_appbuilder import ModelView
from flask_appbuilder.api import ModelRestApi
from flask_appbuilder.security.decorators import has_access
from flask_appbuilder import expose

from ..extensions import db
from ..workflows.actors import Actor
from ..workflows.errors import Conflict, DomainError, Forbidden, NotFound
from .errors import error_response


def current_actor():
    return Actor.of(g.user)


def api_errors(fn):
    """Map DomainError to ``{"message": ...}`` with its HTTP code; roll back."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except DomainError as e:
            db.session.rollback()
            body = e.to_dict()
            return self.response(e.status, **body)
    return wrapper


def html_errors(fn):
    """Map DomainError to the Chinese error page with its HTTP code; roll back."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DomainError as e:
            db.session.rollback()
            return error_response(e.status, e.message)
    return wrapper


class GuardedModelView(ModelView):
    """A ModelView whose edit/delete/show first ask ``check_row(item, action)``.

    FAB's base_filters do not cover every path (actions, related views), so row
    rules are checked here on the server: Forbidden → 403, Conflict → 409 page,
    before FAB touches the form. Subclasses override ``check_row``.
    """

    def check_row(self, item, action):  # pragma: no cover - default allows
        return None

    def _guard(self, pk, action):
        item = self.datamodel.get(pk, self._base_filters)
        if item is None:
            abort(404)
        try:
            self.check_row(item, action)
        except DomainError as e:
            db.session.rollback()
            return error_response(e.status, e.message)
        return None

    @expose("/edit/<pk>", methods=["GET", "POST"])
    @has_access
    def edit(self, pk):
        return self._guard(pk, "edit") or super().edit(pk)

    @expose("/delete/<pk>", methods=["GET", "POST"])
    @has_access
    def delete(self, pk):
        return self._guard(pk, "delete") or super().delete(pk)

    def pre_update(self, item):
        # FAB turns exceptions raised here into a flashed message and re-shows the form
        self._validate(item, "edit")

    def pre_add(self, item):
        self._validate(item, "add")

    def _validate(self, item, action):
        """Hook for workflow validation of a populated item (raise DomainError)."""
        return None


class CrmModelRestApi(ModelRestApi):
    """Base for our REST resources: explicit columns, Chinese errors."""

    allow_browser_login = True
    max_page_size = 100
