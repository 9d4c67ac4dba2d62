"""Step 6: CSV export of all customers in a fresh process — time and peak memory growth.

    python bench/export_probe.py <label> <db>     → one JSON line on stdout

The app is created, manager1 logs in and a small export warms up imports and
caches; then ``ru_maxrss`` is read, the full ``/customer/export/csv/`` is streamed
(chunks counted, never kept) and ``ru_maxrss`` is read again: growth = the peak
resident memory the full export added.
"""
import gc
import json
import os
import resource
import sys
import time
from urllib.parse import quote

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import app_config, target  # noqa: E402
from bench.inproc import login_html  # noqa: E402


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def stream(client, url):
    resp = client.get(url, buffered=False)
    if resp.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {resp.status_code}")
    size = lines = 0
    for chunk in resp.response:
        size += len(chunk)
        lines += chunk.count(b"\n")
    resp.close()
    return size, lines


def main():
    label, db = sys.argv[1], sys.argv[2]
    t = target(label, db)
    os.environ["CRM_INSTANCE_DIR"] = t["instance"]
    from app import create_app

    app = create_app(app_config(t))
    client = app.test_client()
    login_html(client, "manager1")
    stream(client, "/customer/export/csv/?_flt_3_name=" + quote("不存在的客户"))
    gc.collect()
    before = rss_mb()
    t0 = time.perf_counter()
    size, lines = stream(client, "/customer/export/csv/")
    elapsed = time.perf_counter() - t0
    after = rss_mb()
    print(json.dumps({"seconds": elapsed, "bytes": size, "rows": lines - 1,
                      "rss_before_mb": before, "rss_after_mb": after,
                      "growth_mb": after - before}))


if __name__ == "__main__":
    main()
