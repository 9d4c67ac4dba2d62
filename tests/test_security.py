"""Web and login defences: headers, cookies, rate limits, lockout, password rules, escaping."""
import re

import pytest
from sqlalchemy import func, select

from app.extensions import db

from . import factories as f
from .conftest import PASSWORD, WebClient, build_app, csrf_from, dispose_app


def test_security_headers_and_cookie(web):
    c = web()
    r = c.get("/login/")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in csp and "frame-ancestors 'none'" in csp
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    # every script tag FAB renders carries the nonce: nothing inline runs without it
    for tag in re.findall(r"<script[^>]*>", r.text):
        assert f'nonce="{nonce}"' in tag, tag
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    cookie = r.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_user_text_is_escaped(api, web, uniq):
    evil = f"<script>alert(1)</script>{uniq()}"
    r = api("admin").post("/api/v1/dict_item/", json={"type": "测试XSS", "item": evil, "value": "1"})
    assert r.status_code == 201
    page = web("admin").get("/dictitem/list/?_flt_0_type=测试XSS").text
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_search_is_safe_against_sql_injection(web):
    page = web("manager1").get("/dictitem/list/?_flt_2_item=' OR 1=1 --")
    assert page.status_code == 200


@pytest.fixture(scope="module")
def limited_app(tmp_path_factory):
    app = build_app(tmp_path_factory.mktemp("limited"), "sqlite",
                    AUTH_RATE_LIMITED=True, AUTH_RATE_LIMIT="3 per minute")
    yield app
    dispose_app(app)


def test_form_login_is_rate_limited(limited_app):
    c = limited_app.test_client()
    token = csrf_from(c.get("/login/").text)
    codes = [c.post("/login/", data={"csrf_token": token, "username": "exec",
                                     "password": "wrong-pass-1"}).status_code for _ in range(4)]
    assert 429 not in codes[:3] and codes[3] == 429


def test_api_login_is_rate_limited(limited_app):
    c = limited_app.test_client()
    codes = [c.post("/api/v1/security/login", json={"username": "exec", "password": "x1",
                                                    "provider": "db"}).status_code
             for _ in range(4)]
    assert codes[:3] == [401, 401, 401] and codes[3] == 429


def _make_user(app, username, password=PASSWORD):
    with app.app_context():
        sm = app.appbuilder.sm
        if not sm.find_user(username=username):
            sm.add_user(username, "测", "试", f"{username}@example.com",
                        [sm.find_role("客户经理")], password=password)
        db.session.remove()


def test_account_locks_after_failed_logins_and_admin_unlocks(app, web, uniq):
    name = uniq("lock")
    _make_user(app, name)
    c = WebClient(app)
    for _ in range(app.config["LOCKOUT_ATTEMPTS"]):
        page = c.get("/login/")
        c.post("/login/", data={"csrf_token": csrf_from(page.text), "username": name,
                                "password": "wrong-pass-1"})
    page = c.get("/login/")
    r = c.post("/login/", data={"csrf_token": csrf_from(page.text), "username": name,
                                "password": PASSWORD}, follow_redirects=True)
    assert "账号已被锁定" in r.text
    assert c.get("/dictitem/list/").status_code == 302        # not logged in
    # API login is refused too
    r = app.test_client().post("/api/v1/security/login",
                               json={"username": name, "password": PASSWORD, "provider": "db"})
    assert r.status_code == 401
    # admin unlocks through the user list action
    with app.app_context():
        uid = app.appbuilder.sm.find_user(username=name).id
        db.session.remove()
    admin = web("admin")
    r = admin.post_form("/users/action_post", {"action": "unlock", "rowid": str(uid)},
                        form_url="/users/list/")
    assert r.status_code == 302
    WebClient(app, name)   # logs in


def test_password_complexity_on_new_users(web, app, uniq):
    admin = web("admin")
    with app.app_context():
        role_id = app.appbuilder.sm.find_role("客户经理").id
        db.session.remove()
    name = uniq("pw")
    data = {"first_name": "王", "last_name": "五", "username": name, "email": f"{name}@example.com",
            "active": "y", "roles": str(role_id), "password": "abc", "conf_password": "abc"}
    r = admin.post_form("/users/add", data)
    assert r.status_code == 200 and "密码至少 8 位" in r.text
    with app.app_context():
        assert app.appbuilder.sm.find_user(username=name) is None
        db.session.remove()
    data.update(password="Strong-pass-9", conf_password="Strong-pass-9")
    r = admin.post_form("/users/add", data)
    assert r.status_code == 302
    with app.app_context():
        assert app.appbuilder.sm.find_user(username=name) is not None
        db.session.remove()


def test_api_errors_are_chinese(api):
    r = api().get("/api/v1/dict_item/")
    assert r.status_code == 401 and "请先登录" in r.json["message"]
    r = api("exec").post("/api/v1/dict_item/", json={"type": "x", "item": "y", "value": "z"})
    assert r.status_code == 403 and "无权" in r.json["message"]
    r = api("admin").post("/api/v1/product/", json={"name": "x"})
    assert r.status_code == 405


# ---- served over HTTPS behind a proxy ------------------------------------------------------------

@pytest.fixture(scope="module")
def https_app(tmp_path_factory):
    app = build_app(tmp_path_factory.mktemp("https"), "sqlite", FORCE_HTTPS=True, PROXY_COUNT=1)
    yield app
    dispose_app(app)


