"""Operations endpoints (issue 24): /healthz, /readyz, /metrics, request ids, JSON logs."""
import io
import json
import logging

import pytest
from sqlalchemy import create_engine

from app import metrics
from app.ops import JsonFormatter, RequestIdFilter
from app.scheduler import scheduled_churn_job
from tests.conftest import build_app, dispose_app


@pytest.fixture(scope="module")
def ops_app(tmp_path_factory):
    app = build_app(tmp_path_factory.mktemp("ops"), "sqlite", ACCESS_LOG=True)
    yield app
    dispose_app(app)


class EngineDown:
    """Point one of the app's engines (None = CRM, "sales") at a port where nothing listens."""

    def __init__(self, app, key):
        self.app, self.key = app, key
        self.engines = app.extensions["sqlalchemy"]._app_engines[app]

    def __enter__(self):
        self.good = self.engines[self.key]
        self.dead = create_engine("postgresql+psycopg2://crm@127.0.0.1:9/crm",
                                  connect_args={"connect_timeout": 2})
        self.engines[self.key] = self.dead

    def __exit__(self, *exc):
        self.engines[self.key] = self.good
        self.dead.dispose()


def test_healthz_needs_no_login_and_no_database(ops_app):
    c = ops_app.test_client()
    with EngineDown(ops_app, None):
        r = c.get("/healthz")
    assert r.status_code == 200 and r.json == {"status": "ok"}


def test_readyz_ready_and_each_failing_part_named_alone(ops_app, tmp_path):
    c = ops_app.test_client()
    r = c.get("/readyz")
    assert r.status_code == 200 and r.json == {"status": "ready"}
    for key, name in ((None, "crm_db"), ("sales", "sales_db")):
        with EngineDown(ops_app, key):
            r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json == {"status": "unavailable", "failing": [name]}  # nothing else revealed
        assert "127.0.0.1" not in r.text and "psycopg2" not in r.text
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    old = ops_app.config["DOCUMENT_DIR"]
    ops_app.config["DOCUMENT_DIR"] = str(blocker / "documents")
    try:
        r = c.get("/readyz")
    finally:
        ops_app.config["DOCUMENT_DIR"] = old
    assert r.status_code == 503 and r.json["failing"] == ["documents"]
    assert c.get("/readyz").status_code == 200  # recovers by itself


def test_metrics_for_direct_scrapers_only(ops_app):
    c = ops_app.test_client()
    c.get("/login/")
    r = c.get("/metrics")
    assert r.status_code == 200
    assert "flask_http_request_duration_seconds_bucket" in r.text
    assert 'endpoint="AuthDBView.login"' in r.text
    # through the load balancer (it sets X-Forwarded-For): not for the public
    assert c.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 404
    assert c.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 404
    ops_app.config["METRICS_TOKEN"] = "s3cret-token"
    try:
        assert c.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"},
                     headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert c.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"},
                     headers={"Authorization": "Bearer wrong"}).status_code == 404
    finally:
        ops_app.config["METRICS_TOKEN"] = None


def test_job_and_mail_counters(ops_app):
    from datetime import date

    def boom():
        raise RuntimeError("simulated failure")

    scheduled_churn_job(ops_app, day=date(2001, 1, 6), runner=boom)
    scheduled_churn_job(ops_app, day=date(2001, 1, 13), runner=lambda: {"opened": [], "recovered": []})
    metrics.mail_sent(False)
    text = ops_app.test_client().get("/metrics").text
    assert 'crm_job_runs_total{job="churn",result="failed"} 1.0' in text
    assert 'crm_job_runs_total{job="churn",result="ok"} 1.0' in text
    assert 'crm_mail_total{result="failed"} 1.0' in text


def test_request_id_echoed_or_made(ops_app):
    c = ops_app.test_client()
    r = c.get("/login/", headers={"X-Request-ID": "nginx-abc123"})
    assert r.headers["X-Request-ID"] == "nginx-abc123"
    for bad in ("has spaces", "x" * 65, "<script>"):
        rid = c.get("/login/", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
        assert rid != bad and len(rid) == 32
    assert c.get("/healthz").headers["X-Request-ID"]


def test_json_log_line_per_request_with_request_id(ops_app):
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("crm.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        ops_app.test_client().get("/login/", headers={"X-Request-ID": "req-42"})
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    line = next(x for x in lines if x["msg"] == "request")
    assert line["request_id"] == "req-42" and line["path"] == "/login/"
    assert line["status"] == 200 and line["method"] == "GET" and line["duration_ms"] >= 0
