"""Sessions end when they should, and the REST API refuses cross-site writes (issue 17).

* CSRF: a write on /api/ authenticated by the browser's session cookie needs
  Flask-WTF's token in X-CSRFToken; without it (or with a wrong one) → 400, Chinese
  JSON, nothing written. JWT calls need no token. Cookie reads stay.
* Sessions live in crm_login_session: logout ends this one on the server (a copied
  cookie stops working), an own password change ends every other session (the one
  that changed it stays, under a new token), an admin password reset or a
  deactivation ends all of them, JWTs included — on every app instance at once.

Every test uses its own user (the demo users' cached JWTs must survive).
"""
import io

import pytest
from sqlalchemy import func, select

from app import create_app
from app.extensions import db

from . import factories as f
from .conftest import PASSWORD, ApiClient, WebClient
from .test_mail import smtp, smtp_server  # noqa: F401  (a recording SMTP server)

EVIL = {"Origin": "http://evil.example", "Referer": "http://evil.example/page"}
NEW_PASSWORD = "Neues-pass-456"


def make_user(app, name, role="客户经理", password=PASSWORD):
    with app.app_context():
        sm = app.appbuilder.sm
        if not sm.find_user(username=name):
            sm.add_user(name, "测", "试", f"{name}@example.com", [sm.find_role(role)],
                        password=password)
        uid = sm.find_user(username=name).id
        db.session.remove()
    return uid


def password_hash(app, uid):
    with app.app_context():
        from flask_appbuilder.security.sqla.models import User

        value = db.session.get(User, uid).password
        db.session.remove()
    return value


def cookie_of(client):
    return client.client.get_cookie("session").value


def with_cookie(app, value):
    """A new browser that was handed a copy of someone's session cookie."""
    c = WebClient(app)
    c.client.set_cookie("session", value)
    return c


def signed_in(client):
    """The client's session is live: a page that needs login answers 200."""
    r = client.get("/users/userinfo/")
    return r.status_code == 200


def api_signed_in(client):
    return client.get("/api/v1/user/?page_size=1").status_code == 200


# ---- 1. CSRF on cookie-authenticated API writes -------------------------------------

def _writes(app, dbs, uniq, uid):
    """The four writes of the security review, each with a way to count its effect."""
    from app.models import Customer, Document, MailMessage, Opportunity

    with dbs() as s:
        cust = f.customer(s, uid)
        s.commit()
        cid = cust.id

    def customer_phone():
        with dbs() as s:
            return s.get(Customer, cid).phone

    def opportunities(name):
        with dbs() as s:
            return s.scalar(select(func.count()).select_from(Opportunity)
                            .where(Opportunity.customer_name == name))

    def documents():
        with dbs() as s:
            return s.scalar(select(func.count()).select_from(Document)
                            .where(Document.customer_id == cid))

    def mails(subject):
        with dbs() as s:
            return s.scalar(select(func.count()).select_from(MailMessage)
                            .where(MailMessage.subject == subject))

    def put_customer(client, headers):
        phone = "010-" + str(int(uniq(), 16) % 90000000 + 10000000)
        r = client.put(f"/api/v1/customer/{cid}", json={"phone": phone}, headers=headers)
        return r, customer_phone() == phone

    def post_opportunity(client, headers):
        name = uniq("跨站测试公司")
        r = client.post("/api/v1/opportunity/", headers=headers, json=dict(
            source="展会", customer_name=name, success_rate=50, summary="采购打印机",
            contact="张三", contact_phone="13900139000", description="x"))
        return r, opportunities(name) == 1

    def post_document(client, headers):
        before = documents()
        r = client.post("/api/v1/document/", headers=headers, content_type="multipart/form-data",
                        data={"customer_id": str(cid),
                              "file": [(io.BytesIO(b"hello " + uniq().encode()), "a.txt")]})
        return r, documents() == before + 1

    def post_mail(client, headers):
        subject = uniq("跨站邮件")
        r = client.post("/api/v1/mail/", headers=headers, json={
            "to": ["someone@partner.cn"], "subject": subject, "body": "x"})
        return r, mails(subject) == 1

    return {"PUT customer": put_customer, "POST opportunity": post_opportunity,
            "POST document": post_document, "POST mail": post_mail}


class CookieApi:
    """The browser's session cookie calling the API (what a cross-site form/fetch does)."""

    def __init__(self, web):
        self.web = web

    def __getattr__(self, method):
        return lambda url, headers=None, **kw: getattr(self.web.client, method)(
            url, headers=headers or {}, **kw)


