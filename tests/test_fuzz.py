"""API fuzzing with schemathesis against FAB's ``/api/v1/_openapi``.

Every operation of the OpenAPI description gets a bounded number of generated
requests (``MAX_EXAMPLES``, derandomized: the same cases on every run) as admin
and as a 客户经理. Checks: no 5xx, and the response conforms to the documented
schema. Runs on its own throw-away SQLite instance (fuzzed writes must not touch
the shared test database), so only once per test session.
"""
import os
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from .conftest import PASSWORD, build_app, dispose_app

MAX_EXAMPLES = int(os.environ.get("CRM_FUZZ_EXAMPLES", "3"))   # per operation and user

# Operations not fuzzed, with the reason.
SKIP = {
    ("POST", "/api/v1/security/login"): "login: rate limits/lockout are tested in test_security",
    ("POST", "/api/v1/security/refresh"): "needs a refresh token; FAB's own endpoint",
}
# Checks left out for an operation, with the reason.
NO_SCHEMA_CHECK = {
    ("GET", "/api/v1/menu/"): "FAB's MenuApi returns menu separators as the string '-' "
                              "where its schema says object (FAB's own endpoint)",
}

@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    app = build_app(tmp_path_factory.mktemp("fuzz"), "sqlite",
                    MAIL_SERVER="127.0.0.1", MAIL_PORT=9, MAIL_TIMEOUT=1)
    yield app
    dispose_app(app)


def _token(app, username):
    r = app.test_client().post("/api/v1/security/login", json={
        "username": username, "password": PASSWORD, "provider": "db"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json['access_token']}"}


def _fuzz(app, username, capsys):
    headers = _token(app, username)
    r = app.test_client().get("/api/v1/_openapi", headers=_token(app, "admin"))
    assert r.status_code == 200
    schema = schemathesis.openapi.from_dict(r.json)   # the real description, uncorrected
    schema.app = app              # call the operations through the WSGI app
    schema.location = "/api/v1/_openapi"
    failures, cases, operations = [], 0, 0
    for result in schema.get_all_operations():
        op = result.ok()
        key = (op.method.upper(), op.path)
        if key in SKIP:
            continue
        operations += 1
        checks = [not_a_server_error]
        if key not in NO_SCHEMA_CHECK:
            checks.append(response_schema_conformance)
        seen = []

        @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case):
            seen.append(1)
            response = case.call(headers=headers)
            case.validate_response(response, checks=checks, headers=headers)

        try:
            run()
        except (Exception, BaseExceptionGroup) as e:  # collect all, report together
            failures.append(f"{key[0]} {key[1]} as {username}: {_summary(e)}")
        cases += len(seen)
    with capsys.disabled():
        print(f"\n[fuzz/{username}] {operations} operations, {cases} cases, "
              f"{len(failures)} failing operations")
    return failures


def _summary(exc):
    """The distinct failure titles of a (grouped) schemathesis failure."""
    subs = getattr(exc, "exceptions", None) or [exc]
    lines = []
    for sub in subs:
        text = [ln.strip() for ln in str(sub).splitlines() if ln.strip()]
        head = type(sub).__name__ + ": " + " ".join(text[:3])
        if "Reproduce with" in str(sub):
            head += " || " + next((ln for ln in text if ln.startswith("curl")), "")
        lines.append(head[:600])
    return "\n    ".join(dict.fromkeys(lines))


@pytest.mark.parametrize("username", ["admin", "manager1"])
def test_api_fuzz(fuzz_app, username, capsys):
    failures = _fuzz(fuzz_app, username, capsys)
    assert not failures, "\n\n".join(failures)


