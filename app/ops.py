"""Operations endpoints and plumbing: health, readiness, metrics, request ids, logs.

* ``GET /healthz`` — the process is alive (no database touched). 200 ``{"status": "ok"}``.
* ``GET /readyz`` — this node can serve: the CRM database, the sales database and the
  document store answer. 200 ``{"status": "ready"}``, else 503 with the names of the
  failing parts only (``{"status": "unavailable", "failing": ["crm_db"]}``): no host
  names, versions or error texts.
* ``GET /metrics`` — Prometheus text format (prometheus-flask-exporter): request latency
  histograms by endpoint, job runs and failures, mails sent and failed. Under gunicorn
  set ``PROMETHEUS_MULTIPROC_DIR`` (the deploy/gunicorn.conf.py does) so every worker's
  figures are added up. Only answered to a scraper that talks to the node directly from
  loopback (no ``X-Forwarded-For``: a request through the load balancer is refused) or
  that sends ``Authorization: Bearer <METRICS_TOKEN>``.
* Request ids: a valid incoming ``X-Request-ID`` (nginx passes ``$request_id``) is kept,
  otherwise one is made; it is echoed in the response and put on every log line of the
  request. ``LOG_FORMAT = "json"`` writes one JSON object per line (app logs and one
  ``request`` line per request).

None of these endpoints needs a login, and none of them reads or writes business data.
"""
import hmac
import ipaddress
import json
import logging
import os
import re
import time
import uuid

from flask import Blueprint, current_app, g, has_request_context, jsonify, request
from sqlalchemy import text

from . import metrics

log = logging.getLogger("crm.access")
bp = Blueprint("ops", __name__)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
OPS_PATHS = ("/healthz", "/readyz", "/metrics")


@bp.route("/healthz")
def healthz():
    return jsonify(status="ok")


def _check_db(engine):
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def _check_documents(config):
    """The document directory exists and takes a write (a shared mount that went away
    or turned read-only fails here, not in the middle of an upload)."""
    root = config["DOCUMENT_DIR"]
    os.makedirs(root, exist_ok=True)
    probe = os.path.join(root, f".ready-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    with open(probe, "wb") as fh:
        fh.write(b"ok")
    os.unlink(probe)
    return True


def readiness(app):
    """{part: bool} for the parts a node needs."""
    from .extensions import db

    checks = {}
    for name, probe in (("crm_db", lambda: _check_db(db.engine)),
                        ("sales_db", lambda: _check_db(db.engines["sales"])),
                        ("documents", lambda: _check_documents(app.config))):
        try:
            result = probe()
            checks[name] = result is not False
        except Exception:  # noqa: BLE001 - any failure means "not ready"; never its text
            log.warning("readiness check %s failed", name, exc_info=True)
            checks[name] = False
    return checks


@bp.route("/readyz")
def readyz():
    checks = readiness(current_app)
    failing = [name for name, ok in checks.items() if not ok]
    if failing:
        return jsonify(status="unavailable", failing=failing), 503
    return jsonify(status="ready")


def _metrics_allowed():
    token = current_app.config.get("METRICS_TOKEN")
    auth = request.headers.get("Authorization", "")
    if token and auth.startswith("Bearer ") and hmac.compare_digest(auth[7:], token):
        return True
    if request.headers.get("X-Forwarded-For") or request.headers.get("X-Real-IP"):
        return False  # through the load balancer: not for the public
    try:
        return ipaddress.ip_address(request.environ.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def _guard(view):
    def guarded(*args, **kwargs):
        if not _metrics_allowed():
            return jsonify(message="not found"), 404
        return view(*args, **kwargs)

    guarded.__name__ = view.__name__
    return guarded


def _request_id():
    rid = request.headers.get("X-Request-ID", "")
    return rid if REQUEST_ID.match(rid) else uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


class JsonFormatter(logging.Formatter):
    FIELDS = ("method", "path", "status", "duration_ms", "user_id", "remote")

    def format(self, record):
        data = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "pid": record.process,
        }
        for key in self.FIELDS:
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def _configure_logging(app):
    fmt = (app.config.get("LOG_FORMAT") or "text").lower()
    root = logging.getLogger()
    if getattr(root, "_crm_configured", None) == fmt:
        return
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"))
    for old in [h for h in root.handlers if getattr(h, "_crm", False)]:
        root.removeHandler(old)
    handler._crm = True
    root.addHandler(handler)
    root.setLevel(app.config.get("LOG_LEVEL") or "INFO")
    root._crm_configured = fmt


def init_ops(app):
    """Register the endpoints, request ids, access log and metrics on ``app``."""
    app.register_blueprint(bp)
    from .extensions import csrf

    csrf.exempt(bp)
    if app.config.get("LOG_FORMAT") or app.config.get("ACCESS_LOG"):
        _configure_logging(app)

    @app.before_request
    def _start():
        g.request_id = _request_id()
        g.request_started = time.perf_counter()

    @app.after_request
    def _finish(response):
        rid = g.get("request_id")
        if rid:
            response.headers["X-Request-ID"] = rid
        if app.config.get("ACCESS_LOG") and request.path not in OPS_PATHS:
            user = g.get("user")
            log.info("request", extra={
                "method": request.method, "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - g.get("request_started", time.perf_counter())) * 1000, 1),
                "user_id": getattr(user, "id", None) if user is not None and not getattr(user, "is_anonymous", True) else None,
                "remote": request.remote_addr,
            })
        return response

    if app.config.get("METRICS_ENABLED"):
        metrics.init_app(app, _guard)
