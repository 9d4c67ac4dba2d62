"""Web and login defences: headers, cookies, rate limits, lockout, password rules, escaping."""
import re

import pytest
from sqlalchemy import select

from app.extensions import db

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
