"""订单汇总 (order rollup): order totals per customer and month, and the last order
date per customer, copied from the read-only sales system into the CRM database.

What is counted: orders with status 5 (已发货) or 6 (已回款); amount = Σ 数量 × 单价
of their lines. Rows are keyed by the customer number the order carries; readers map
a merged customer's old numbers (``CustomerNumberAlias``) to the surviving customer.

**Refresh** (``refresh``; the scheduler hourly, ``crm rollup refresh``, the 刷新 button):

1. one ``GROUP BY customer_number, month`` over the sales system — SQLite: the sales
   file is ATTACHed read-only to the CRM connection and aggregated straight into the
   staging table by one ``INSERT … SELECT``; PostgreSQL: ``COPY (SELECT …) TO STDOUT``
   on the sales server piped into ``COPY … FROM STDIN`` on the CRM server; any other
   pair streams the rows in chunks. The sales system is only ever read;
2. the staging tables ``crm_order_month_next`` / ``crm_order_last_next`` are built and
   committed on their own connection, the live tables untouched;
3. one short transaction drops the live tables, renames the staging ones in their
   place and writes ``crm_rollup_state``. A refresh killed before step 3 leaves the
   previous rollup in place (the next refresh drops the half-built staging tables);
   DDL is transactional on both databases, so a kill inside step 3 does too.

The refresh manages its own transactions (that is its crash-safety contract); it never
touches the caller's session transaction. Two refreshes never run at once
(``locks.run_lock(engine, job="rollup")`` around the callers).

**Reading**: ``order_totals`` (reports), ``last_order_dates`` (churn check),
``refreshed_at`` (the reports' 数据更新于 …), ``status``.
"""
import csv
import io
import logging
import time
from contextlib import contextmanager
from datetime import date, datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import Column, Date, MetaData, String, Table, func, literal, select, text

from ..models import Customer, CustomerNumberAlias, Order, OrderLine
from ..models.rollup import OrderCustomer, OrderLast, OrderMonth, RollupState
from ..models.sales import COUNTED_ORDER_STATUSES
from .errors import Conflict, Forbidden

log = logging.getLogger(__name__)

JOB = "rollup"
MONTH_NEXT = "crm_order_month_next"
DAY_NEXT = "crm_order_day_next"       # staging only: per number and day, dropped after the swap
LAST_NEXT = "crm_order_last_next"
CUSTOMER_NEXT = "crm_order_customer_next"
# PostgreSQL only: per customer, its days with orders and the running total of its cents
# up to each of them (two arrays) — any date range of a customer is the difference of
# two running totals, found by binary search (``width_bucket``). Derived from the day
# rows of crm_order_customer and written with them (rebuild, incremental, merge); read
# by 客户贡献分析 for a range that is not one period (at L, a range of several grains
# summed ~1.4M period rows per customer range before the page could be cut)
RUNNING = "crm_order_running"
RUNNING_NEXT = "crm_order_running_next"
# a merge and the swap of a refresh both fold numbers into customers: on PostgreSQL they
# take this transaction lock first (SQLite has one writer at a time anyway)
FOLD_LOCK_KEY = 0x43524D46  # "CRMF"
CHUNK = 20000
STATUSES = ", ".join(str(s) for s in COUNTED_ORDER_STATUSES)


# ---- who may ------------------------------------------------------------------------

def can_refresh(actor):
    """刷新汇总: 系统管理员 (the permission ``can_refresh`` · ``Rollup`` decides the
    function; this is the rule behind it)."""
    return actor.is_admin


def require_refresh(actor):
    if not can_refresh(actor):
        raise Forbidden(_l("只有系统管理员可以刷新订单汇总。"))


# ---- engines ------------------------------------------------------------------------

def _crm_engine(session):
    return session.get_bind(mapper=OrderMonth.__mapper__)


def _sales_engine(session):
    return session.get_bind(mapper=Order.__mapper__)


def _month_sql(dialect, col):
    if dialect == "postgresql":
        return f"CAST(date_trunc('month', {col}) AS date)"
    return f"substr({col}, 1, 7) || '-01'"


def _aggregate_sql(dialect, schema="", by_day=False):
    """Per customer number and month (``by_day``: and day): amount, orders, last date
    — counted orders only. Per-order subtotals first, so each order is counted once.
    The refresh reads the days (one scan of the sales system; the months are summed
    from them in the CRM database)."""
    p = f"{schema}." if schema else ""
    key = "o.date" if by_day else _month_sql(dialect, "o.date")
    cols = ("o.customer_number, o.date AS day, SUM(t.amount) AS amount, COUNT(*) AS orders"
            if by_day else
            f"o.customer_number, {key} AS month, SUM(t.amount) AS amount, COUNT(*) AS orders, "
            f"MAX(o.date) AS last_date")
    return (
        f"SELECT {cols} "
        f"FROM {p}sales_order o JOIN ("
        f"SELECT order_id, SUM(quantity * price) AS amount FROM {p}sales_order_line "
        f"GROUP BY order_id) t ON t.order_id = o.id "
        f"WHERE o.status IN ({STATUSES}) "
        f"GROUP BY o.customer_number, {key}")


def raw_aggregate_sql(dialect):
    """The aggregate the refresh is measured against (bench): the per-customer-number
    and month GROUP BY on the sales database, rows fetched (the refresh reads the same
    orders, grouped by day)."""
    return _aggregate_sql(dialect)


# SQLite: the day and month tables are their key's b-tree (no rowid table beside the key's
# index): the refresh's comparison reads a day row with one b-tree search instead of two
# (index, then table), and the rows arrive in key order anyway
CLUSTERED = " WITHOUT ROWID"


