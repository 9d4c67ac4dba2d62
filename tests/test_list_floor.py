"""The per-request floor of the customer list (issue 23): statements per request, never
time. The search form's dropdowns keep their choices without FAB's unused COUNTs; each
access question is answered once per request (tests/test_security.py)."""
import json

from sqlalchemy import event, select

from app.extensions import db
from app.models import DictItem
from app.models.dictionary import LEVEL, REGION


def _statements(app, client, url):
    seen = []

    def count(_conn, _cur, stmt, *_a, **_k):
        seen.append(" ".join(stmt.split()))
    with app.app_context():
        engine = db.engines[None]
    event.listen(engine, "before_cursor_execute", count)
    try:
        r = client.get(url)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return r, seen


def test_customer_list_search_choices_without_counts(app, web):
    c = web("manager1")
    c.get("/customer/list/")                       # warm: list preference, caches
    r, seen = _statements(app, c, "/customer/list/")
    assert r.status_code == 200
    with app.app_context():
        items = db.session.scalars(select(DictItem.item).where(
            DictItem.type.in_((REGION, LEVEL)))).all()
        db.session.remove()
    html = r.get_data(as_text=True)
    # the search form's fields travel as JSON in the page (FAB's search widget)
    plain = [i for i in items if not set(i) & set("&<>'\"\\")]
    missing = [i for i in plain if json.dumps(i)[1:-1] not in html]
    assert plain and not missing, missing                    # the dropdowns' choices
    dict_counts = [s for s in seen if s.startswith("SELECT count(*)") and "crm_dict_item" in s]
    user_counts = [s for s in seen if s.startswith("SELECT count(*)") and "FROM ab_user" in s]
    assert dict_counts == [] and user_counts == []
    assert sum("ab_permission_view_role" in s for s in seen) == 1
    assert len(seen) <= 12, seen


def test_fab_checks_each_argument_schema_once(app, api, monkeypatch):
    """FAB's ``@rison(schema)`` validated the schema itself against its meta-schema on
    every REST request (5–14 ms); ``SchemaOnce`` checks it once and then validates only
    the arguments: the meta-schema check is not repeated, a valid ``q`` still works and
    an invalid one is still refused with the same error as ``jsonschema.validate``."""
    import flask_appbuilder.api as fab_api
    import jsonschema
    import pytest

    from app.views.common import SchemaOnce

    assert isinstance(fab_api.jsonschema, SchemaOnce)
    checks = []
    real = jsonschema.Draft202012Validator.check_schema.__func__

    def counting(cls, schema, *a, **k):
        checks.append(schema)
        return real(cls, schema, *a, **k)
    once = SchemaOnce()
    monkeypatch.setattr(fab_api, "jsonschema", once)
    for validator in (jsonschema.Draft4Validator, jsonschema.Draft7Validator,
                      jsonschema.Draft202012Validator):
        monkeypatch.setattr(validator, "check_schema", classmethod(counting))
    c = api("manager1")
    for _ in range(3):
        assert c.get("/api/v1/customer/?q=(page:0,page_size:5)").status_code == 200
        assert c.get("/api/v1/dict_item/").status_code == 200
    assert 1 <= len(checks) <= 2, len(checks)       # the list schema (and _info's), once each
    schema = {"type": "object", "properties": {"page": {"type": "integer"}}}
    with pytest.raises(jsonschema.ValidationError) as mine:
        once.validate(instance={"page": "x"}, schema=schema)
    with pytest.raises(jsonschema.ValidationError) as theirs:
        jsonschema.validate(instance={"page": "x"}, schema=schema)
    assert mine.value.message == theirs.value.message
    once.validate(instance={"page": 1}, schema=schema)
