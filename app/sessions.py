"""Sessions, CSRF on the REST API, and the shared login rate-limit storage.

See docs/security.md (会话、接口的 CSRF、登录限速) for what is guaranteed and which
test proves it.

* **Server-side login sessions** (``crm_login_session``): every sign-in gets a random
  token; the browser keeps it in the signed session cookie, an API client in the
  ``sid`` claim of its JWTs. A request is signed in only while the row of its token
  exists. Logout deletes this session's row; a password change or a deactivation
  deletes every row of the user (an own password change gives the session that made
  it a fresh token, so it stays signed in while a copy of its old cookie does not).
  Rows are in the database: every worker of every app server agrees at once.
* **CSRF on /api/**: a write (POST/PUT/PATCH/DELETE) authenticated by the session
  cookie must carry Flask-WTF's token in ``X-CSRFToken`` (or a ``csrf_token`` form
  field), else 400 + Chinese JSON and nothing runs. A request with
  ``Authorization: Bearer …`` is a JWT call: the cookie is ignored for it and no token
  is needed (a cross-site page cannot set that header).
* **Rate-limit storage**: ``RATELIMIT_STORAGE_URI = "auto"`` uses Redis
  (``RATELIMIT_REDIS_URL``) when it answers at start-up, else ``memory://`` (limits
  per process, logged as a warning).
"""
import hashlib
import logging
import secrets
from datetime import datetime, timedelta

from flask import current_app, g, has_request_context, jsonify, request
from flask import session as cookie_session
from sqlalchemy import delete, event, insert, inspect, select
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

SESSION_KEY = "_crm_sid"          # the token, in the signed Flask session cookie
JWT_CLAIM = "sid"                 # the token, in the API login's JWTs
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# API endpoints that are not cookie-authenticated writes: the JWT login itself
# (answers a token in JSON, sets no cookie) and the refresh (needs a refresh JWT).
CSRF_FREE_ENDPOINTS = {"SecurityApi.login", "SecurityApi.refresh"}


# ---- login sessions ------------------------------------------------------------------

def _hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def max_age():
    """How long a sign-in lasts at most (Flask's cookie lifetime, 31 days by default)."""
    age = current_app.config.get("PERMANENT_SESSION_LIFETIME") or timedelta(days=31)
    return age if isinstance(age, timedelta) else timedelta(seconds=int(age))


def start(conn, user_id, kind):
    """A new session row for ``user_id``; returns its token. Expired rows of the
    user are removed on the way (the table holds live sessions only)."""
    from .models import LoginSession

    now = datetime.now()
    token = secrets.token_urlsafe(32)
    conn.execute(delete(LoginSession).where(LoginSession.user_id == user_id,
                                            LoginSession.created_on < now - max_age()))
    conn.execute(insert(LoginSession).values(token_hash=_hash(token), user_id=user_id,
                                             kind=kind, created_on=now))
    return token


def is_live(db_session, user_id, token):
    from .models import LoginSession

    if not token or not isinstance(token, str):
        return False
    return db_session.execute(
        select(LoginSession.id).where(LoginSession.token_hash == _hash(token),
                                      LoginSession.user_id == user_id,
                                      LoginSession.created_on > datetime.now() - max_age())
    ).first() is not None


def end(conn, token):
    from .models import LoginSession

    if token:
        conn.execute(delete(LoginSession).where(LoginSession.token_hash == _hash(token)))


def end_all(conn, user_id):
    from .models import LoginSession

    conn.execute(delete(LoginSession).where(LoginSession.user_id == user_id))


def _on_login(app, user, **_):
    """Flask-Login signed ``user`` in (the form login): a new session row."""
    from .extensions import db

    cookie_session[SESSION_KEY] = start(db.session, user.id, "web")
    db.session.commit()


def _on_logout(app, user, **_):
    """Logout ends this session on the server, not only in this browser."""
    from .extensions import db

    token = cookie_session.pop(SESSION_KEY, None)
    if token:
        end(db.session, token)
        db.session.commit()


def jwt_claims(identity):
    """``sid`` for the JWTs of an API login (one session row per login, shared by its
    access and refresh token); a refreshed access token keeps its refresh token's."""
    if not has_request_context():
        return {}
    from flask_jwt_extended import get_jwt

    try:
        current = get_jwt()
    except RuntimeError:           # no JWT in this request: the login itself
        current = None
    if current and current.get(JWT_CLAIM):
        return {JWT_CLAIM: current[JWT_CLAIM]}
    token = g.get("_crm_api_sid")
    if token is None:
        from .extensions import db

        token = start(db.session, int(identity), "api")
        db.session.commit()
        g._crm_api_sid = token
    return {JWT_CLAIM: token}