def _create_next(conn, dialect):
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {DAY_NEXT}")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {MONTH_NEXT}")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {LAST_NEXT}")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {CUSTOMER_NEXT}")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {RUNNING_NEXT}")
    # the live tables' shape (migration 0009); keys added after the load (faster)
    conn.exec_driver_sql(
        f"CREATE TABLE {MONTH_NEXT} (number VARCHAR(32) NOT NULL, month DATE NOT NULL, "
        f"amount NUMERIC(16, 2) NOT NULL, orders INTEGER NOT NULL, last_date DATE NOT NULL"
        + (")" if dialect == "postgresql" else ", PRIMARY KEY (number, month))" + CLUSTERED))
    conn.exec_driver_sql(
        f"CREATE TABLE {LAST_NEXT} (number VARCHAR(32) NOT NULL, last_date DATE NOT NULL, "
        f"PRIMARY KEY (number))")
    # the sales aggregate per number and day (crm_order_day's shape); PostgreSQL: never
    # logged (a crash empties it: the next refresh then rebuilds all), the key added
    # after the load; SQLite: declared (the rows arrive in its order)
    conn.exec_driver_sql(
        ("CREATE UNLOGGED TABLE " if dialect == "postgresql" else "CREATE TABLE ")
        + f"{DAY_NEXT} (number VARCHAR(32) NOT NULL, day DATE NOT NULL, "
        f"amount NUMERIC(16, 2) NOT NULL, orders INTEGER NOT NULL"
        + (")" if dialect == "postgresql" else ", PRIMARY KEY (number, day))" + CLUSTERED))


def _ym_sql(dialect, col):
    """The month ``col`` (a first day) as the integer YYYYMM."""
    if dialect == "postgresql":
        return f"CAST(EXTRACT(YEAR FROM {col}) * 100 + EXTRACT(MONTH FROM {col}) AS INTEGER)"
    return f"CAST(substr({col}, 1, 4) || substr({col}, 6, 2) AS INTEGER)"


def _ymd_sql(dialect, col):
    """The day ``col`` as the integer YYYYMMDD."""
    if dialect == "postgresql":
        return (f"CAST(EXTRACT(YEAR FROM {col}) * 10000 + EXTRACT(MONTH FROM {col}) * 100 "
                f"+ EXTRACT(DAY FROM {col}) AS INTEGER)")
    return f"CAST(substr({col}, 1, 4) || substr({col}, 6, 2) || substr({col}, 9, 2) AS INTEGER)"


# the periods of crm_order_customer: 0 all time, YYYY a year, YYYYQ a quarter, YYYYMM a
# month, YYYYMMDD a day — each grain a range of integers
QUARTERS = "period >= 10000 AND period < 100000"
MONTHS = "period >= 100000 AND period < 1000000"
DAYS = "period >= 10000000"

# a month's period YYYYMM → its quarter's YYYYQ (integer division on both databases;
# no ``%``, which the PostgreSQL driver would read as a parameter)
QUARTER_OF_MONTH = "(period / 100) * 10 + (period - (period / 100) * 100 + 2) / 3"


def customer_rollup_sql(dialect, months_table, target, days_table=None):
    """The statements that fill ``target`` (crm_order_customer's shape) from
    ``months_table`` (crm_order_month's) and ``days_table`` (number, day, amount,
    orders; None: no days): per CRM customer and period — each day (YYYYMMDD), each
    month (YYYYMM), each quarter (YYYYQ), each year (YYYY) and all time (0) — in cents.
    First the customers' own numbers, in (customer, period) order and without a GROUP
    BY (a number belongs to one customer, a month or day is one row); then the numbers
    of merged customers (``crm_customer_alias``, few) added to the survivor's periods
    (an UPDATE for the periods it has, an INSERT for the others); then quarters and
    years from the months, all time from the years. No unique index is needed on the
    way (PostgreSQL adds the key last). Migration 0013 holds a frozen, simpler copy (it
    fills the table once)."""
    def grain(table, period, order):
        merged = (
            f"SELECT a.customer_id, {period} AS p, "
            f"SUM(CAST(ROUND(m.amount * 100) AS BIGINT)) AS cents, "
            f"SUM(m.orders) AS n FROM crm_customer_alias a JOIN {table} m "
            f"ON m.number = a.number WHERE NOT EXISTS (SELECT 1 FROM crm_customer own "
            f"WHERE own.number = a.number AND own.status <> 'merged') "
            f"GROUP BY a.customer_id, {period}")
        return [
            f"INSERT INTO {target} (customer_id, period, amount, orders) "
            f"SELECT own.id, {period}, CAST(ROUND(m.amount * 100) AS BIGINT), m.orders "
            f"FROM crm_customer own JOIN {table} m ON m.number = own.number "
            f"WHERE own.status <> 'merged'"
            + (f" ORDER BY own.id, m.{order}" if dialect == "sqlite" else ""),  # key order
            f"UPDATE {target} SET amount = {target}.amount + x.cents, "
            f"orders = {target}.orders + x.n FROM ({merged}) x "
            f"WHERE {target}.customer_id = x.customer_id AND {target}.period = x.p",
            f"INSERT INTO {target} (customer_id, period, amount, orders) "
            f"SELECT x.customer_id, x.p, x.cents, x.n FROM ({merged}) x WHERE NOT EXISTS "
            f"(SELECT 1 FROM {target} t WHERE t.customer_id = x.customer_id AND t.period = x.p)",
        ]

    out = grain(months_table, _ym_sql(dialect, "m.month"), "month")
    if days_table is not None:
        out += grain(days_table, _ymd_sql(dialect, "m.day"), "day")
    return out + derived_periods_sql(target)