def test_out_of_range_id_is_not_a_server_error(api):
    """An id beyond the database integer is an unknown record (404, not an overflow
    500), on FAB's routes and on our own."""
    c = api("admin")
    for big in (10**20, 2**31):   # beyond SQLite int64; beyond PostgreSQL int4
        for method in ("get", "put", "delete"):
            r = getattr(c, method)(f"/api/v1/dict_item/{big}", json={"value": "x"})
            assert r.status_code == 404, (method, big, r.status_code)
        assert c.get(f"/api/v1/customer/{big}").status_code == 404
        assert c.put(f"/api/v1/opportunity/{big}", json={"summary": "x"}).status_code == 404
    assert c.get("/api/v1/dict_item/abc").status_code == 404


def test_out_of_range_id_in_html_routes_is_404(web):
    c = web("admin")
    for url in (f"/customer/show/{10**20}", f"/contacts/customer/{10**20}",
                f"/dictitem/edit/{10**20}", f"/service/archive/{2**31}", f"/churn/show/{2**40}",
                f"/customer/show/{'9' * 5000}"):
        assert c.get(url).status_code == 404, url


# ---- the description and metadata of our resources (CrmModelRestApi) ----------------

def _crm_apis(app):
    from app.views.common import CrmModelRestApi

    apis = [v for v in app.appbuilder.baseviews if isinstance(v, CrmModelRestApi)]
    assert len(apis) >= 11
    return apis


def _json_schema(op, code):
    resp = op["responses"][code]
    return resp["content"]["application/json"]["schema"]["properties"]


def test_openapi_description_of_our_resources_tells_the_truth(app, api):
    spec = api("admin").get("/api/v1/_openapi").json
    paths = spec["paths"]
    for view in _crm_apis(app):
        base = view.route_base
        ours = {p: item for p, item in paths.items() if p == base or p.startswith(base + "/")}
        assert f"{base}/" in ours, base
        assert _json_schema(ours[f"{base}/"]["get"], "200")["ids"]["items"] == {"type": "integer"}
        assert _json_schema(ours[f"{base}/{{pk}}"]["get"], "200")["id"]["type"] == "integer"
        info = _json_schema(ours[f"{base}/_info"]["get"], "200")
        for key in ("add_columns", "edit_columns"):
            assert info[key]["type"] == "array" and info[key]["items"]["type"] == "object"
        for path, item in ours.items():
            for method, op in item.items():
                params = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "path"}
                for name in re.findall(r"{(\w+)}", path):
                    assert name in params, f"{method.upper()} {path}: {{{name}}} not declared"
                    assert params[name]["required"] is True
                    assert params[name]["schema"] == {"type": "integer", "minimum": 1,
                                                      "maximum": 2**31 - 1}, (path, name)


def test_api_info_has_no_catalogue_header_and_read_only_resources_no_forms(app, api):
    c = api("admin")
    for view in _crm_apis(app):
        r = c.get(f"{view.route_base}/_info")
        assert r.status_code == 200, view.resource_name
        assert "Project-Id-Version" not in r.text, view.resource_name   # gettext("")
        for key, route in (("add_columns", "post"), ("edit_columns", "put")):
            fields = r.json[key]
            assert bool(fields) == view._has_route(route), (view.resource_name, key)
            for field in fields:
                assert field["description"] == _text(view.description_columns.get(field["name"]))
                assert field["label"], (view.resource_name, field["name"])
    # a description that is set still comes through
    from app.api.dictionary import DictItemApi
    view = next(v for v in app.appbuilder.baseviews if isinstance(v, DictItemApi))
    view.description_columns["value"] = "条目的取值"
    try:
        fields = {f["name"]: f for f in c.get("/api/v1/dict_item/_info").json["add_columns"]}
        assert fields["value"]["description"] == "条目的取值" and fields["item"]["description"] == ""
    finally:
        del view.description_columns["value"]


def _text(value):
    return str(value) if value else ""


CJK = re.compile(r"[\u4e00-\u9fff]")


