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
    from app.views.dictionary import DictItemApi
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
