"""Login throttling holds under parallel attack and across processes (issue 17 item 3).

* Failed logins are counted by one atomic UPDATE … RETURNING: 8 parallel wrong logins
  (real threads, each its own connection) → fail_login_count 8, the account locked, and
  at most LOCKOUT_ATTEMPTS passwords actually checked. SQLite and PostgreSQL.
* The rate-limit counters live in Redis when configured: two app instances (two
  workers/servers) share one limit. Redis on 127.0.0.1:6379, db 11 (the test skips only
  when no Redis answers).
* Redis configured but down: logins still work (no 5xx), the limit is kept in memory
  per process meanwhile.
"""
import socket
import threading
import uuid

import pytest

from app import create_app
from app.extensions import db
from app.sessions import resolve_ratelimit_storage

from .conftest import PASSWORD, WebClient, build_app, csrf_from, dispose_app

REDIS_URL = "redis://127.0.0.1:6379/11"


def make_user(app, name):
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user(name, "测", "试", f"{name}@example.com", [sm.find_role("客户经理")],
                    password=PASSWORD)
        uid = sm.find_user(username=name).id
        db.session.remove()
    return uid


def fail_count(app, uid):
    with app.app_context():
        from flask_appbuilder.security.sqla.models import User

        value = db.session.get(User, uid).fail_login_count
        db.session.remove()
    return value


def api_login(app, name, password):
    return app.test_client().post("/api/v1/security/login", json={
        "username": name, "password": password, "provider": "db"})


def run_parallel(n, fn):
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def worker(i):
        try:
            barrier.wait(timeout=30)
            results[i] = fn(i)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return results


def test_parallel_wrong_logins_are_all_counted_and_lock_the_account(app, uniq, monkeypatch):
    import werkzeug.security

    name = uniq("par")
    uid = make_user(app, name)
    limit = app.config["LOCKOUT_ATTEMPTS"]
    checks, lock = [], threading.Lock()
    real_check = werkzeug.security.check_password_hash

    def counting_check(pwhash, password):
        with lock:
            checks.append(password)
        return real_check(pwhash, password)

    monkeypatch.setattr(werkzeug.security, "check_password_hash", counting_check)
    codes = run_parallel(8, lambda i: api_login(app, name, f"wrong-pass-{i}").status_code)
    monkeypatch.undo()
    assert codes == [401] * 8
    assert fail_count(app, uid) == 8                 # no lost update
    # an attacker got at most LOCKOUT_ATTEMPTS password checks, however parallel
    assert len([p for p in checks if p.startswith("wrong-pass-")]) <= limit
    # locked: the right password is refused now
    assert api_login(app, name, PASSWORD).status_code == 401
    c = WebClient(app)
    r = c.client.post("/login/", data={"csrf_token": csrf_from(c.get("/login/").text),
                                       "username": name, "password": PASSWORD},
                      follow_redirects=True)
    assert "账号已被锁定" in r.text


def test_parallel_right_logins_are_counted_and_never_lock(app, uniq):
    """Up to LOCKOUT_ATTEMPTS simultaneous logins of one account all succeed; more
    than that at the same instant may see the in-flight attempts as a lock and be
    refused (401, try again) — but the account is not left locked."""
    limit = app.config["LOCKOUT_ATTEMPTS"]
    name = uniq("parok")
    uid = make_user(app, name)
    codes = run_parallel(limit, lambda i: api_login(app, name, PASSWORD).status_code)
    assert codes == [200] * limit
    with app.app_context():
        from flask_appbuilder.security.sqla.models import User

        u = db.session.get(User, uid)
        assert (u.login_count, u.fail_login_count) == (limit, 0)
        db.session.remove()
    codes = run_parallel(8, lambda i: api_login(app, name, PASSWORD).status_code)
    assert codes.count(200) >= limit and set(codes) <= {200, 401}
    assert api_login(app, name, PASSWORD).status_code == 200
    assert fail_count(app, uid) == 0


def test_failures_below_the_limit_reset_on_success(app, uniq):
    name = uniq("reset")
    uid = make_user(app, name)
    for _ in range(app.config["LOCKOUT_ATTEMPTS"] - 1):
        assert api_login(app, name, "wrong-pass-1").status_code == 401
    assert api_login(app, name, PASSWORD).status_code == 200
    assert fail_count(app, uid) == 0


# ---- rate-limit storage -----------------------------------------------------------------

def redis_or_skip():
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
        client.ping()
        return client
    except Exception as e:
        pytest.skip(f"Redis at {REDIS_URL} unreachable: {e}")


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    app = build_app(tmp_path_factory.mktemp("limits"), "sqlite")
    yield app
    dispose_app(app)


def twin(base, **overrides):
    """Another app instance (worker/server) on the same database."""
    keys = ("TESTING", "SECRET_KEY", "SQLALCHEMY_DATABASE_URI", "SALES_DATABASE_URI",
            "INSTANCE_DIR", "DOCUMENT_DIR", "SCHEDULER_ENABLED")
    config = {k: base.config[k] for k in keys}
    config.update(AUTH_RATE_LIMITED=True, AUTH_RATE_LIMIT="3 per minute", **overrides)
    return create_app(config)


