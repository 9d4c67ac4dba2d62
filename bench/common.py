"""Shared helpers of the benchmark: scales, data sets, environments, statistics.

Layout of one data set (never the default instance/):

    bench/data/<scale>/sqlite/   instance dir + crm.db + sales.db (+ seeded.json)
    bench/data/<scale>/pg/       instance dir (+ seeded.json); the data lives in the
                                 PostgreSQL databases crm_bench_<scale> (CRM) and
                                 crm_bench_<scale>_sales (the sales system) on
                                 CRM_BENCH_PG_URL
"""
import json
import math
import os
import statistics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.path.join(ROOT, "bench")
DATA_DIR = os.path.join(BENCH_DIR, "data")
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
FLASK = os.path.join(ROOT, ".venv", "bin", "flask")
GUNICORN = os.path.join(ROOT, ".venv", "bin", "gunicorn")
PG_URL = os.environ.get("CRM_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PASSWORD = "Bench-pass-123"
SCALES = {"S": 10_000, "M": 100_000, "L": 1_000_000}


def parse_scale(text):
    """'M' → ('M', 100000); '5000' → ('5000', 5000)."""
    text = str(text).strip()
    if text.upper() in SCALES:
        return text.upper(), SCALES[text.upper()]
    n = int(text)
    if n < 10:
        raise ValueError("scale must be at least 10 customers")
    return str(n), n


def pg_url(dbname):
    return PG_URL.rsplit("/", 1)[0] + "/" + dbname


def target(label, db):
    """Where the data set of ``label`` on ``db`` lives: dict of paths and URIs."""
    inst = os.path.join(DATA_DIR, label, db)
    if db == "sqlite":
        crm = "sqlite:///" + os.path.join(inst, "crm.db")
        sales = "sqlite:///" + os.path.join(inst, "sales.db")
        names = None
    elif db == "postgresql":
        base = f"crm_bench_{label.lower()}"
        names = (base, base + "_sales")
        crm, sales = pg_url(names[0]), pg_url(names[1])
    else:
        raise ValueError(f"unknown database {db!r} (sqlite, postgresql)")
    return {"db": db, "label": label, "instance": inst, "crm_uri": crm, "sales_uri": sales,
            "pg_names": names, "marker": os.path.join(inst, "seeded.json")}


def app_env(t, base=None):
    """Environment for a subprocess (flask CLI, gunicorn, probes) on data set ``t``."""
    env = dict(base if base is not None else os.environ)
    env.update({
        "CRM_DEMO_MODE": "true",
        "CRM_INSTANCE_DIR": t["instance"],
        "CRM_SQLALCHEMY_DATABASE_URI": t["crm_uri"],
        "CRM_SALES_DATABASE_URI": t["sales_uri"],
        "CRM_SCHEDULER_ENABLED": "false",
        "PYTHONPATH": ROOT,
    })
    return env


def app_config(t):
    """create_app() overrides for an in-process app on data set ``t``."""
    return {
        "DEMO_MODE": True,
        "INSTANCE_DIR": t["instance"],
        "SQLALCHEMY_DATABASE_URI": t["crm_uri"],
        "SALES_DATABASE_URI": t["sales_uri"],
        "DOCUMENT_DIR": os.path.join(t["instance"], "documents"),
        "SCHEDULER_ENABLED": False,
        "AUTH_RATE_LIMITED": False,   # the in-process client logs in a few times
    }


def read_marker(t):
    try:
        with open(t["marker"]) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


# ---- statistics -------------------------------------------------------------------

def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def summary(values):
    if not values:
        return None
    return {"n": len(values), "median": statistics.median(values), "p95": pct(values, 95),
            "p99": pct(values, 99), "min": min(values), "max": max(values)}
