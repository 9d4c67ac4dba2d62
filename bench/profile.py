"""Show the SQL statements (with their time) of one request, and optionally the plan.

    .venv/bin/python bench/profile.py M sqlite /customer/list/ [--user manager1] [--api]
        [--explain]

Prints each statement with its duration in ms, slowest marked; with --explain the
plan of statements slower than 5 ms (EXPLAIN QUERY PLAN / EXPLAIN ANALYZE).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import app_config, target  # noqa: E402
from bench.inproc import login_api, login_html  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("label")
    ap.add_argument("db")
    ap.add_argument("url")
    ap.add_argument("--user", default="manager1")
    ap.add_argument("--api", action="store_true")
    ap.add_argument("--explain", action="store_true")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    t = target(args.label, args.db)
    os.environ["CRM_INSTANCE_DIR"] = t["instance"]
    from sqlalchemy import event

    from app import create_app
    from app.extensions import db

    app = create_app(app_config(t))
    client = app.test_client()
    with app.app_context():
        headers = login_api(client, args.user) if args.api else {}
        if not args.api:
            login_html(client, args.user)
        log = []
        for engine in (db.engines[None], db.engines["sales"]):
            @event.listens_for(engine, "before_cursor_execute")
            def _before(conn, cursor, statement, parameters, context, executemany):
                conn.info["t0"] = time.perf_counter()

            @event.listens_for(engine, "after_cursor_execute")
            def _after(conn, cursor, statement, parameters, context, executemany, _e=engine):
                log.append((time.perf_counter() - conn.info["t0"], statement, parameters, _e))
        db.session.remove()
    for k in range(args.repeat):
        log.clear()
        t0 = time.perf_counter()
        r = client.get(args.url, headers=headers)
        total = time.perf_counter() - t0
    print(f"HTTP {r.status_code}, {total * 1000:.1f} ms, {len(log)} statements, "
          f"SQL total {sum(x[0] for x in log) * 1000:.1f} ms")
    for dt, sql, params, engine in log:
        flat = " ".join(sql.split())
        print(f"{dt * 1000:8.2f} ms  {flat[:260]}  {str(params)[:80]}")
    if args.explain:
        with app.app_context():
            for dt, sql, params, engine in log:
                if dt < 0.005:
                    continue
                print("\n--- plan of", " ".join(sql.split())[:160])
                with engine.connect() as conn:
                    prefix = ("EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite"
                              else "EXPLAIN (ANALYZE, BUFFERS) ")
                    for row in conn.exec_driver_sql(prefix + sql, params).all():
                        print("   ", " | ".join(str(c) for c in row))


if __name__ == "__main__":
    main()