def derived_periods_sql(target):
    """The statements that add to ``target`` its quarters and years (from its months)
    and all time (from its years)."""
    return [
        f"INSERT INTO {target} (customer_id, period, amount, orders) "
        f"SELECT customer_id, {QUARTER_OF_MONTH}, SUM(amount), SUM(orders) FROM {target} "
        f"WHERE {MONTHS} GROUP BY customer_id, {QUARTER_OF_MONTH}",
        f"INSERT INTO {target} (customer_id, period, amount, orders) "
        f"SELECT customer_id, period / 10, SUM(amount), SUM(orders) FROM {target} "
        f"WHERE {QUARTERS} GROUP BY customer_id, period / 10",
        f"INSERT INTO {target} (customer_id, period, amount, orders) "
        f"SELECT customer_id, 0, SUM(amount), SUM(orders) FROM {target} "
        f"WHERE period > 0 AND period < 10000 GROUP BY customer_id",
    ]


def running_sql(target, source, where=""):
    """INSERT into ``target`` (crm_order_running's shape) each customer's days with
    orders and the running total of its cents up to each day, from the day rows
    (periods YYYYMMDD) of ``source`` (crm_order_customer's shape; ``where``: more
    conditions on them, joined with AND). PostgreSQL (arrays, window sums)."""
    return (f"INSERT INTO {target} (customer_id, days, cents) "
            f"SELECT customer_id, array_agg(period ORDER BY period), "
            f"array_agg(run ORDER BY period) FROM (SELECT customer_id, period, "
            f"CAST(SUM(amount) OVER (PARTITION BY customer_id ORDER BY period) AS BIGINT) "
            f"AS run FROM {source} WHERE {DAYS}{where}) d GROUP BY customer_id")


def _build_running_next(conn):
    """crm_order_running_next from crm_order_customer_next (PostgreSQL)."""
    conn.exec_driver_sql(
        f"CREATE TABLE {RUNNING_NEXT} (customer_id INTEGER NOT NULL, "
        f"days INTEGER[] NOT NULL, cents BIGINT[] NOT NULL)")
    conn.exec_driver_sql(running_sql(RUNNING_NEXT, CUSTOMER_NEXT))
    conn.exec_driver_sql(f"ALTER TABLE {RUNNING_NEXT} ADD CONSTRAINT {RUNNING_NEXT}_pkey "
                         f"PRIMARY KEY (customer_id)")


def _build_customer_next(conn, dialect):
    """crm_order_customer_next from crm_order_month_next (:func:`customer_rollup_sql`)."""
    # no foreign key to crm_customer: dropping one (the swap drops the live table) would
    # lock crm_customer exclusively on PostgreSQL. PostgreSQL: the primary key after the
    # load (faster); SQLite: declared (the month rows arrive in its order)
    pk = "" if dialect == "postgresql" else ", PRIMARY KEY (customer_id, period)"
    conn.exec_driver_sql(
        f"CREATE TABLE {CUSTOMER_NEXT} (customer_id INTEGER NOT NULL, period INTEGER NOT NULL, "
        f"amount BIGINT NOT NULL, orders INTEGER NOT NULL{pk})")
    for sql in customer_rollup_sql(dialect, MONTH_NEXT, CUSTOMER_NEXT, DAY_NEXT):
        conn.exec_driver_sql(sql)
    if dialect == "postgresql":
        conn.exec_driver_sql(f"ALTER TABLE {CUSTOMER_NEXT} ADD CONSTRAINT "
                             f"{CUSTOMER_NEXT}_pkey PRIMARY KEY (customer_id, period)")


def fold_merged(session, survivor_id, merged_id):
    """A merge (app/workflows/imports/merge.py), in its transaction: the merged
    customer's rows of crm_order_customer are added to the survivor's (its numbers now
    count for the survivor; crm_order_month is keyed by number and needs nothing)."""
    T = OrderCustomer.__table__
    if session.get_bind(mapper=OrderCustomer.__mapper__).dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": FOLD_LOCK_KEY})
    m = T.alias("m")
    theirs = select(m.c.period).where(m.c.customer_id == merged_id)
    both = T.c.period.in_(theirs)
    same_year = lambda col: (select(getattr(m.c, col)).where(m.c.customer_id == merged_id,  # noqa: E731
                                                             m.c.period == T.c.period)
                             .scalar_subquery())
    session.execute(T.update().where(T.c.customer_id == survivor_id, both)
                    .values(amount=T.c.amount + same_year("amount"),
                            orders=T.c.orders + same_year("orders")))
    session.execute(T.delete().where(T.c.customer_id == merged_id, T.c.period.in_(
        select(m.c.period).where(m.c.customer_id == survivor_id))))
    session.execute(T.update().where(T.c.customer_id == merged_id)
                    .values(customer_id=survivor_id))
    if has_running(session):    # the survivor's running totals from its folded day rows
        session.execute(text(f"DELETE FROM {RUNNING} WHERE customer_id IN (:a, :b)"),
                        {"a": survivor_id, "b": merged_id})
        session.execute(text(running_sql(RUNNING, "crm_order_customer",
                                         " AND customer_id = :a")), {"a": survivor_id})


def _sqlite_file(engine):
    if engine.dialect.name != "sqlite":
        return None
    path = engine.url.database
    return path if path and path != ":memory:" and not path.startswith("file:") else None


def _copy_piped(sales, conn, select_sql, target):
    """``COPY (select_sql) TO STDOUT`` on the sales server into ``COPY target FROM
    STDIN`` on the CRM connection ``conn``, through an OS pipe: the sales server's
    aggregate and the CRM server's load run at the same time (a thread reads from the
    sales side; psycopg2 releases the GIL while it waits), and no more than the pipe's
    buffer is held in memory (1M customers' days are hundreds of MB). A failure on
    either side ends both and is raised here."""
    import os
    import threading

    read_fd, write_fd = os.pipe()
    out = os.fdopen(write_fd, "wb")
    failed = []

    def produce():
        try:
            raw_src = sales.raw_connection()
            try:
                with raw_src.cursor() as cur:
                    cur.copy_expert(f"COPY ({select_sql}) TO STDOUT", out)
                raw_src.rollback()
            finally:
                raw_src.close()
        except BaseException as exc:        # noqa: BLE001 — re-raised by the caller
            failed.append(exc)
        finally:
            try:
                out.close()                 # the reader sees the end
            except OSError as exc:          # the reader is gone (it failed)
                failed.append(exc)

    worker = threading.Thread(target=produce, name="rollup-copy", daemon=True)
    worker.start()
    try:
        with os.fdopen(read_fd, "rb") as inp:
            conn.connection.dbapi_connection.cursor().copy_expert(
                f"COPY {target} FROM STDIN", inp)
    finally:
        worker.join()
    if failed:
        raise failed[0]


