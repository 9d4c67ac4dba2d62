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