def test_cookie_writes_on_the_api_need_the_csrf_token(app, dbs, uniq, smtp):
    name = uniq("csrf")
    uid = make_user(app, name)
    web = WebClient(app, name)
    token = web.csrf("/mail/compose")
    jwt = ApiClient(app, name)
    cookie = CookieApi(web)
    for what, write in _writes(app, dbs, uniq, uid).items():
        # cross-site: the cookie alone, or a made-up token → refused, nothing written
        for headers in (EVIL, dict(EVIL, **{"X-CSRFToken": "forged-" + token[:20]})):
            r, written = write(cookie, headers)
            assert r.status_code == 400, (what, r.status_code, r.text)
            assert "CSRF" in r.json["message"] and "令牌" in r.json["message"], what
            assert not written, what
        # the app's own pages send the token → works
        r, written = write(cookie, {"X-CSRFToken": token})
        assert r.status_code in (200, 201), (what, r.status_code, r.text)
        assert written, what
        # JWT (Authorization: Bearer) → works without a token, even from "elsewhere"
        r, written = write(jwt, EVIL)
        assert r.status_code in (200, 201), (what, r.status_code, r.text)
        assert written, what


def test_cookie_reads_stay_and_login_endpoint_needs_no_token(app, uniq):
    name = uniq("csrfread")
    make_user(app, name)
    web = WebClient(app, name)
    assert web.get("/api/v1/user/?page_size=1").status_code == 200     # Swagger UI reads
    # the JWT login works for a client that also carries a browser session
    r = web.client.post("/api/v1/security/login",
                        json={"username": name, "password": PASSWORD, "provider": "db"})
    assert r.status_code == 200 and r.json["access_token"]
    # no cookie, no JWT: 401 as before (not a CSRF message)
    r = WebClient(app).client.post("/api/v1/opportunity/", json={"summary": "x"})
    assert r.status_code == 401


def test_bearer_call_ignores_the_browser_session(app, uniq):
    """A JWT call acts as the token's user even if a cookie of someone else rides along."""
    admin_web = WebClient(app, "admin")
    name = uniq("bearer")
    make_user(app, name)
    token = ApiClient(app, name).headers["Authorization"]
    r = admin_web.client.post("/api/v1/dict_item/", headers={"Authorization": token},
                              json={"type": "测试", "item": uniq(), "value": "1"})
    assert r.status_code == 403          # a 客户经理 may not; the admin's cookie does not count


def test_swagger_ui_sends_the_csrf_header(app):
    page = WebClient(app, "admin").get("/swagger/v1")
    assert page.status_code == 200
    assert "csrfToken" in page.text and "X-CSRFToken" in page.text
    assert "requestInterceptor" in page.text


# ---- 2. sessions end ------------------------------------------------------------------

def test_logout_ends_the_session_on_the_server(app, uniq):
    name = uniq("logout")
    make_user(app, name)
    c = WebClient(app, name)
    copied = cookie_of(c)
    assert signed_in(with_cookie(app, copied))          # the copy works while signed in
    c.get("/logout/")
    thief = with_cookie(app, copied)
    r = thief.get("/users/userinfo/")
    assert r.status_code == 302 and "/login/" in r.headers["Location"]
    assert thief.client.get("/api/v1/user/").status_code == 401
    assert not signed_in(c)


def _sessions(app, name):
    """Two browsers and one JWT client of ``name``, all signed in."""
    a, b, j = WebClient(app, name), WebClient(app, name), ApiClient(app, name)
    assert signed_in(a) and signed_in(b) and api_signed_in(j)
    return a, b, j


def _change_own_password(client, current, new=NEW_PASSWORD):
    return client.post_form("/resetmypassword/form", {
        "current_password": current, "password": new, "conf_password": new})


def test_own_password_change_ends_every_other_session(app, uniq):
    name = uniq("ownpw")
    make_user(app, name)
    a, b, j = _sessions(app, name)
    old_cookie_of_a = cookie_of(a)
    page = a.get("/resetmypassword/form")
    assert "当前密码" in page.text and "确认新密码" in page.text
    r = _change_own_password(a, PASSWORD)
    assert r.status_code == 302
    assert signed_in(a)                                   # the one that changed it stays
    assert not signed_in(b)                               # other browsers: ended
    r = j.get("/api/v1/user/?page_size=1")                # JWTs issued before: ended
    assert r.status_code == 401 and "重新登录" in r.json["message"]
    assert not signed_in(with_cookie(app, old_cookie_of_a))   # a's old cookie: new token now
    # the new password works, the old one not
    WebClient(app, name).login(name, NEW_PASSWORD)
    r = app.test_client().post("/api/v1/security/login",
                               json={"username": name, "password": PASSWORD, "provider": "db"})
    assert r.status_code == 401


