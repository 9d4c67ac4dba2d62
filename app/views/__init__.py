"""Views: FAB ModelViews, custom views and REST APIs. Thin: parse input, call a
workflow, render or serialize the result.

Every module here that defines ``register(appbuilder)`` is registered, in the
order of its ``ORDER`` number; its ``RIGHTS`` feed the role matrix (see
app/security.py).
"""
import importlib
import pkgutil

_SKIP = {"common", "errors", "request_args", "sections"}


def view_modules():
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if info.name in _SKIP or info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "register"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def register_views(appbuilder):
    for mod in view_modules():
        mod.register(appbuilder)
    # drop menu categories no module filled (a category is shown only with content)
    appbuilder.menu.menu = [m for m in appbuilder.menu.menu if m.childs or m.href]