def _credentials_changed(session, _ctx):
    """A password change or a deactivation ends every session of the user (any path:
    FAB's reset-password forms, the user edit form, CLI). The session that changed its
    own password is given a fresh token and stays signed in."""
    from flask_appbuilder.security.sqla.models import User

    changed = []
    for obj in list(session.dirty):
        if not isinstance(obj, User) or obj.id is None:
            continue
        state = inspect(obj)
        password = state.attrs.password.history.has_changes()
        deactivated = state.attrs.active.history.has_changes() and not obj.active
        if password or deactivated:
            changed.append((obj.id, deactivated))
    if not changed:
        return
    conn = session.connection()
    for user_id, deactivated in changed:
        end_all(conn, user_id)
        if deactivated or not has_request_context():
            continue
        if (cookie_session.get("_user_id") == str(user_id)
                and cookie_session.get(SESSION_KEY) and not _bearer()):
            cookie_session[SESSION_KEY] = start(conn, user_id, "web")


# ---- CSRF on the REST API ------------------------------------------------------------

def _bearer():
    return request.headers.get("Authorization", "").lower().startswith("bearer ")


def _api_guard():
    if not request.path.startswith("/api/"):
        return None
    if _bearer():
        # a JWT call: the browser session (if any) plays no part in it
        g._login_user = current_app.login_manager.anonymous_user()
        return None
    if request.method not in WRITE_METHODS or request.endpoint in CSRF_FREE_ENDPOINTS:
        return None
    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return None
    from flask_login import current_user

    if not current_user.is_authenticated:
        return None                # no cookie session: FAB answers 401
    from flask_babel import gettext as _
    from flask_wtf.csrf import CSRFError

    from .extensions import csrf

    try:
        csrf.protect()
    except CSRFError:
        response = jsonify(message=_(
            "缺少或无效的 CSRF 令牌：用浏览器登录状态调用接口做修改时，请在请求头 X-CSRFToken 中带上"
            "页面提供的令牌（刷新页面后重试）；程序调用请改用 JWT（Authorization: Bearer …）。"))
        response.status_code = 400
        return response
    return None


# ---- rate-limit storage ----------------------------------------------------------------

def resolve_ratelimit_storage(cfg):
    """``RATELIMIT_STORAGE_URI = "auto"``: Redis (``RATELIMIT_REDIS_URL``) when it answers
    now, else ``memory://`` with a warning. Redis URIs get short socket timeouts, so a
    Redis that goes away later costs a request at most a moment before Flask-Limiter's
    in-memory fallback takes over."""
    uri = cfg.get("RATELIMIT_STORAGE_URI") or "memory://"
    if uri == "auto":
        url = cfg.get("RATELIMIT_REDIS_URL") or "redis://127.0.0.1:6379/0"
        try:
            import redis

            redis.Redis.from_url(url, socket_connect_timeout=0.3, socket_timeout=0.3).ping()
            uri = url
        except Exception as e:      # not installed, refused, timed out
            log.warning("Redis (%s) 不可用（%s）：登录限速改用 memory://，每个进程单独计数。", url, e)
            uri = "memory://"
    cfg["RATELIMIT_STORAGE_URI"] = uri
    if uri.startswith(("redis://", "rediss://", "redis+")):
        options = dict(cfg.get("RATELIMIT_STORAGE_OPTIONS") or {})
        options.setdefault("socket_connect_timeout", 0.5)
        options.setdefault("socket_timeout", 0.5)
        cfg["RATELIMIT_STORAGE_OPTIONS"] = options
    return uri


_warned = []


def _warn_memory_storage():
    """Once per serving process (not in CLI commands, whose output is read by scripts)."""
    if _warned:
        return
    _warned.append(True)
    cfg = current_app.config
    if str(cfg.get("RATELIMIT_STORAGE_URI", "")).startswith("memory") and not cfg.get("TESTING"):
        log.warning("RATELIMIT_STORAGE_URI=memory://：登录限速在每个进程内单独计数"
                    "（gunicorn -w 4 时实际上限为 4 倍）；多进程/多服务器请配置 Redis。")


# ---- wiring ----------------------------------------------------------------------------

def install(app):
    """Called by create_app once the AppBuilder exists."""
    from flask_login import user_logged_in, user_logged_out

    user_logged_in.connect(_on_login, app)
    user_logged_out.connect(_on_logout, app)
    app.before_request(_api_guard)
    app.before_request(_warn_memory_storage)
    if not event.contains(Session, "after_flush", _credentials_changed):
        event.listen(Session, "after_flush", _credentials_changed)