def test_api_titles_are_chinese(app, api):
    c = api("admin")
    for view in _crm_apis(app):
        name = view.resource_name
        titles = {
            "list_title": c.get(f"{view.route_base}/?q=(page_size:1)").json["list_title"],
            **{k: c.get(f"{view.route_base}/_info?q=(keys:!({k}))").json[k]
               for k in ("add_title", "edit_title")},
        }
        for key, title in titles.items():
            assert CJK.search(title), (name, key, title)
            assert not re.search(r"\b(List|Show|Add|Edit)\b", title), (name, key, title)
        assert titles["list_title"].endswith("列表")
        assert titles["add_title"].startswith("新建") == view._has_route("post"), titles
        assert titles["edit_title"].startswith("编辑") == view._has_route("put"), titles
    pk = c.get("/api/v1/dict_item/?q=(page_size:1)").json["ids"][0]
    assert c.get(f"/api/v1/dict_item/{pk}").json["show_title"] == "数据字典条目详情"
    assert c.get("/api/v1/customer/?q=(page_size:1)").json["list_title"] == "客户列表"


# ---- no input gives a 5xx: FAB's list arguments and every query argument --------------
# (app/views/request_args.py answers malformed FAB list arguments with 400 + Chinese)

def _model_views(app):
    from flask_appbuilder.baseviews import BaseModelView

    out = []
    for view in app.appbuilder.baseviews:
        if isinstance(view, BaseModelView) and f"{view.blueprint.name}.list" in app.view_functions:
            out.append(view)
    assert len(out) >= 12, [type(v).__name__ for v in out]
    return out


def _bad_filter_values(view):
    """(arg, value, what) for each search column whose type a value can violate."""
    from app.views.request_args import _column_kind

    out = []
    search = view._filters.get_search_filters()
    all_filters = view._filters._all_filters
    for col in search:
        kind = _column_kind(view.datamodel, col)
        bad = {"int": "abc", "relation": "abc", "float": "x1", "date": "notadate",
               "datetime": "31/31/2026 99:99"}.get(kind)
        if bad is not None and all_filters.get(col):
            out.append((f"_flt_0_{col}", bad, f"{kind} column {col}"))
    return out


def _list_garbage(view):
    name = type(view).__name__
    cols = list(view._filters.get_search_filters())
    order = list(view.order_columns or [])
    cases = [
        ({f"page_{name}": "abc"}, "page not a number"),
        ({f"page_{name}": "-1"}, "negative page"),
        ({f"page_{name}": "9" * 30}, "huge page"),
        ({f"psize_{name}": "abc"}, "page size not a number"),
        ({f"psize_{name}": "0"}, "page size 0"),
        ({f"psize_{name}": "-1"}, "page size -1"),
        ({f"psize_{name}": "9" * 30}, "page size beyond any number"),
        ({f"_oc_{name}": "nosuchcol", f"_od_{name}": "asc"}, "unknown sort column"),
        ({f"_oc_NoSuchView": "id", "_od_NoSuchView": "asc"}, "sort of an unknown list"),
        ({"_flt_0_nosuchcol": "1"}, "unknown filter column"),
        ({"_flt_x_": "1"}, "malformed filter"),
    ]
    if order:
        cases.append(({f"_oc_{name}": order[0], f"_od_{name}": "sideways"}, "bad direction"))
    if cols:
        beyond = len(view._filters._all_filters.get(cols[0]) or [])   # one past the last
        cases.append(({f"_flt_{beyond}_{cols[0]}": "x"}, "unknown filter index"))
        cases.append(({f"_flt_0_{cols[0]}": "x" * 5000}, "huge filter text"))
    cases += [({arg: value}, what) for arg, value, what in _bad_filter_values(view)]
    return cases