def _fill_next(session, conn, dialect):
    """Step 1: the sales aggregate per number and day into crm_order_day_next (the
    only read of the sales system)."""
    sales = _sales_engine(session)
    sales_file = _sqlite_file(sales)
    cols = f"{DAY_NEXT} (number, day, amount, orders)"
    if dialect == "sqlite" and sales_file:
        conn.exec_driver_sql("ATTACH DATABASE ? AS rollup_src", (sales_file,))
        try:
            conn.exec_driver_sql(f"INSERT INTO {cols} "
                                 + _aggregate_sql("sqlite", "rollup_src", by_day=True)
                                 + " ORDER BY 1, 2")
        finally:
            conn.commit()
            conn.exec_driver_sql("DETACH DATABASE rollup_src")
    elif dialect == "postgresql" and sales.dialect.name == "postgresql":
        _copy_piped(sales, conn, _aggregate_sql("postgresql", by_day=True), cols)
    else:
        # any other pair (e.g. tests: CRM on PostgreSQL, sales on SQLite): stream in chunks
        with sales.connect() as src:
            result = src.execution_options(stream_results=True, yield_per=CHUNK) \
                .exec_driver_sql(_aggregate_sql(sales.dialect.name, by_day=True))
            for rows in result.partitions(CHUNK):
                rows = [(r[0], _as_date(r[1]), r[2], r[3]) for r in rows]
                if dialect == "postgresql":
                    out = io.StringIO()
                    csv.writer(out).writerows(rows)
                    out.seek(0)
                    conn.connection.dbapi_connection.cursor().copy_expert(
                        f"COPY {cols} FROM STDIN WITH (FORMAT csv)", out)
                else:
                    conn.exec_driver_sql(f"INSERT INTO {cols} VALUES (?, ?, ?, ?)",
                                         [(a, b.isoformat(), float(c), d)
                                          for a, b, c, d in rows])


def _months_sql(dialect, target, days, where=""):
    """INSERT into ``target`` (crm_order_month's shape) the months summed from the day
    rows of ``days`` (``where``: a condition on them)."""
    month = _month_sql(dialect, "day")
    return (f"INSERT INTO {target} (number, month, amount, orders, last_date) "
            f"SELECT number, {month}, SUM(amount), SUM(orders), MAX(day) FROM {days} {where} "
            f"GROUP BY number, {month}" + (" ORDER BY 1, 2" if dialect == "sqlite" else ""))


def _as_date(value):
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


# an incremental refresh rebuilds the customers of the changed numbers; above this
# share of the numbers with orders, a full rebuild is the cheaper one
INCREMENTAL_MAX = 0.2
INCREMENTAL_FLOOR = 1000        # … but this many are always cheap to rebuild one by one
# the numbers' owners now: own numbers of customers not merged, merged customers' old
# numbers (aliases) that no such customer carries
OWNER_NOW_SQL = (
    "SELECT number, id AS customer_id FROM crm_customer WHERE status <> 'merged' "
    "UNION ALL SELECT a.number, a.customer_id FROM crm_customer_alias a WHERE NOT EXISTS "
    "(SELECT 1 FROM crm_customer own WHERE own.number = a.number AND own.status <> 'merged')")


def _lock_swap(conn, dialect):
    if dialect == "sqlite":
        # pysqlite opens its transaction before the first DML only, and DDL would
        # otherwise run in autocommit: make the swap one transaction
        conn.exec_driver_sql("DELETE FROM crm_rollup_state WHERE id = 0")
    else:
        # a merge (fold_merged) takes the same lock: it commits before the numbers'
        # owners are read here, or folds into what this transaction wrote
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)" % FOLD_LOCK_KEY)


def _write_state(conn, now, started):
    months = conn.exec_driver_sql("SELECT count(*) FROM crm_order_month").scalar()
    customers = conn.exec_driver_sql("SELECT count(*) FROM crm_order_last").scalar()
    seconds = round(time.perf_counter() - started, 3)
    state = RollupState.__table__
    conn.execute(state.delete())
    conn.execute(state.insert().values(id=1, refreshed_at=now, seconds=seconds,
                                       months=months, customers=customers))
    return {"refreshed_at": now, "seconds": seconds, "months": months, "customers": customers}


def _owners_sql(dialect):
    """(Re)create crm_order_owner (if missing) and fill it with the owners now."""
    return ["CREATE TABLE IF NOT EXISTS crm_order_owner (number VARCHAR(32) NOT NULL, "
            "customer_id INTEGER NOT NULL, PRIMARY KEY (number))",
            "DELETE FROM crm_order_owner",
            f"INSERT INTO crm_order_owner (number, customer_id) {OWNER_NOW_SQL}"]