def test_own_password_change_with_a_wrong_current_password_is_refused(app, uniq):
    name = uniq("wrongpw")
    uid = make_user(app, name)
    a, b, j = _sessions(app, name)
    before = password_hash(app, uid)
    for current in ("Wrong-pass-1", ""):
        r = _change_own_password(a, current)
        assert r.status_code == 200
        assert "当前密码不正确" in r.text or "请输入当前密码" in r.text
    assert password_hash(app, uid) == before
    assert signed_in(a) and signed_in(b) and api_signed_in(j)       # nothing ended


def test_guessing_the_current_password_locks_like_logins(app, uniq):
    """A borrowed session cannot be used to guess the password: wrong current passwords
    count as failed logins; once locked, even the right one is refused."""
    name = uniq("guess")
    uid = make_user(app, name)
    a = WebClient(app, name)
    before = password_hash(app, uid)
    for i in range(app.config["LOCKOUT_ATTEMPTS"]):
        assert "当前密码不正确" in _change_own_password(a, f"Guess-pass-{i}").text
    r = _change_own_password(a, PASSWORD)
    assert r.status_code == 200 and "已锁定" in r.text
    assert password_hash(app, uid) == before
    r = app.test_client().post("/api/v1/security/login",
                               json={"username": name, "password": PASSWORD, "provider": "db"})
    assert r.status_code == 401                                    # the account is locked


def test_admin_password_reset_ends_all_sessions(app, uniq):
    name = uniq("adminpw")
    uid = make_user(app, name)
    a, b, j = _sessions(app, name)
    admin = WebClient(app, "admin")
    r = admin.post_form(f"/resetpassword/form?pk={uid}",
                        {"password": NEW_PASSWORD, "conf_password": NEW_PASSWORD})
    assert r.status_code == 302
    assert not signed_in(a) and not signed_in(b) and not api_signed_in(j)
    assert signed_in(admin)
    WebClient(app, name).login(name, NEW_PASSWORD)


def test_deactivation_ends_all_sessions_and_reactivation_does_not_revive_them(app, uniq):
    name = uniq("deact")
    uid = make_user(app, name)
    a, b, j = _sessions(app, name)
    copied = cookie_of(a)
    admin = WebClient(app, "admin")
    with app.app_context():
        role_id = app.appbuilder.sm.find_role("客户经理").id
        db.session.remove()
    form = {"first_name": "测", "last_name": "试", "username": name,
            "email": f"{name}@example.com", "roles": str(role_id)}
    r = admin.post_form(f"/users/edit/{uid}", form)             # "active" unchecked
    assert r.status_code == 302
    assert not signed_in(a) and not signed_in(b) and not api_signed_in(j)
    r = admin.post_form(f"/users/edit/{uid}", dict(form, active="y"))
    assert r.status_code == 302
    assert not signed_in(with_cookie(app, copied)) and not api_signed_in(j)
    WebClient(app, name)                                        # a new login works


def test_editing_other_fields_keeps_sessions(app, uniq):
    name = uniq("keep")
    uid = make_user(app, name)
    a, b, j = _sessions(app, name)
    admin = WebClient(app, "admin")
    with app.app_context():
        role_id = app.appbuilder.sm.find_role("客户经理").id
        db.session.remove()
    r = admin.post_form(f"/users/edit/{uid}", {
        "first_name": "改", "last_name": "名", "username": name, "active": "y",
        "email": f"{name}@example.com", "roles": str(role_id)})
    assert r.status_code == 302
    assert signed_in(a) and signed_in(b) and api_signed_in(j)


@pytest.fixture(scope="module")
def twin(app):
    """A second app instance (another server) on the same database and secret."""
    keys = ("TESTING", "SECRET_KEY", "SQLALCHEMY_DATABASE_URI", "SALES_DATABASE_URI",
            "INSTANCE_DIR", "DOCUMENT_DIR", "WTF_CSRF_ENABLED", "AUTH_RATE_LIMITED",
            "JWT_ACCESS_TOKEN_EXPIRES", "SCHEDULER_ENABLED")
    other = create_app({k: app.config[k] for k in keys})
    yield other
    with other.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


def test_sessions_end_on_every_server(app, twin, uniq):
    name = uniq("twin")
    make_user(app, name)
    here = WebClient(app, name)
    there = with_cookie(twin, cookie_of(here))          # the same browser on server 2
    assert signed_in(there)
    here.get("/logout/")                                # logout on server 1
    assert not signed_in(there)                         # … ends it on server 2

    a = WebClient(app, name)                            # server 1
    b = WebClient(twin, name)                           # server 2
    j = ApiClient(app, name)
    _change_own_password(b, PASSWORD)                   # password changed on server 2
    assert signed_in(b)
    assert not signed_in(a) and not api_signed_in(j)
    assert not signed_in(with_cookie(twin, cookie_of(a)))