def test_html_list_arguments_malformed_are_400_in_chinese(app, capsys):
    from .conftest import WebClient

    fuzz_app = app     # GET only (400 before any query): the shared app, on every backend

    c = WebClient(fuzz_app, "admin")
    failures, n = [], 0
    for view in _model_views(fuzz_app):
        with fuzz_app.test_request_context():
            from flask import url_for
            url = url_for(f"{view.blueprint.name}.list")
        name = type(view).__name__
        good = {f"page_{name}": "0", f"psize_{name}": "25"}
        if view.order_columns:
            good.update({f"_oc_{name}": view.order_columns[0], f"_od_{name}": "desc"})
        r = c.get(url, query_string=good)
        if r.status_code != 200:
            failures.append(f"{url} with well-formed arguments {good}: {r.status_code}")
        r = c.get(url, query_string={f"psize_{name}": "100000"})    # capped, a full page
        if r.status_code != 200:
            failures.append(f"{url} with a page size beyond the limit: {r.status_code}")
        for args, what in _list_garbage(view):
            n += 1
            r = c.get(url, query_string=args)
            if r.status_code != 400 or not CJK.search(r.text) or "Traceback" in r.text:
                failures.append(f"{url}?{args} ({what}): {r.status_code}")
    with capsys.disabled():
        print(f"\n[fuzz/html lists] {len(_model_views(fuzz_app))} list views, {n} malformed "
              f"argument sets, {len(failures)} failures")
    assert not failures, "\n".join(failures)


REST_Q_GARBAGE = [
    ("(", "truncated rison"), ("(page:abc)", "page not a number"),
    ("(page:-1)", "negative page"), ("(page:99999999999999999999)", "huge page"),
    ("(page_size:-1)", "page size -1"), ("(page_size:0)", "page size 0"),
    ("(page_size:1000000)", "huge page size"),
    ("(filters:!((col:nosuch,opr:eq,value:1)))", "unknown filter column"),
    ("(order_column:nosuch,order_direction:asc)", "unknown sort column"),
    ("(order_column:id,order_direction:sideways)", "bad direction"),
    ("(filters:!((col:x)))", "filter without opr/value"),
    ("!(1,2)", "not an object"), ("(keys:!(nosuch))", "unknown key"),
]


def test_rest_list_q_malformed_is_400_in_chinese(app, capsys):
    from flask_appbuilder.api import ModelRestApi

    fuzz_app = app     # GET only: the shared app, on every backend

    c = fuzz_app.test_client()
    headers = _token(fuzz_app, "admin")
    failures, n = [], 0
    apis = [v for v in fuzz_app.appbuilder.baseviews if isinstance(v, ModelRestApi)
            and f"{v.blueprint.name}.get_list" in fuzz_app.view_functions]
    assert len(apis) >= 11
    for view in apis:
        base = view.route_base + "/"
        cases = list(REST_Q_GARBAGE)
        search = view._filters.get_search_filters()
        for col, filters in search.items():
            cases.append((f"(filters:!((col:{col},opr:nosuchopr,value:1)))", f"bad opr on {col}"))
            for value, kinds in (("abc", ("int", "relation")), ("notadate", ("date", "datetime")),
                                 ("99999999999999999999", ("int", "relation"))):
                from app.views.request_args import _column_kind
                if _column_kind(view.datamodel, col) in kinds:
                    cases.append((f"(filters:!((col:{col},opr:{filters[0].arg_name},value:'{value}')))",
                                  f"{value} for {col}"))
        for q, what in cases:
            n += 1
            r = c.get(base, query_string={"q": q}, headers=headers)
            message = (r.get_json(silent=True) or {}).get("message", "")
            if r.status_code != 400 or not CJK.search(str(message)):
                failures.append(f"GET {base}?q={q} ({what}): {r.status_code} {r.text[:120]}")
        r = c.get(base, query_string={"q": "(page:0,page_size:5,order_column:%s,order_direction:asc)"
                                      % (view.order_columns or ["id"])[0]}, headers=headers)
        if r.status_code != 200:
            failures.append(f"GET {base} with a well-formed q: {r.status_code} {r.text[:120]}")
    for url, qs in (("/api/v1/dict_item/1", ("(", "(columns:abc)", "(keys:!(nosuch))")),
                    ("/api/v1/dict_item/_info", ("(", "(add_columns:(type:(page:abc)))",
                                                 "(add_columns:(type:(page_size:-1)))",
                                                 "(keys:abc)"))):
        for q in qs:
            n += 1
            r = c.get(url, query_string={"q": q}, headers=headers)
            if r.status_code != 400:
                failures.append(f"GET {url}?q={q}: {r.status_code}")
    with capsys.disabled():
        print(f"\n[fuzz/rest q] {len(apis)} resources, {n} malformed q, {len(failures)} failures")
    assert not failures, "\n".join(failures)


