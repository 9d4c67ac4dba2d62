"""Web defences across every route (issue 12): CSRF on every HTML form, and no state
change on GET.

* Every HTML route that accepts POST is called by a signed-in 系统管理员 *without* the
  CSRF token: it must answer 400 and change nothing in the database.
* Every HTML GET route is called by each role: the database must be exactly as before
  (a page, an export or a download never writes).

"Nothing changed" = the same row count, highest id and latest ``changed_on`` in every
table of the CRM database (login bookkeeping on ``ab_user`` excepted: signing in is
done before the snapshot).
"""
import pytest
from sqlalchemy import func, inspect, select

from .conftest import WebClient
from .test_rights_matrix import build_url, make_fixtures, routes

# GETs that end or switch the session (they write no row either, but they would end
# the client's session for the routes after them)
SESSION_ENDPOINTS = {"AuthDBView.logout", "LocaleView.index"}


def snapshot(app):
    from app.extensions import db

    out = {}
    with app.app_context():
        engine = db.engines[None]
        for table in db.metadata.sorted_tables:
            if table.info.get("bind_key") or not inspect(engine).has_table(table.name):
                continue
            cols = [func.count()]
            if "id" in table.c:
                cols.append(func.max(table.c.id))
            if "changed_on" in table.c:
                cols.append(func.max(table.c.changed_on))
            with engine.connect() as conn:
                out[table.name] = tuple(conn.execute(select(*cols).select_from(table)).one())
    return out


def html_routes(app, methods):
    return [(e, r, m) for e, r, m in routes(app)
            if m in methods and not r.rule.startswith("/api/")
            and e not in SESSION_ENDPOINTS]


@pytest.fixture(scope="module")
def fixtures(app):
    return make_fixtures(app)


def test_every_html_post_needs_the_csrf_token(app, fixtures):
    client = WebClient(app, "admin")
    before = snapshot(app)
    checked, wrong = 0, []
    for endpoint, rule, method in html_routes(app, {"POST", "PUT", "DELETE"}):
        url = build_url(app, endpoint, rule, method, fixtures)
        if url is None:
            continue
        # a plausible form, without csrf_token
        r = client.client.open(url, method=method, data={"name": "x", "action": "x",
                                                         "rowid": "1"})
        checked += 1
        if endpoint == "AuthDBView.login":
            # the login form is CSRF-protected too, but answers with its own page
            if r.status_code not in (200, 400) or "/login/" not in url:
                wrong.append((endpoint, method, r.status_code))
            continue
        if r.status_code != 400:
            wrong.append((endpoint, method, r.status_code))
    assert not wrong, wrong
    assert checked > 40, checked
    assert snapshot(app) == before
    print(f"\n[csrf] {checked} HTML POST routes refuse a request without the token")


@pytest.mark.parametrize("username", ["admin", "exec", "supervisor", "manager1"])
def test_get_never_changes_state(app, fixtures, username):
    client = WebClient(app, username)
    before = snapshot(app)
    n = 0
    for endpoint, rule, method in html_routes(app, {"GET"}):
        url = build_url(app, endpoint, rule, method, fixtures)
        if url is None:
            continue
        try:
            r = client.client.get(url)
            if r.is_streamed:
                r.get_data()  # run the export generators to the end
        except Exception:  # a 500 is the rights matrix's business; here: no writes
            pass
        n += 1
    after = snapshot(app)
    changed = {t: (before.get(t), after[t]) for t in after if before.get(t) != after[t]}
    assert not changed, changed
    assert n > 80, n