def _full_swap(conn, dialect):
    """Every table rebuilt from crm_order_day_next and swapped in (inside the caller's
    transaction)."""
    if dialect == "postgresql":
        conn.exec_driver_sql(f"ALTER TABLE {DAY_NEXT} ADD CONSTRAINT {DAY_NEXT}_pkey "
                             f"PRIMARY KEY (number, day)")
    conn.exec_driver_sql(_months_sql(dialect, MONTH_NEXT, DAY_NEXT))
    if dialect == "postgresql":
        conn.exec_driver_sql(f"ALTER TABLE {MONTH_NEXT} ADD CONSTRAINT "
                             f"{MONTH_NEXT}_pkey PRIMARY KEY (number, month)")
    conn.exec_driver_sql(f"INSERT INTO {LAST_NEXT} (number, last_date) "
                         f"SELECT number, MAX(last_date) FROM {MONTH_NEXT} GROUP BY number")
    # per customer and period, with the numbers → customers of this moment
    _build_customer_next(conn, dialect)
    swaps = [("crm_order_day", DAY_NEXT), ("crm_order_month", MONTH_NEXT),
             ("crm_order_last", LAST_NEXT), ("crm_order_customer", CUSTOMER_NEXT)]
    if dialect == "postgresql":
        _build_running_next(conn)
        swaps.append((RUNNING, RUNNING_NEXT))
    for live, nxt in swaps:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {live}")
        conn.exec_driver_sql(f"ALTER TABLE {nxt} RENAME TO {live}")
        if dialect == "postgresql":
            conn.exec_driver_sql(f"ALTER INDEX {nxt}_pkey RENAME TO {live}_pkey")
    conn.exec_driver_sql("CREATE INDEX ix_order_customer_period_amount_customer "
                         "ON crm_order_customer (period, amount, customer_id)")
    for sql in _owners_sql(dialect):
        conn.exec_driver_sql(sql)


TMP_OWNER, TMP_NUMBERS, TMP_CUSTOMERS, TMP_AFFECTED, TMP_ROWS = (
    "tmp_rollup_owner_now", "tmp_rollup_numbers", "tmp_rollup_customers",
    "tmp_rollup_affected", "tmp_rollup_rows")


def _incremental(conn, dialect):
    """Inside the caller's transaction: compare crm_order_day_next with crm_order_day
    (the aggregate the last refresh read) and the numbers' owners now with
    crm_order_owner; rebuild the rows of the numbers that changed (day, month, last
    date) and every period of the customers they belong to, then or before.
    Returns the number of changed numbers, or None (nothing written) when they are
    more than ``INCREMENTAL_MAX`` of the numbers with orders (and more than
    ``INCREMENTAL_FLOOR``): the caller then rebuilds all."""
    run = conn.exec_driver_sql
    for t in (TMP_OWNER, TMP_NUMBERS, TMP_CUSTOMERS, TMP_AFFECTED, TMP_ROWS):
        run(f"DROP TABLE IF EXISTS {t}")
    run(f"CREATE TEMPORARY TABLE {TMP_OWNER} (number VARCHAR(32) NOT NULL PRIMARY KEY, "
        f"customer_id INTEGER NOT NULL)")
    run(f"INSERT INTO {TMP_OWNER} (number, customer_id) {OWNER_NOW_SQL}")
    if dialect == "postgresql":
        run(f"ANALYZE {TMP_OWNER}")
    run(f"CREATE TEMPORARY TABLE {TMP_NUMBERS} (number VARCHAR(32) NOT NULL PRIMARY KEY)")
    # a day row new, gone or different; an owner new, gone or different
    if dialect == "postgresql":     # one hash join both ways
        days = (f"SELECT coalesce(n.number, o.number) AS number FROM {DAY_NEXT} n "
                f"FULL JOIN crm_order_day o ON o.number = n.number AND o.day = n.day "
                f"WHERE n.number IS NULL OR o.number IS NULL OR o.amount <> n.amount "
                f"OR o.orders <> n.orders ")
    else:                           # each way along the other table's key
        days = (f"SELECT n.number FROM {DAY_NEXT} n LEFT JOIN crm_order_day o "
                f"ON o.number = n.number AND o.day = n.day "
                f"WHERE o.number IS NULL OR o.amount <> n.amount OR o.orders <> n.orders "
                f"UNION SELECT o.number FROM crm_order_day o LEFT JOIN {DAY_NEXT} n "
                f"ON n.number = o.number AND n.day = o.day WHERE n.number IS NULL ")
    run(f"INSERT INTO {TMP_NUMBERS} (number) {days}"
        f"UNION SELECT w.number FROM {TMP_OWNER} w LEFT JOIN crm_order_owner p "
        f"ON p.number = w.number WHERE p.number IS NULL OR p.customer_id <> w.customer_id "
        f"UNION SELECT p.number FROM crm_order_owner p LEFT JOIN {TMP_OWNER} w "
        f"ON w.number = p.number WHERE w.number IS NULL")
    changed = run(f"SELECT count(*) FROM {TMP_NUMBERS}").scalar()
    with_orders = run("SELECT count(*) FROM crm_order_last").scalar()
    if changed > max(INCREMENTAL_MAX * with_orders, INCREMENTAL_FLOOR):
        run(f"DROP TABLE {TMP_OWNER}")
        run(f"DROP TABLE {TMP_NUMBERS}")
        return None
    analyze = (lambda t: run(f"ANALYZE {t}")) if dialect == "postgresql" else (lambda t: None)
    # PostgreSQL never analyses temporary tables itself: without statistics it plans
    # the 1,000 changed numbers as if they were all of them (hash joins over the
    # whole rollup, 5 s at 100k customers, instead of the key lookups)
    analyze(TMP_NUMBERS)
    numbers = f"(SELECT number FROM {TMP_NUMBERS})"
    # the customers those numbers belong to (then or now), and all of their numbers
    run(f"CREATE TEMPORARY TABLE {TMP_CUSTOMERS} (customer_id INTEGER NOT NULL PRIMARY KEY)")
    run(f"INSERT INTO {TMP_CUSTOMERS} (customer_id) "
        f"SELECT customer_id FROM crm_order_owner WHERE number IN {numbers} "
        f"UNION SELECT customer_id FROM {TMP_OWNER} WHERE number IN {numbers}")
    analyze(TMP_CUSTOMERS)
    customers = f"(SELECT customer_id FROM {TMP_CUSTOMERS})"
    run(f"CREATE TEMPORARY TABLE {TMP_AFFECTED} (number VARCHAR(32) NOT NULL PRIMARY KEY, "
        f"customer_id INTEGER NOT NULL)")
    run(f"INSERT INTO {TMP_AFFECTED} (number, customer_id) SELECT number, customer_id "
        f"FROM {TMP_OWNER} WHERE customer_id IN {customers}")
    analyze(TMP_AFFECTED)
    # the numbers' rows
    run(f"DELETE FROM crm_order_day WHERE number IN {numbers}")
    run(f"INSERT INTO crm_order_day (number, day, amount, orders) SELECT number, day, "
        f"amount, orders FROM {DAY_NEXT} WHERE number IN {numbers}")
    run(f"DELETE FROM crm_order_month WHERE number IN {numbers}")
    run(_months_sql(dialect, "crm_order_month", "crm_order_day", f"WHERE number IN {numbers}"))
    run(f"DELETE FROM crm_order_last WHERE number IN {numbers}")
    run(f"INSERT INTO crm_order_last (number, last_date) SELECT number, MAX(day) "
        f"FROM crm_order_day WHERE number IN {numbers} GROUP BY number")
    # the customers' periods, built as the full rebuild builds them, from their numbers
    run(f"CREATE TEMPORARY TABLE {TMP_ROWS} (customer_id INTEGER NOT NULL, "
        f"period INTEGER NOT NULL, amount BIGINT NOT NULL, orders INTEGER NOT NULL, "
        f"PRIMARY KEY (customer_id, period))")
    # per customer: Σ of its numbers' cents per day and month (each number's cents
    # rounded as the full rebuild rounds them), then quarters, years, all time
    # (SQLite: CROSS JOIN keeps the affected numbers outside — it has no statistics for
    # them and would otherwise scan the whole month or day table)
    join = "CROSS JOIN" if dialect == "sqlite" else "JOIN"
    for table, period in (("crm_order_month", _ym_sql(dialect, "m.month")),
                          ("crm_order_day", _ymd_sql(dialect, "m.day"))):
        run(f"INSERT INTO {TMP_ROWS} (customer_id, period, amount, orders) "
            f"SELECT a.customer_id, {period}, SUM(CAST(ROUND(m.amount * 100) AS BIGINT)), "
            f"SUM(m.orders) FROM {TMP_AFFECTED} a {join} {table} m ON m.number = a.number "
            f"GROUP BY a.customer_id, {period}")
    for sql in derived_periods_sql(TMP_ROWS):
        run(sql)
    run(f"DELETE FROM crm_order_customer WHERE customer_id IN {customers}")
    run(f"INSERT INTO crm_order_customer (customer_id, period, amount, orders) "
        f"SELECT customer_id, period, amount, orders FROM {TMP_ROWS}")
    if dialect == "postgresql":
        run(f"DELETE FROM {RUNNING} WHERE customer_id IN {customers}")
        run(running_sql(RUNNING, TMP_ROWS))
    run(f"DELETE FROM crm_order_owner WHERE number IN {numbers}")
    run(f"INSERT INTO crm_order_owner (number, customer_id) SELECT number, customer_id "
        f"FROM {TMP_OWNER} WHERE number IN {numbers}")
    for t in (TMP_OWNER, TMP_NUMBERS, TMP_CUSTOMERS, TMP_AFFECTED, TMP_ROWS):
        run(f"DROP TABLE {t}")
    for t in (DAY_NEXT, MONTH_NEXT, LAST_NEXT):
        run(f"DROP TABLE {t}")
    return changed