def dispose(app):
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


def test_rate_limit_is_shared_by_app_instances_through_redis(base):
    client = redis_or_skip()
    prefix = f"crmtest-{uuid.uuid4().hex[:8]}"
    one = twin(base, RATELIMIT_STORAGE_URI=REDIS_URL, RATELIMIT_KEY_PREFIX=prefix)
    two = twin(base, RATELIMIT_STORAGE_URI=REDIS_URL, RATELIMIT_KEY_PREFIX=prefix)
    try:
        codes = [api_login(app, "exec", "wrong-pass-1").status_code
                 for app in (one, two, one, two)]
        assert codes == [401, 401, 401, 429]           # 3 per minute, across both
        # the form login too (a fresh client each time: a new browser, same address)
        c = WebClient(two)
        token = csrf_from(c.get("/login/").text)
        r = c.client.post("/login/", data={"csrf_token": token, "username": "exec",
                                           "password": "wrong-pass-1"})
        assert r.status_code in (200, 302)
        assert any(b"SecurityApi.login" in k for k in client.scan_iter(f"*/{prefix}/*"))
        # separate memory:// instances do not share (what the warning says)
        m1, m2 = twin(base), twin(base)
        try:
            codes = [api_login(app, "exec", "wrong-pass-1").status_code
                     for app in (m1, m2, m1, m2)]
            assert 429 not in codes
        finally:
            dispose(m1)
            dispose(m2)
    finally:
        for key in client.scan_iter(f"*/{prefix}/*"):
            client.delete(key)
        dispose(one)
        dispose(two)
        # the lockout must not leak into other tests of this module
        with base.app_context():
            base.appbuilder.sm.unlock_user(base.appbuilder.sm.find_user(username="exec"))
            db.session.remove()


def test_redis_down_logins_still_work_and_are_limited_in_memory(base):
    down = twin(base, RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{closed_port()}/11")
    try:
        r = api_login(down, "manager1", PASSWORD)
        assert r.status_code == 200 and r.json["access_token"]
        c = WebClient(down)
        page = c.get("/login/")
        r = c.client.post("/login/", data={"csrf_token": csrf_from(page.text),
                                           "username": "manager1", "password": PASSWORD})
        assert r.status_code == 302                  # signed in, no 5xx
        assert c.get("/users/userinfo/").status_code == 200
        codes = [api_login(down, "manager2", "wrong-pass-1").status_code for _ in range(4)]
        assert all(code < 500 for code in codes)
        assert 429 in codes                          # still limited (per process) meanwhile
    finally:
        dispose(down)
        with base.app_context():
            base.appbuilder.sm.unlock_user(base.appbuilder.sm.find_user(username="manager2"))
            db.session.remove()


def test_auto_storage_uses_redis_when_it_answers_else_memory():
    redis_or_skip()
    cfg = {"RATELIMIT_STORAGE_URI": "auto", "RATELIMIT_REDIS_URL": REDIS_URL, "TESTING": True}
    assert resolve_ratelimit_storage(cfg) == REDIS_URL
    assert cfg["RATELIMIT_STORAGE_OPTIONS"]["socket_timeout"] == 0.5
    cfg = {"RATELIMIT_STORAGE_URI": "auto", "TESTING": True,
           "RATELIMIT_REDIS_URL": f"redis://127.0.0.1:{closed_port()}/11"}
    assert resolve_ratelimit_storage(cfg) == "memory://"


class RedisProxy:
    """A TCP relay to the real Redis that can be cut: Redis "going away" mid-run."""

    def __init__(self, target=("127.0.0.1", 6379)):
        self.target, self.conns, self.alive = target, [], True
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.alive:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        self.alive = False
        self.server.close()
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass


def test_redis_going_away_mid_run_logins_still_work(base):
    client = redis_or_skip()
    proxy = RedisProxy()
    prefix = f"crmtest-{uuid.uuid4().hex[:8]}"
    app = twin(base, RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{proxy.port}/11",
               RATELIMIT_KEY_PREFIX=prefix)
    try:
        assert [api_login(app, "supervisor", "wrong-pass-1").status_code
                for _ in range(2)] == [401, 401]
        assert any(b"SecurityApi.login" in k for k in client.scan_iter(f"*/{prefix}/*"))
        proxy.cut()                                   # Redis is gone from here on
        r = api_login(app, "supervisor", PASSWORD)
        assert r.status_code == 200, r.text           # no 5xx: the login works
        codes = [api_login(app, "supervisor", "wrong-pass-1").status_code for _ in range(4)]
        assert all(code < 500 for code in codes) and 429 in codes   # limited in memory
    finally:
        proxy.cut()
        for key in client.scan_iter(f"*/{prefix}/*"):
            client.delete(key)
        dispose(app)
        with base.app_context():
            base.appbuilder.sm.unlock_user(base.appbuilder.sm.find_user(username="supervisor"))
            db.session.remove()
