"""WSGI entry for the mixed load with candidate fixes: ``gunicorn bench.patched_app:app``
with ``BENCH_PATCHES=orders_page,export_columns`` (see patches.py)."""
import os

from run import app

from bench import patches

for _name in filter(None, os.environ.get("BENCH_PATCHES", "").split(",")):
    if _name != "indexes":   # indexes are created once by the benchmark process
        patches.apply(_name, app)