def _can_increment(conn):
    """An incremental refresh needs a rollup in place built by this code: its state,
    its day rows' table and its owners' table."""
    from sqlalchemy import inspect

    if conn.exec_driver_sql("SELECT count(*) FROM crm_rollup_state WHERE id = 1").scalar() == 0:
        return False
    names = set(inspect(conn).get_table_names())
    need = {"crm_order_day", "crm_order_owner"}
    if conn.dialect.name == "postgresql":
        need.add(RUNNING)       # (a rollup built before it: the next refresh rebuilds all)
    return need <= names


# SQLite: the refresh's connection reads and writes a few hundred MB at M; SQLite's
# default page cache (2 MB per connection) makes its key lookups read the same pages
# again and again. For the refresh only (restored before the connection goes back to
# the pool): a 256 MB page cache and two sorter threads. Sorts and temporary tables stay
# where SQLite puts them (a file, in the OS cache): in memory, a rebuild at scale L
# would hold GBs of sort runs in the worker.
SQLITE_REFRESH_PRAGMAS = {"cache_size": -262144, "threads": 2}


@contextmanager
def _refresh_pragmas(conn, dialect):
    if dialect != "sqlite":
        yield
        return
    before = {k: conn.exec_driver_sql(f"PRAGMA {k}").scalar() for k in SQLITE_REFRESH_PRAGMAS}
    try:
        for k, v in SQLITE_REFRESH_PRAGMAS.items():
            conn.exec_driver_sql(f"PRAGMA {k} = {int(v)}")
        yield
    finally:
        # a refresh that failed half-way may leave its transaction open; end it first,
        # then put each setting back. A connection that cannot be put back is dropped
        # from the pool rather than handed to a request with the refresh's settings.
        try:
            if conn.in_transaction():
                conn.rollback()
            for k, v in before.items():
                conn.exec_driver_sql(f"PRAGMA {k} = {int(v)}")
            conn.commit()
        except Exception:
            log.warning("rollup refresh: could not restore the SQLite connection's settings; "
                        "the connection is dropped from the pool", exc_info=True)
            conn.invalidate()


