"""The layer rules of docs/architecture.md, checked on the source (ast, no import).

* no import cycle among app modules at module import time (top-level imports,
  including those under a top-level ``if``/``try``; imports inside functions are
  deferred and not counted);
* app/models imports nothing from workflows, views or api (not even inside a
  function: a model that needs a label finds it in the model layer);
* app/workflows imports nothing from flask, flask_appbuilder, the views, the APIs
  or app.extensions (settings and the session are passed in; flask_babel's lazy
  strings are fine);
* no ``db.session.commit(`` in app/views, app/api or app/workflows: the unit of work
  is app/api/base.py (``api_step``/``html_step``/``commit_step``) or the CLI and
  scheduler job around a call.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "app")

# the unit of work itself
COMMIT_ALLOWED = {"app/api/base.py"}


def _modules():
    mods = {}
    for folder, _dirs, files in os.walk(APP):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                mods[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return mods


MODULES = _modules()


def _rel(path):
    return os.path.relpath(path, ROOT).replace(os.sep, "/")


def _targets(module, node):
    """The app modules an import statement loads (absolute names)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    package = module if MODULES[module].endswith("__init__.py") else module.rpartition(".")[0]
    if node.level:
        base = package
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module
    subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
    return subs if len(subs) == len(node.names) else subs + [target]


def _imports(module, top_level_only):
    tree = ast.parse(open(MODULES[module], encoding="utf-8").read())
    if top_level_only:
        nodes = []
        for stmt in tree.body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                nodes.append(stmt)
            elif isinstance(stmt, (ast.If, ast.Try)):
                nodes += [n for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))]
    else:
        nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return [(n.lineno, t) for n in nodes for t in _targets(module, n)]


def _graph():
    return {m: {t for _line, t in _imports(m, True) if t in MODULES and t != m} for m in MODULES}


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_the_app():
    assert "app.models.audit" in MODULES and "app.workflows.imports" in MODULES
    graph = _graph()
    assert "app.models.base" in graph["app.models.audit"]
    # and finds a cycle when there is one
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_at_import_time():
    assert _cycles(_graph()) == []


def _prefixed(name, prefixes):
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violations(package, forbidden, top_level_only=False):
    out = []
    for module, path in sorted(MODULES.items()):
        if module == package or module.startswith(package + "."):
            for line, target in _imports(module, top_level_only):
                if _prefixed(target, forbidden):
                    out.append(f"{_rel(path)}:{line} imports {target}")
    return out


def test_models_import_no_upper_layer():
    assert _violations("app.models", ("app.workflows", "app.views", "app.api")) == []


def test_workflows_import_no_flask_fab_views_api_or_extensions():
    forbidden = ("flask", "flask_appbuilder", "flask_login", "flask_migrate", "flask_wtf",
                 "app.views", "app.api", "app.extensions", "app.cli")
    assert _violations("app.workflows", forbidden) == []


@pytest.mark.parametrize("layer", ["views", "api", "workflows"])
def test_no_commit_outside_the_unit_of_work(layer):
    found = []
    for folder, _dirs, files in os.walk(os.path.join(APP, layer)):
        for name in files:
            path = os.path.join(folder, name)
            rel = _rel(path)
            if not name.endswith(".py") or rel in COMMIT_ALLOWED:
                continue
            for no, text in enumerate(open(path, encoding="utf-8"), 1):
                if "db.session.commit(" in text:
                    found.append(f"{rel}:{no}")
    assert found == []