def _known_arg_names():
    """Every query-argument name the application reads (request.args / args.get /
    _int_arg / report FILTERS) — found in the source, so a new one is fuzzed too."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / "app"
    names = set()
    patterns = (r"args\.get(?:list)?\(\s*\"(\w+)\"", r"_int_arg\((?:request\.args,\s*)?\"(\w+)\"",
                r"args\[\"(\w+)\"\]")
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for pattern in patterns:
            names.update(re.findall(pattern, text))
        for tuple_text in re.findall(r"FILTERS = \(([^)]*)\)", text):
            names.update(re.findall(r"\"(\w+)\"", tuple_text))
    return sorted(names)


GARBAGE = ["abc", "-1", "9" * 30, "", "2026-13-45", "'\"<>", "x" * 3000]


def test_every_query_argument_of_every_get_route_is_not_a_server_error(app, capsys):
    """Walk app.url_map: every GET route gets garbage in every known argument (one at
    a time and all at once) and FAB's list arguments; no answer may be a 5xx. GET
    changes nothing (tests/test_csrf.py), so the shared app, on every backend."""
    from .test_rights_matrix import build_url, make_fixtures, routes

    fuzz_app = app

    fixtures = make_fixtures(fuzz_app)
    names = _known_arg_names()
    assert len(names) >= 20, names
    from .conftest import WebClient

    web = WebClient(fuzz_app, "admin").client
    api = fuzz_app.test_client()
    headers = _token(fuzz_app, "admin")
    fab = ["page_X", "psize_X", "_oc_X", "_od_X", "_flt_0_x", "_flt_9_id", "q"]
    failures, n, seen = [], 0, 0
    for endpoint, rule, method in routes(fuzz_app):
        if method != "GET" or endpoint in ("AuthDBView.logout",):
            continue
        seen += 1
        url = build_url(fuzz_app, endpoint, rule, method, fixtures,
                        action="no_such_action" if endpoint.endswith(".action") else None)
        view = endpoint.split(".")[0]
        sets = [{name: value for name in names + [f.replace("X", view) for f in fab]}
                for value in GARBAGE[:4]]
        sets += [{name: GARBAGE[i % len(GARBAGE)]} for i, name in enumerate(names)]
        sets += [{f.replace("X", view): value} for f in fab for value in GARBAGE[:3]]
        for args in sets:
            n += 1
            try:
                if url.startswith("/api/"):
                    r = api.get(url, query_string=args, headers=headers)
                else:
                    r = web.get(url, query_string=args)
            except Exception as e:   # TESTING propagates: in production a 500
                failures.append(f"GET {url} {sorted(args)[:3]}: 500 {type(e).__name__}: {e}"[:300])
                continue
            if r.status_code >= 500:
                failures.append(f"GET {url} {sorted(args)[:3]}…={list(args.values())[0][:20]!r}: "
                                f"{r.status_code}")
    with capsys.disabled():
        print(f"\n[fuzz/query args] {seen} GET routes × {len(names)} argument names "
              f"+ FAB list arguments: {n} requests, {len(failures)} 5xx")
    assert not failures, "\n".join(failures[:60])


def test_anonymous_caller_is_sent_to_login_not_told_about_the_list(app):
    c = app.test_client()
    r = c.get("/dictitem/list/?page_DictItemView=abc&_oc_DictItemView=nosuch")
    assert r.status_code == 302 and "/login/" in r.headers["Location"]
    r = c.get("/api/v1/dict_item/?q=(order_column:nosuch)")
    assert r.status_code == 401
    r = c.get("/customer/mine?customer_id=" + "9" * 30)     # a number no record has: 400 for all
    assert r.status_code == 400