def refresh(session, now=None, full=False):
    """Bring the rollup up to date with the sales system; returns the state as
    :func:`status` gives it, with ``changed`` (customer numbers rebuilt; None for a
    full rebuild). See the module doc for the steps. ``full``: rebuild everything
    even when only a few numbers changed."""
    started = time.perf_counter()
    now = (now or datetime.now()).replace(microsecond=0)
    engine = _crm_engine(session)
    dialect = engine.dialect.name
    # 1: the sales aggregate into the staging table, committed, on its own connection
    with engine.connect() as conn, _refresh_pragmas(conn, dialect):
        _create_next(conn, dialect)
        conn.commit()
        _fill_next(session, conn, dialect)
        conn.commit()
        incremental = not full and _can_increment(conn)
        conn.commit()
        # 2: the changes (or the rebuild and swap) and the state, one transaction
        with conn.begin():
            _lock_swap(conn, dialect)
            changed = _incremental(conn, dialect) if incremental else None
            if changed is None:
                _full_swap(conn, dialect)
            state = _write_state(conn, now, started)
        if dialect == "postgresql" and (changed is None or changed > 1000):
            _vacuum(conn)
    return dict(state, changed=changed)


def _vacuum(conn):
    """``VACUUM (ANALYZE)`` of the rollup tables after a rebuild (PostgreSQL, outside
    any transaction): statistics for the planner, and the visibility map — a freshly
    built table has none, so until autovacuum comes by every index-only read of the
    reports visits the table too (at L: 客户贡献分析 of a year against the year before
    1,040 → 360 ms; the VACUUM itself 1.9 s there)."""
    auto = conn.execution_options(isolation_level="AUTOCOMMIT")
    for t in ("crm_order_customer", "crm_order_last", "crm_order_month", "crm_order_day",
              RUNNING):
        auto.exec_driver_sql(f"VACUUM (ANALYZE) {t}")


def refresh_locked(session, now=None):
    """:func:`refresh` under the rollup's run lock (``locks.run_lock``, never
    waits); None when another refresh is running."""
    from .locks import run_lock

    with run_lock(engine=_crm_engine(session), job=JOB) as acquired:
        if not acquired:
            return None
        return refresh(session, now=now)


def refresh_now(session, actor, now=None):
    """刷新 (the admin's button and ``POST /api/v1/rollup/refresh``): 系统管理员 only;
    Conflict when a refresh is already running. Returns the new state."""
    require_refresh(actor)
    state = refresh_locked(session, now=now)
    if state is None:
        raise Conflict(_l("另一个订单汇总刷新正在运行，请稍后再试。"))
    return state


# ---- reading ------------------------------------------------------------------------

def refreshed_at(session):
    """When the rollup in place was built (the reports' 数据更新于 …), or None."""
    return session.scalar(select(RollupState.refreshed_at).where(RollupState.id == 1))


def is_fresh(session, max_age_minutes, now=None):
    """Whether the rollup in place is *fresh*: built (``refreshed_at``, the moment its
    aggregate was read from the sales system) no more than ``max_age_minutes`` ago.
    Never fresh before the first refresh, nor when ``max_age_minutes`` is 0/None.
    Orders the sales system received after ``refreshed_at`` are not in it: a reader
    that skips the refresh for a fresh rollup accepts being that many minutes behind."""
    if not max_age_minutes or max_age_minutes <= 0:
        return False
    at = refreshed_at(session)
    if at is None:
        return False
    now = now or datetime.now()
    return now - at <= timedelta(minutes=max_age_minutes)


def has_days(session):
    """Whether the rollup in place holds the days (``crm_order_customer`` periods
    YYYYMMDD, built by every refresh since issue 23's day grain): one probe of the
    period index. A rollup built by older code has none; a partial month's days are
    then read from the sales system (as they were), until the next refresh."""
    T = OrderCustomer.__table__
    return session.execute(select(literal(1)).where(T.c.period >= 10000000).limit(1)) \
        .first() is not None


def has_running(session):
    """Whether crm_order_running is in place (PostgreSQL, built by every refresh since
    it was added; before the first such refresh 客户贡献分析 sums the period rows)."""
    bind = session.get_bind(mapper=OrderCustomer.__mapper__)
    if bind.dialect.name != "postgresql":
        return False
    return session.execute(text("SELECT to_regclass(:t) IS NOT NULL"),
                           {"t": RUNNING}).scalar()


def status(session):
    """{"refreshed_at", "seconds", "months", "customers"} of the rollup in place
    (all None before the first refresh)."""
    row = session.execute(select(RollupState.refreshed_at, RollupState.seconds,
                                 RollupState.months, RollupState.customers)
                          .where(RollupState.id == 1)).first()
    keys = ("refreshed_at", "seconds", "months", "customers")
    return dict(zip(keys, row)) if row else dict.fromkeys(keys)


def to_json(state):
    at = state.get("refreshed_at")
    return {"refreshed_at": at.isoformat() if at else None, "seconds": state.get("seconds"),
            "months": state.get("months"), "customers": state.get("customers")}


def _owner_number():
    """SQL: the CRM customer number a rollup row belongs to (alias → survivor)."""
    A, C = CustomerNumberAlias.__table__, Customer.__table__
    survivor = (select(C.c.number).select_from(A.join(C, C.c.id == A.c.customer_id))
                .where(A.c.number == OrderMonth.__table__.c.number).scalar_subquery())
    return func.coalesce(survivor, OrderMonth.__table__.c.number)


def _alias_map(session):
    A, C = CustomerNumberAlias.__table__, Customer.__table__
    return dict(session.execute(select(A.c.number, C.c.number)
                                .join(C, C.c.id == A.c.customer_id)).all())


def _month_start(day):
    return day.replace(day=1)


