"""Scale L for PostgreSQL, synthesised in SQL from the M data set (issue 23.4 allows it;
the figures say so): ``.venv/bin/python bench/synth_l.py [--copies 10]``.

What it builds (databases ``crm_bench_l`` and ``crm_bench_l_sales``, marker
``bench/data/L/postgresql/seeded.json``; then ``bench.py --scale L --db postgresql``
reuses them):

* copies of the M databases (``CREATE DATABASE … TEMPLATE``);
* customers ×``copies`` (M: 100k → 1M): every M customer again ``copies − 1`` times,
  number ``<number>L<k>``, name ``<name>（<k>）``, same manager, level, region, dates;
* sales orders and their lines ×``copies`` (M: 950k orders, 2.85M lines → 9.5M,
  28.5M) for those customers: same dates, statuses, products, quantities, prices;
* secondary indexes and foreign keys dropped for the load and re-created as the catalog
  had them; ``ANALYZE``; the order rollup is left as M had it (stale on purpose: the
  bench's rollup step, or ``crm rollup refresh``, rebuilds it — that is the L refresh
  figure).

Not multiplied: contacts, activities, opportunities, service tickets, churn warnings,
users. The search triggers of crm_customer are off during the load, so the global
search's 1–2 character piece table does not hold the copies (the trigram indexes are
rebuilt and do): L is for the reports, the rollup, the churn check and the export.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sqlalchemy import create_engine, text  # noqa: E402

from bench.common import pg_url, target  # noqa: E402


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _admin():
    return create_engine(pg_url("postgres"), isolation_level="AUTOCOMMIT")


def clone(src, dst):
    eng = _admin()
    with eng.connect() as conn:
        for name in (src, dst):
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
        conn.execute(text(f'DROP DATABASE IF EXISTS "{dst}"'))
        conn.execute(text(f'CREATE DATABASE "{dst}" TEMPLATE "{src}"'))
    eng.dispose()


def _columns(conn, table):
    return [r[0] for r in conn.execute(text(
        "SELECT column_name FROM information_schema.columns WHERE table_name = :t "
        "ORDER BY ordinal_position"), {"t": table})]


def _secondary(conn, tables):
    """(index DDL, FK DDL) of ``tables`` other than primary keys and unique constraints."""
    idx = [r for r in conn.execute(text(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname = ANY(:t) "
        "AND NOT i.indisprimary AND NOT i.indisunique"), {"t": list(tables)})]
    fks = [r for r in conn.execute(text(
        "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) "
        "FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
        "WHERE t.relname = ANY(:t) AND c.contype = 'f'"), {"t": list(tables)})]
    return idx, fks


def _bare(conn, tables):
    idx, fks = _secondary(conn, tables)
    for table, name, _ in fks:
        conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    for name, _ in idx:
        conn.execute(text(f"DROP INDEX {name}"))
    return idx, fks


def _restore(conn, idx, fks):
    conn.execute(text("SET maintenance_work_mem = '512MB'"))
    for _, ddl in idx:
        conn.execute(text(ddl))
    for table, name, ddl in fks:
        conn.execute(text(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {ddl}'))


def grow_crm(url, copies):
    eng = create_engine(url)
    with eng.begin() as conn:
        cols = [c for c in _columns(conn, "crm_customer") if c != "id"]
        n0 = conn.execute(text("SELECT count(*) FROM crm_customer")).scalar()
        idx, fks = _bare(conn, ["crm_customer"])
        conn.execute(text("ALTER TABLE crm_customer DISABLE TRIGGER USER"))
        sel = ", ".join("c.number || 'L' || k" if c == "number" else
                        "c.name || '（' || k || '）'" if c == "name" else f"c.{c}" for c in cols)
        conn.execute(text(
            f"INSERT INTO crm_customer ({', '.join(cols)}) SELECT {sel} FROM crm_customer c "
            f"CROSS JOIN generate_series(1, {copies - 1}) AS k WHERE c.status <> 'merged'"))
        conn.execute(text("ALTER TABLE crm_customer ENABLE TRIGGER USER"))
        _restore(conn, idx, fks)
        n1 = conn.execute(text("SELECT count(*) FROM crm_customer")).scalar()
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    eng.dispose()
    return n0, n1


def grow_sales(url, copies):
    eng = create_engine(url)
    with eng.begin() as conn:
        o_cols = [c for c in _columns(conn, "sales_order") if c != "id"]
        l_cols = [c for c in _columns(conn, "sales_order_line") if c not in ("id", "order_id")]
        top = conn.execute(text("SELECT max(id) FROM sales_order")).scalar()
        idx, fks = _bare(conn, ["sales_order", "sales_order_line"])
        sel = ", ".join("o.number || 'L' || k" if c == "number" else
                        "o.customer_number || 'L' || k" if c == "customer_number" else
                        f"o.{c}" for c in o_cols)
        conn.execute(text(
            f"INSERT INTO sales_order (id, {', '.join(o_cols)}) SELECT o.id + k * {top}, {sel} "
            f"FROM sales_order o CROSS JOIN generate_series(1, {copies - 1}) AS k"))
        log("  orders done")
        conn.execute(text(
            f"INSERT INTO sales_order_line (order_id, {', '.join(l_cols)}) "
            f"SELECT l.order_id + k * {top}, {', '.join('l.' + c for c in l_cols)} "
            f"FROM sales_order_line l CROSS JOIN generate_series(1, {copies - 1}) AS k "
            f"WHERE l.order_id <= {top}"))
        log("  lines done")
        _restore(conn, idx, fks)
        for seq_table in ("sales_order", "sales_order_line"):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{seq_table}', 'id'), "
                              f"(SELECT max(id) FROM {seq_table}))"))
        counts = (conn.execute(text("SELECT count(*) FROM sales_order")).scalar(),
                  conn.execute(text("SELECT count(*) FROM sales_order_line")).scalar())
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    eng.dispose()
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=10)
    args = ap.parse_args()
    m, l_ = target("M", "postgresql"), target("L", "postgresql")
    t0 = time.perf_counter()
    for src, dst in zip(m["pg_names"], l_["pg_names"]):
        log(f"clone {src} → {dst}")
        clone(src, dst)
    log("customers")
    n0, n1 = grow_crm(l_["crm_uri"], args.copies)
    log(f"  {n0:,} → {n1:,} customers")
    log("orders and lines")
    orders, lines = grow_sales(l_["sales_uri"], args.copies)
    seconds = time.perf_counter() - t0
    log(f"  {orders:,} orders, {lines:,} lines; {seconds:.0f} s")
    os.makedirs(l_["instance"], exist_ok=True)
    with open(l_["marker"], "w") as fh:
        json.dump({"scale": 1_000_000, "seed_seconds": seconds, "built": time.strftime("%Y-%m-%d %H:%M"),
                   "synthesised_from": "M", "copies": args.copies, "customers": n1,
                   "orders": orders, "lines": lines}, fh)


if __name__ == "__main__":
    main()