def test_https_behind_proxy_secure_cookie_hsts_and_redirect(https_app):
    c = https_app.test_client()
    # plain http is sent to https
    r = c.get("/login/")
    assert r.status_code in (301, 302) and r.headers["Location"].startswith("https://")
    # the proxy says the client used https: served, cookie Secure, HSTS
    r = c.get("/login/", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"})
    assert r.status_code == 200
    cookie = r.headers.get("Set-Cookie", "")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "max-age" in r.headers["Strict-Transport-Security"]


def test_plain_http_cookie_is_not_secure(web):
    # without TLS a Secure cookie would never come back: the demo must stay usable
    assert "Secure" not in web().get("/login/").headers.get("Set-Cookie", "")


# ---- escaping everywhere a user's text is shown -------------------------------------------------

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_script_in_user_text_is_shown_as_text_on_every_page(api, web, dbs, user_id, uniq):
    tag = uniq()
    evil = f"{EVIL}{tag}"
    with dbs() as s:
        cust = f.customer(s, user_id("manager1"), name=f"客户{evil}")
        f.contact(s, cust, user_id("manager1"), name=f"联系人{evil}"[:64], memo=evil)
        opp = f.opportunity(s, user_id("manager1"), summary=f"概要{evil}", customer_name=f"机会{evil}")
        svc = f.service(s, cust, user_id("manager1"), summary=f"服务{evil}", status="archived",
                        result=evil, satisfaction=4)
        s.commit()
        cid, oid, sid = cust.id, opp.id, svc.id
    pages = [f"/customer/show/{cid}", f"/customer/list/?_flt_2_name={tag}",
             f"/contacts/customer/{cid}", f"/opportunity/list/?_flt_2_summary={tag}",
             f"/opportunity/show/{oid}", f"/service/archive/?summary={tag}",
             f"/service/archive/{sid}"]
    c = web("supervisor")
    for url in pages:
        page = c.get(url)
        assert page.status_code == 200, url
        assert evil not in page.text, url
        assert ESCAPED in page.text, url


# ---- SQL injection in every kind of search ---------------------------------------------------------

INJECTIONS = ["' OR 1=1 --", "'; DROP TABLE crm_customer; --", "%' UNION SELECT password FROM ab_user --",
              "\\' OR \\'1\\'=\\'1", "_%"]


@pytest.mark.parametrize("text", INJECTIONS)
def test_searches_treat_sql_as_text(web, api, dbs, text):
    from urllib.parse import quote

    from app.models import Customer

    with dbs() as s:
        before = s.scalar(select(func.count()).select_from(Customer))
    c = web("supervisor")
    q = quote(text)
    for url in (f"/customer/list/?_flt_2_name={q}", f"/dictitem/list/?_flt_2_item={q}",
                f"/opportunity/list/?_flt_2_customer_name={q}", f"/service/archive/?customer={q}",
                f"/service/archive/?summary={q}", f"/churn/list/?status=all&customer={q}",
                f"/reports/contribution/?customer={q}", f"/reports/churn/?manager={q}",
                f"/customer/export/csv/?_flt_2_name={q}"):
        r = c.get(url)
        assert r.status_code == 200, url
        assert "password" not in r.text.lower() or "pbkdf2" not in r.text, url
    a = api("supervisor")
    r = a.get("/api/v1/customer/", query_string={"q": f"(filters:!((col:name,opr:ct,value:'{text.replace(chr(39), '')}')))"})
    assert r.status_code in (200, 400)
    r = a.get("/api/v1/report/contribution", query_string={"customer": text})
    assert r.status_code == 200 and r.json["rows"] == []
    with dbs() as s:
        assert s.scalar(select(func.count()).select_from(Customer)) == before


def test_user_pages_show_chinese_values(web):
    # the exec user's row, however many users earlier tests have added
    page = web("admin").get("/users/list/?_flt_0_username=exec").text
    assert ">True<" not in page and ">None<" not in page and "[高管]" not in page
    assert "高管" in page and ">是<" in page
    info = web("exec").get("/users/userinfo/").text
    assert ">True<" not in info and "[高管]" not in info and "高管" in info


def test_permissions_read_once_per_request_and_changes_apply_next_request(app, web):
    """One query for the user's permissions per request (FAB: one per check, ~30 to
    draw a page); a role change still applies to the very next request."""
    from sqlalchemy import event

    c = web("manager1")
    statements = []

    def count(_conn, _cur, stmt, *_a, **_k):
        if "ab_permission_view_role" in stmt:
            statements.append(stmt)
    with app.app_context():
        engine = db.engines[None]
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert c.get("/churn/list/").status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1, len(statements)

    with app.app_context():
        sm = app.appbuilder.sm
        role = sm.find_role("客户经理")
        pv = sm.find_permission_view_menu("can_list", "Churn")
        sm.del_permission_role(role, pv)
    try:
        r = c.get("/churn/list/")
        assert r.status_code in (302, 403) and "/churn/list/" not in r.headers.get("Location", "")
    finally:
        with app.app_context():
            sm = app.appbuilder.sm
            sm.add_permission_role(sm.find_role("客户经理"),
                                   sm.find_permission_view_menu("can_list", "Churn"))
    assert c.get("/churn/list/").status_code == 200


def test_each_access_question_is_answered_once_per_request(app, web, monkeypatch):
    """A page asks has_access(perm, view) 30–45 times; each distinct question is worked
    out once per request (per user), and the next request asks again."""
    sm = app.appbuilder.sm
    asked = []
    real = type(sm)._has_access

    def counting(self, permission_name, view_name):
        asked.append((permission_name, view_name))
        return real(self, permission_name, view_name)

    c = web("manager1")
    monkeypatch.setattr(type(sm), "_has_access", counting)
    assert c.get("/customer/list/").status_code == 200
    first = list(asked)
    assert first and len(first) == len(set(first))          # no question worked out twice
    assert ("can_list", "Customer") in first
    asked.clear()
    assert c.get("/customer/list/").status_code == 200
    assert sorted(asked) == sorted(first)                    # the next request asks again
