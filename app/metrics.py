"""Prometheus metrics (prometheus-flask-exporter + prometheus_client).

Request latency histograms come from the exporter (by endpoint). The product's own
counters are plain functions any layer may call — ``metrics.job_run("churn", ok)``,
``metrics.mail_sent(ok)`` — and do nothing until ``init_app`` turned metrics on, so
workflows and CLI jobs need no Flask import and tests need no registry.

Single process: every app gets its own registry. Under gunicorn set
``PROMETHEUS_MULTIPROC_DIR`` (an empty directory per node): prometheus_client then
keeps each worker's values in files there and ``/metrics`` adds them up; the gunicorn
config marks dead workers (deploy/gunicorn.conf.py).
"""
import os

from prometheus_client import CollectorRegistry, Counter

_counters = {}


def _define(registry):
    kw = {"registry": registry}
    return {
        "job_runs": Counter("crm_job_runs_total", "Scheduled/CLI job runs", ["job", "result"], **kw),
        "mail": Counter("crm_mail_total", "Outgoing mails by result", ["result"], **kw),
    }


def init_app(app, guard):
    multiproc = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc:
        os.makedirs(multiproc, exist_ok=True)
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        exporter = GunicornInternalPrometheusMetrics(
            app, path="/metrics", group_by="endpoint", metrics_decorator=guard,
            excluded_paths=["/metrics", "/healthz", "/readyz", "/static"])
        # values live in the multiprocess files; the collector reads them all
        counters = _counters or _define(None)
    else:
        from prometheus_flask_exporter import PrometheusMetrics

        registry = CollectorRegistry(auto_describe=True)
        exporter = PrometheusMetrics(
            app, path="/metrics", group_by="endpoint", registry=registry, metrics_decorator=guard,
            excluded_paths=["/metrics", "/healthz", "/readyz", "/static"])
        counters = _define(registry)
    _counters.clear()
    _counters.update(counters)
    app.extensions["crm_metrics"] = exporter
    return exporter


def job_run(job, ok=True):
    c = _counters.get("job_runs")
    if c is not None:
        c.labels(job=job, result="ok" if ok else "failed").inc()


def mail_sent(ok=True):
    c = _counters.get("mail")
    if c is not None:
        c.labels(result="sent" if ok else "failed").inc()
