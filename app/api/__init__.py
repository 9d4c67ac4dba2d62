"""REST APIs (``/api/v1/...``): one module per business function.

An endpoint here is thin and of one shape::

    @expose("/<int:pk>/assign", methods=["POST"])
    @protect()
    @api_step
    def assign(self, pk):
        data = json_body()
        ticket = wf.assign(db.session, current_actor(), pk, data.get("assignee_id"))
        return self.response(200, result=wf.to_json(ticket))

``json_body`` owns the parsing of the request body, ``api_step`` the unit of
work (commit when the answer is a success, roll back otherwise) and the mapping
of domain errors to ``{"message", "field", "errors"}`` with their HTTP status.
The rule itself (who may, in which state) lives in app/workflows/.

Every module here that defines ``register(appbuilder)`` is registered after the
HTML views, in the order of its ``ORDER`` number.
"""
import importlib
import pkgutil

from .base import api_step, commit_step, html_step, json_body  # noqa: F401  (the endpoint toolkit)

_SKIP = {"base"}


def api_modules():
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if info.name in _SKIP or info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "register"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def register_apis(appbuilder):
    for mod in api_modules():
        mod.register(appbuilder)