def _next_month(day):
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def _raw_totals(session, start, end):
    """[(customer number as in the sales system, amount)] for start ≤ date < end,
    straight from the sales bind (the partial edge months)."""
    O, L = Order.__table__, OrderLine.__table__
    # a few days (never more than a month): the (status, date) index finds them
    q = (select(O.c.customer_number, func.sum(L.c.quantity * L.c.price))
         .select_from(O.join(L, L.c.order_id == O.c.id))
         .where(O.c.status.in_(COUNTED_ORDER_STATUSES))
         .group_by(O.c.customer_number))
    if start is not None:
        q = q.where(O.c.date >= start)
    if end is not None:
        q = q.where(O.c.date < end)
    with _sales_engine(session).connect() as conn:
        return conn.execute(q).all()


def split_range(start, end):
    """How ``start`` ≤ date < ``end`` (either None = open; start < end) is read:
    ``(months, edges)`` — ``months`` = ``(first_full, end_full)``, the whole months
    read from ``crm_order_month`` (``month >= first_full AND month < end_full``, a
    None bound open), or None when the range holds no whole month; ``edges`` =
    ``[(a, b)]``, the days of a partial first/last month, read from the sales bind
    (:func:`raw_totals`)."""
    first_full = None if start is None else (start if start.day == 1 else _next_month(start))
    end_full = None if end is None else _month_start(end)
    if first_full is not None and end_full is not None and first_full >= end_full:
        return None, [(start, end)]                # within one month: all raw
    edges = []
    if start is not None and start != first_full:
        edges.append((start, first_full))
    if end is not None and end != end_full:
        edges.append((end_full, end))
    return (first_full, end_full), edges


def raw_totals(session, start, end):
    """[(customer number as in the sales system, amount)] of the counted orders with
    ``start`` ≤ date < ``end``, straight from the sales bind (the partial edge months
    of :func:`split_range`)."""
    return _raw_totals(session, start, end)


def order_totals(session, start=None, end=None, numbers=None):
    """Σ amount of the counted orders per CRM customer number, for ``start`` ≤ date <
    ``end`` (dates, either None = open): ``DataFrame[number, amount]`` (amount float,
    one row per customer with orders, merged customers' aliases added to the survivor).

    Whole months come from the rollup; the days of a partial first/last month straight
    from the sales bind (just those days). ``numbers``: only these customers."""
    import pandas as pd      # here, not at the top: the CLI (churn check) never needs it

    if start is not None and end is not None and start >= end:
        return pd.DataFrame({"number": pd.Series(dtype=object), "amount": pd.Series(dtype=float)})
    M = OrderMonth.__table__
    months, edges = split_range(start, end)
    parts = []
    if months is not None:
        first_full, end_full = months
        q = select(M.c.number, func.sum(M.c.amount)).group_by(M.c.number)
        if first_full is not None:
            q = q.where(M.c.month >= first_full)
        if end_full is not None:
            q = q.where(M.c.month < end_full)
        parts.extend(session.execute(q).all())
    for a, b in edges:
        parts.extend(_raw_totals(session, a, b))
    df = pd.DataFrame(parts, columns=["number", "amount"])
    df["amount"] = df["amount"].astype(float)
    aliases = _alias_map(session)
    if aliases:
        df["number"] = df["number"].map(lambda n: aliases.get(n, n))
    if numbers is not None:
        df = df[df["number"].isin(set(numbers))]
    df = df.groupby("number", as_index=False, sort=True)["amount"].sum()
    df["amount"] = df["amount"].round(2)
    return df


def last_order_dates(session, numbers=None):
    """{CRM customer number: date of its last counted order} from the rollup, merged
    customers' aliases folded into the survivor."""
    L = OrderLast.__table__
    rows = session.execute(select(L.c.number, L.c.last_date)).all()
    aliases = _alias_map(session)
    out = {}
    for number, last in rows:
        number = aliases.get(number, number)
        if number not in out or last > out[number]:
            out[number] = last
    if numbers is not None:
        wanted = set(numbers)
        out = {k: v for k, v in out.items() if k in wanted}
    return out


def last_order_select(as_of=None):
    """SQL (CRM database) of (customer number as in the sales system, last counted
    order dated on or before ``as_of``) from the rollup; ``as_of`` None = the last
    one. The days of ``as_of``'s own month after it are left out by reading that
    month from ``crm_order_month`` only when its last order is on or before ``as_of``
    — the caller adds that month's orders from the sales bind
    (:func:`month_tail_last_orders`)."""
    L, M = OrderLast.__table__, OrderMonth.__table__
    if as_of is None:
        return select(L.c.number, L.c.last_date)
    recent = select(L.c.number, L.c.last_date).where(L.c.last_date <= as_of)
    # customers whose last order is after as_of: their last whole month before as_of's
    older = (select(M.c.number, func.max(M.c.last_date))
             .where(M.c.month < _month_start(as_of),
                    M.c.number.in_(select(L.c.number).where(L.c.last_date > as_of)))
             .group_by(M.c.number))
    return recent.union_all(older)


def month_tail_last_orders(session, as_of):
    """[(customer number, last counted order date)] from the sales bind for the
    days of ``as_of``'s month up to ``as_of`` (only customers whose rollup last order
    is after ``as_of`` need it; it is small: one month of orders)."""
    O = Order.__table__
    q = (select(O.c.customer_number, func.max(O.c.date))
         .where((O.c.status + 0).in_(COUNTED_ORDER_STATUSES),
                O.c.date >= _month_start(as_of), O.c.date <= as_of)
         .group_by(O.c.customer_number))
    with _sales_engine(session).connect() as conn:
        return conn.execute(q).all()


__all__ = ["refresh", "refreshed_at", "status", "order_totals", "last_order_dates",
           "can_refresh", "require_refresh", "JOB"]
