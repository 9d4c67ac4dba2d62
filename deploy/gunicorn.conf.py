"""gunicorn settings of one CRM app node (the cluster test starts its nodes with this file).

Everything node-specific comes from the environment (see deploy/node.env.example):
  CRM_BIND      address:port this node listens on (default 127.0.0.1:8001)
  CRM_WORKERS   worker processes (default 2 × cores, at most 8)
  PROMETHEUS_MULTIPROC_DIR  an empty directory of this node's own: the workers' metrics
                are kept there and added up by /metrics
Process workers, never threads: FAB's list filters are not thread-safe.
"""
import multiprocessing
import os
import shutil

bind = os.environ.get("CRM_BIND", "127.0.0.1:8001")
workers = int(os.environ.get("CRM_WORKERS") or min(8, 2 * multiprocessing.cpu_count()))
worker_class = "sync"
timeout = int(os.environ.get("CRM_WORKER_TIMEOUT", "120"))
graceful_timeout = 20
keepalive = 5
# The app accepts URLs up to 8000 characters (long list filters) and answers longer ones
# itself, in Chinese (414); gunicorn's own limit (an English page) sits just above that.
limit_request_line = 8190     # gunicorn's maximum; the app answers URLs over MAX_URL_LENGTH (8000) in Chinese
limit_request_field_size = 16384
accesslog = os.environ.get("CRM_GUNICORN_ACCESSLOG", "-")
# nginx passes its $request_id as X-Request-ID: it appears in gunicorn's access log too
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}i)s'
errorlog = "-"
forwarded_allow_ips = "127.0.0.1"


def on_starting(server):
    d = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if d:  # stale files of a killed run would add old figures to the new ones
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d, exist_ok=True)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        GunicornInternalPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)
