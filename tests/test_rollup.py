"""订单汇总 (order rollup): correct against the raw sales aggregate for every customer
(status changes after a refresh, merged customers' aliases, partial edge months), a
killed refresh leaves the previous rollup, rights of the page/API, CLI, scheduler job."""
from datetime import date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Customer, CustomerNumberAlias, Order, OrderLine
from app.models.rollup import OrderMonth, RollupState
from app.workflows import rollup

from . import factories as f


def raw_totals(s, start=None, end=None):
    """The raw query: Σ quantity × price of status 5/6 orders per CRM customer number
    (aliases → survivor), straight from the sales bind."""
    q = (select(Order.customer_number, func.sum(OrderLine.quantity * OrderLine.price))
         .join(OrderLine, OrderLine.order_id == Order.id)
         .where(Order.status.in_((5, 6))).group_by(Order.customer_number))
    if start:
        q = q.where(Order.date >= start)
    if end:
        q = q.where(Order.date < end)
    aliases = dict(s.execute(select(CustomerNumberAlias.number, Customer.number)
                             .join(Customer, Customer.id == CustomerNumberAlias.customer_id)).all())
    out = {}
    for number, amount in s.execute(q).all():
        key = aliases.get(number, number)
        out[key] = round(out.get(key, 0) + float(amount), 2)
    return out


def raw_last(s):
    aliases = dict(s.execute(select(CustomerNumberAlias.number, Customer.number)
                             .join(Customer, Customer.id == CustomerNumberAlias.customer_id)).all())
    out = {}
    for number, last in s.execute(select(Order.customer_number, func.max(Order.date))
                                  .where(Order.status.in_((5, 6)))
                                  .group_by(Order.customer_number)).all():
        key = aliases.get(number, number)
        out[key] = max(last, out.get(key, last))
    return out


def as_dict(df):
    return {n: round(float(a), 2) for n, a in zip(df["number"], df["amount"])}


def _refresh(app, now=None):
    with app.app_context():
        try:
            return rollup.refresh(db.session, now=now)
        finally:
            db.session.remove()


@pytest.fixture
def orders(app, dbs, user_id):
    """Three customers with orders over several months in every status; B has been
    merged into A (B's old number is an alias of A, B's orders carry it)."""
    with dbs() as s:
        a = f.customer(s, user_id("manager1"))
        b_number = f"KHALIAS{a.id:06d}"
        c = f.customer(s, user_id("manager2"))
        s.add(CustomerNumberAlias(number=b_number, customer_id=a.id, note="合并",
                                  created_by_fk=user_id("admin"), changed_by_fk=user_id("admin")))
        p1, p2 = f.product(s, price="12.50"), f.product(s, price="3.10")
        made = {}
        for number, day, status, lines in (
                (a.number, date(2031, 1, 5), 6, [(p1, 2, "12.50"), (p2, 3, "3.10")]),
                (a.number, date(2031, 1, 20), 5, [(p1, 1, "12.50")]),
                (a.number, date(2031, 2, 14), 6, [(p2, 7, "3.10")]),
                (a.number, date(2031, 3, 31), 2, [(p1, 9, "12.50")]),     # not counted (yet)
                (b_number, date(2031, 2, 1), 6, [(p1, 4, "12.40")]),       # alias → A
                (b_number, date(2031, 4, 2), 5, [(p2, 1, "3.10")]),
                (c.number, date(2031, 1, 31), 6, [(p1, 1, "12.50")]),
                (c.number, date(2031, 3, 1), 4, [(p1, 100, "12.50")]),    # cancelled
                (c.number, date(2031, 3, 15), 5, [(p2, 2, "3.15"), (p1, 1, "12.00")])):
            made[(number, day)] = f.order(s, number, lines, status=status, day=day).id
        s.commit()
        out = {"a": a.number, "b": b_number, "c": c.number, "orders": made}
    return out


def test_refresh_matches_the_raw_query_for_every_customer(app, dbs, orders):
    _refresh(app)
    with dbs() as s:
        got = as_dict(rollup.order_totals(s))
        assert got == raw_totals(s)
        assert orders["b"] not in got                       # folded into the survivor
        assert got[orders["a"]] == round(2 * 12.5 + 3 * 3.1 + 12.5 + 7 * 3.1 + 4 * 12.4 + 3.1, 2)
        assert got[orders["c"]] == round(12.5 + 2 * 3.15 + 12.0, 2)
        assert rollup.last_order_dates(s) == raw_last(s)
        assert rollup.last_order_dates(s)[orders["a"]] == date(2031, 4, 2)


@pytest.mark.parametrize("start,end", [
    (date(2031, 1, 1), date(2031, 3, 1)),      # whole months only
    (date(2031, 1, 6), date(2031, 3, 20)),     # partial first and last month
    (date(2031, 1, 20), date(2031, 1, 31)),    # inside one month
    (date(2031, 2, 1), None), (None, date(2031, 2, 15)), (None, None),
    (date(2031, 3, 1), date(2031, 3, 1)),      # empty range
])
def test_ranges_match_the_raw_query(app, dbs, orders, start, end):
    _refresh(app)
    with dbs() as s:
        assert as_dict(rollup.order_totals(s, start, end)) == raw_totals(s, start, end)
        some = [orders["a"], orders["c"]]
        expected = {k: v for k, v in raw_totals(s, start, end).items() if k in some}
        assert as_dict(rollup.order_totals(s, start, end, numbers=some)) == expected


def test_status_change_after_a_refresh_counts_after_the_next(app, dbs, orders):
    _refresh(app, now=datetime(2031, 5, 1, 9))
    oid = orders["orders"][(orders["a"], date(2031, 3, 31))]
    with dbs() as s:
        before = as_dict(rollup.order_totals(s))[orders["a"]]
        s.execute(Order.__table__.update().where(Order.id == oid).values(status=5))
        s.commit()
        # the rollup in place is the snapshot of its refresh
        assert as_dict(rollup.order_totals(s))[orders["a"]] == before
        assert rollup.refreshed_at(s) == datetime(2031, 5, 1, 9)
    _refresh(app, now=datetime(2031, 5, 1, 10))
    with dbs() as s:
        got = as_dict(rollup.order_totals(s))
        assert got == raw_totals(s)
        assert got[orders["a"]] == round(before + 9 * 12.5, 2)
        assert rollup.last_order_dates(s) == raw_last(s)
        assert rollup.refreshed_at(s) == datetime(2031, 5, 1, 10)


def raw_days(s):
    """The raw query per CRM customer id and day: {(customer_id, YYYYMMDD): cents} of
    the counted orders (aliases → the survivor)."""
    owner = dict(s.execute(select(Customer.number, Customer.id)
                           .where(Customer.status != "merged")).all())
    owner.update(s.execute(select(CustomerNumberAlias.number,
                                  CustomerNumberAlias.customer_id)).all())
    q = (select(Order.customer_number, Order.date, func.sum(OrderLine.quantity * OrderLine.price))
         .join(OrderLine, OrderLine.order_id == Order.id)
         .where(Order.status.in_((5, 6))).group_by(Order.customer_number, Order.date))
    out = {}
    for number, day, amount in s.execute(q).all():
        if number in owner:
            key = (owner[number], day.year * 10000 + day.month * 100 + day.day)
            out[key] = out.get(key, 0) + int(round(Decimal(str(amount)) * 100))
    return out


def rollup_days(s, ids):
    from app.models.rollup import OrderCustomer as T
    return {(c, p): a for c, p, a in s.execute(
        select(T.customer_id, T.period, T.amount)
        .where(T.period >= 10000000, T.customer_id.in_(ids))).all()}


def test_the_days_match_the_raw_query_after_a_status_change(app, dbs, orders):
    """crm_order_customer's day rows (what a partial month reads) are the raw per-day
    sums for every customer, the merged number's orders counted for the survivor,
    before and after an order's status changes to 5."""
    with dbs() as s:
        ids = [s.scalar(select(Customer.id).where(Customer.number == orders[k]))
               for k in ("a", "c")]
    _refresh(app)
    with dbs() as s:
        got, want = rollup_days(s, ids), raw_days(s)
        assert got == {k: v for k, v in want.items() if k[0] in ids}
        assert got[(ids[0], 20310201)] == 4960                 # the alias's order → A
        assert (ids[0], 20310331) not in got                   # status 2: not counted
        oid = orders["orders"][(orders["a"], date(2031, 3, 31))]
        s.execute(Order.__table__.update().where(Order.id == oid).values(status=5))
        s.commit()
    _refresh(app)
    with dbs() as s:
        got = rollup_days(s, ids)
        assert got == {k: v for k, v in raw_days(s).items() if k[0] in ids}
        assert got[(ids[0], 20310331)] == 9 * 1250


def test_a_killed_refresh_leaves_the_previous_rollup(app, dbs, orders, monkeypatch):
    _refresh(app, now=datetime(2031, 6, 1, 8))
    with dbs() as s:
        before = as_dict(rollup.order_totals(s))
        s.execute(Order.__table__.update().where(Order.customer_number == orders["c"])
                  .values(status=6))
        s.commit()
    real_fill = rollup._fill_next

    def killed(*args, **kw):
        real_fill(*args, **kw)
        raise KeyboardInterrupt("killed mid-run")

    monkeypatch.setattr(rollup, "_fill_next", killed)
    with pytest.raises(KeyboardInterrupt):
        _refresh(app, now=datetime(2031, 6, 1, 9))
    with dbs() as s:
        assert as_dict(rollup.order_totals(s)) == before
        assert rollup.refreshed_at(s) == datetime(2031, 6, 1, 8)
    monkeypatch.setattr(rollup, "_fill_next", real_fill)
    _refresh(app, now=datetime(2031, 6, 1, 10))     # the leftover staging table is no obstacle
    with dbs() as s:
        assert as_dict(rollup.order_totals(s)) == raw_totals(s)
        assert rollup.refreshed_at(s) == datetime(2031, 6, 1, 10)


def test_sales_system_is_only_read(app, dbs, orders):
    with dbs() as s:
        n = s.scalar(select(func.count()).select_from(Order))
        lines = s.scalar(select(func.sum(OrderLine.quantity * OrderLine.price)))
    _refresh(app)
    with dbs() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == n
        assert s.scalar(select(func.sum(OrderLine.quantity * OrderLine.price))) == lines
        assert s.scalar(select(func.count()).select_from(OrderMonth)) > 0


# ---- rights: page, API, CLI, scheduler -------------------------------------------------------

def test_api_status_and_refresh_for_the_admin(app, api, dbs, orders):
    r = api("admin").post("/api/v1/rollup/refresh")
    assert r.status_code == 200, r.text
    at = r.json["result"]["refreshed_at"]
    assert at and r.json["result"]["customers"] >= 2
    r = api("exec").get("/api/v1/rollup/")
    assert r.status_code == 200, r.text
    assert r.json["result"]["refreshed_at"] == at


@pytest.mark.parametrize("username", ["exec", "supervisor", "manager1"])
def test_only_the_admin_may_refresh(app, api, web, dbs, orders, username):
    _refresh(app, now=datetime(2031, 7, 1, 8))
    r = api(username).post("/api/v1/rollup/refresh")
    assert r.status_code == 403 and "message" in r.json
    w = web(username)
    r = w.post("/rollup/refresh", data={"csrf_token": w.csrf("/notifications/settings")})
    assert r.status_code in (302, 403) and "/rollup/" not in r.headers.get("Location", "")
    with dbs() as s:
        assert rollup.refreshed_at(s) == datetime(2031, 7, 1, 8)     # nothing changed
    page = web(username).get("/rollup/")
    if username == "manager1":
        assert page.status_code in (302, 403)
        assert api(username).get("/api/v1/rollup/").status_code == 403
    else:
        assert page.status_code == 200 and "数据更新于" in page.text
        assert 'action="/rollup/refresh"' not in page.text          # no 刷新 button


def test_admin_page_button_refreshes(app, web, dbs, orders):
    _refresh(app, now=datetime(2031, 7, 2, 8))
    w = web("admin")
    page = w.get("/rollup/")
    assert page.status_code == 200 and "2031-07-02 08:00:00" in page.text
    assert 'action="/rollup/refresh"' in page.text
    r = w.post_form("/rollup/refresh", {}, form_url="/rollup/")
    assert r.status_code == 302
    with dbs() as s:
        assert rollup.refreshed_at(s) != datetime(2031, 7, 2, 8)


def test_refresh_while_another_runs_is_409(app, api, dbs, orders):
    from app.scheduler import run_lock

    with app.app_context():
        with run_lock(job="rollup") as got:
            assert got
            r = api("admin").post("/api/v1/rollup/refresh")
            assert r.status_code == 409 and "正在运行" in r.json["message"]
        db.session.remove()


def test_cli_refresh_and_status(app, dbs, orders):
    runner = app.test_cli_runner()
    r = runner.invoke(args=["crm", "rollup", "refresh"])
    assert r.exit_code == 0, r.output
    assert "订单汇总已刷新" in r.output
    r = runner.invoke(args=["crm", "rollup", "status"])
    assert r.exit_code == 0 and "数据更新于" in r.output
    with dbs() as s:
        assert as_dict(rollup.order_totals(s)) == raw_totals(s)


def test_scheduler_job_hourly_and_configurable(app, dbs, orders):
    from app.models import JobRun
    from app.scheduler import rollup_job, start_scheduler

    sched = start_scheduler(app, start=False)
    job = sched.get_job("order-rollup")
    assert job is not None and "minute='5'" in str(job.trigger)
    app.config["ROLLUP_CRON"] = {"minute": "*/15"}
    try:
        job = start_scheduler(app, start=False).get_job("order-rollup")
        assert "minute='*/15'" in str(job.trigger)
    finally:
        app.config.pop("ROLLUP_CRON")
    state = rollup_job(app)
    assert state and state["customers"] >= 2
    with dbs() as s:
        run = s.scalars(select(JobRun).where(JobRun.job == "rollup").order_by(JobRun.id.desc())).first()
        assert run.ok and "customers" in run.summary
        assert s.get(RollupState, 1).refreshed_at == state["refreshed_at"]
        assert as_dict(rollup.order_totals(s)) == raw_totals(s)
    rollup_job(app)                                      # idempotent: same result again
    with dbs() as s:
        assert as_dict(rollup.order_totals(s)) == raw_totals(s)


def test_churn_reads_the_rollup_and_aliases(app, dbs, orders, user_id):
    """The churn check's last order date of a merged customer comes from its alias."""
    from app.workflows import churn as churn_wf
    from app.cli import system_user_id

    _refresh(app)
    with dbs() as s:
        a_id = s.scalar(select(Customer.id).where(Customer.number == orders["a"]))
        # as of 2031-10-03: cutoff 2031-04-03 → A's last order (2031-04-02, via B's number) is old
        summary = churn_wf.check_churn(s, db.engines["sales"], as_of=date(2031, 10, 3),
                                       actor_id=system_user_id(), customer_ids=[a_id],
                                       dry_run=True)
        assert [cid for _, cid in summary["opened"]] == [a_id]
        s.rollback()
        summary = churn_wf.check_churn(s, db.engines["sales"], as_of=date(2031, 10, 1),
                                       actor_id=system_user_id(), customer_ids=[a_id],
                                       dry_run=True)
        assert summary["opened"] == []
        s.rollback()
        # a past as-of inside a month: only the orders up to that day count
        summary = churn_wf.check_churn(s, db.engines["sales"], as_of=date(2031, 2, 13),
                                       actor_id=system_user_id(), customer_ids=[a_id],
                                       dry_run=True)
        assert summary["opened"] == []
        s.rollback()


def test_amounts_are_exact_decimals(app, dbs, orders):
    _refresh(app)
    with dbs() as s:
        row = s.scalar(select(OrderMonth.amount).where(OrderMonth.number == orders["c"],
                                                       OrderMonth.month == date(2031, 1, 1)))
        assert Decimal(str(row)) == Decimal("12.50")


def test_the_postgresql_copy_runs_through_a_pipe_and_fails_whole(app):
    """PostgreSQL to PostgreSQL, the sales aggregate streams into the CRM staging table
    through a pipe (``rollup._copy_piped``): every row arrives, in bounded memory; a
    failing source raises (the refresh then never swaps) and a failing target ends the
    source too."""
    from sqlalchemy import text as sql

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("the pipe joins two PostgreSQL servers")
        with db.engine.connect() as conn:
            conn.exec_driver_sql("CREATE TEMPORARY TABLE tmp_pipe_in (n INTEGER, t VARCHAR(20))")
            rollup._copy_piped(db.engine, conn, "SELECT g, 'x' || g FROM generate_series(1, 200000) g",
                               "tmp_pipe_in (n, t)")
            assert conn.execute(sql("SELECT count(*), sum(n), max(t) FROM tmp_pipe_in")).one() == \
                (200000, 200000 * 200001 // 2, "x99999")
            conn.commit()
            with pytest.raises(Exception, match="no_such_table"):
                rollup._copy_piped(db.engine, conn, "SELECT * FROM no_such_table", "tmp_pipe_in (n, t)")
            conn.connection.dbapi_connection.rollback()   # the COPY ran on the DB-API level
            with pytest.raises(Exception):       # the target rejects the rows
                rollup._copy_piped(db.engine, conn, "SELECT 'not a number', 'x' FROM "
                                   "generate_series(1, 100000)", "tmp_pipe_in (n, t)")
            conn.connection.dbapi_connection.rollback()
            assert conn.execute(sql("SELECT count(*) FROM tmp_pipe_in")).scalar() == 200000
        db.session.remove()


ROLLUP_TABLES = ("crm_order_day", "crm_order_month", "crm_order_last", "crm_order_customer",
                 "crm_order_owner")


def _snapshot(app):
    from sqlalchemy import text as sql
    with app.app_context():
        try:
            tables = ROLLUP_TABLES + ((rollup.RUNNING,) if rollup.has_running(db.session) else ())
            return {t: sorted(tuple(str(v) for v in r)
                              for r in db.session.execute(sql(f"SELECT * FROM {t}")))
                    for t in tables}
        finally:
            db.session.remove()


def _refresh_both_ways(app, full_first=False):
    """An incremental refresh, then a full rebuild: (what the incremental one
    changed, its tables, the rebuild's tables)."""
    with app.app_context():
        try:
            changed = rollup.refresh(db.session)["changed"]
        finally:
            db.session.remove()
    incremental = _snapshot(app)
    with app.app_context():
        try:
            assert rollup.refresh(db.session, full=True)["changed"] is None
        finally:
            db.session.remove()
    return changed, incremental, _snapshot(app)


def test_an_incremental_refresh_equals_a_full_rebuild(app, dbs, orders, user_id):
    """After every kind of change — none, an order's status, a new order, an order
    moved to another day, an order deleted, a new CRM customer whose number already has
    orders, a merge — the incremental refresh (only the changed numbers' customers
    rebuilt) leaves every rollup table exactly as a full rebuild does."""
    with app.app_context():
        rollup.refresh(db.session, full=True)
        db.session.remove()
    changed, inc, full = _refresh_both_ways(app)
    assert changed == 0 and inc == full
    ids = orders["orders"]
    with dbs() as s:                                        # a status, 2 → 5
        s.execute(Order.__table__.update().where(Order.id == ids[(orders["a"], date(2031, 3, 31))])
                  .values(status=5))
        s.commit()
    changed, inc, full = _refresh_both_ways(app)
    assert changed == 1 and inc == full
    with dbs() as s:                                        # new, moved, deleted orders
        p = f.product(s, price="7.00")
        f.order(s, orders["c"], [(p, 3, "7.00")], status=6, day=date(2031, 5, 9))
        s.execute(Order.__table__.update().where(Order.id == ids[(orders["b"], date(2031, 4, 2))])
                  .values(date=date(2031, 6, 30)))
        gone = ids[(orders["c"], date(2031, 1, 31))]
        s.execute(OrderLine.__table__.delete().where(OrderLine.order_id == gone))
        s.execute(Order.__table__.delete().where(Order.id == gone))
        s.commit()
    changed, inc, full = _refresh_both_ways(app)
    assert changed == 2 and inc == full                      # c's number, the alias
    with dbs() as s:                                        # a new customer, orders already there
        number = f"KHNEW{orders['orders'][(orders['a'], date(2031, 1, 5))]:06d}"
        f.order(s, number, [(f.product(s, price="7.00"), 1, "7.00")], status=5,
                day=date(2031, 7, 1))
        s.commit()
    changed, inc, full = _refresh_both_ways(app)
    assert changed == 1 and inc == full                      # a number no customer has
    with dbs() as s:
        d = f.customer(s, user_id("manager1"), number=number)
        s.commit()
        d_id = d.id
    changed, inc, full = _refresh_both_ways(app)
    assert changed == 1 and inc == full
    assert any(r[0] == str(d_id) for r in inc["crm_order_customer"])
    with dbs() as s:                                        # merge d into c
        c = s.scalar(select(Customer).where(Customer.number == orders["c"]))
        rollup.fold_merged(s, c.id, d_id)
        s.add(CustomerNumberAlias(number=number, customer_id=c.id, note="合并",
                                  created_by_fk=user_id("admin"), changed_by_fk=user_id("admin")))
        s.execute(Customer.__table__.update().where(Customer.id == d_id)
                  .values(status="merged", changed_by_fk=user_id("admin")))
        s.commit()
    changed, inc, full = _refresh_both_ways(app)
    assert changed == 1 and inc == full
    assert not any(r[0] == str(d_id) for r in inc["crm_order_customer"])


def test_many_changes_rebuild_everything(app, dbs, orders, monkeypatch):
    """More changed numbers than INCREMENTAL_MAX of them: the refresh rebuilds all
    (``changed`` None), with the same tables."""
    with app.app_context():
        rollup.refresh(db.session, full=True)
        db.session.remove()
    with dbs() as s:
        s.execute(Order.__table__.update().where(Order.customer_number == orders["c"])
                  .values(status=6))
        s.commit()
    monkeypatch.setattr(rollup, "INCREMENTAL_MAX", 0.0)
    monkeypatch.setattr(rollup, "INCREMENTAL_FLOOR", 0)
    changed, inc, full = _refresh_both_ways(app)
    assert changed is None and inc == full
    with dbs() as s:
        assert as_dict(rollup.order_totals(s)) == raw_totals(s)


def test_a_full_rebuild_leaves_the_tables_vacuumed_on_postgresql(app, dbs, orders):
    """After a full rebuild the rollup tables are vacuumed and analysed (PostgreSQL):
    their visibility map is set, so the reports' index-only reads need not visit the
    table (a freshly built table has no visibility map until autovacuum comes by)."""
    from sqlalchemy import text as sql

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("VACUUM and the visibility map are PostgreSQL's")
        state = rollup.refresh(db.session, full=True)
        db.session.remove()
        assert state["changed"] is None
        with db.engine.connect() as conn:
            for t in ("crm_order_customer", "crm_order_last", "crm_order_month", "crm_order_day"):
                pages, visible = conn.execute(sql(
                    "SELECT relpages, relallvisible FROM pg_class WHERE relname = :t"),
                    {"t": t}).one()
                assert pages > 0 and visible == pages, (t, pages, visible)


def _sqlite_app(app):
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("SQLite's page cache, plans and table shapes")


def test_the_sqlite_refresh_tunes_its_connection_and_gives_it_back_as_found(app, dbs, orders):
    """SQLite: the refresh's connection runs with a large page cache and two sorter
    threads (the comparison and the key lookups at M re-read pages otherwise); every
    connection that goes back to the pool has SQLite's defaults again."""
    from sqlalchemy import event

    _sqlite_app(app)
    during, returned = [], []

    def pragmas(dbapi_connection):
        cur = dbapi_connection.cursor()
        try:
            return tuple(cur.execute(f"PRAGMA {k}").fetchone()[0]
                         for k in rollup.SQLITE_REFRESH_PRAGMAS)
        finally:
            cur.close()

    with app.app_context():
        engine = db.engine
        with engine.connect() as conn:
            defaults = pragmas(conn.connection.dbapi_connection)

        def spy(conn, cursor, statement, *args):
            if statement.startswith(f"INSERT INTO {rollup.DAY_NEXT}"):
                during.append(pragmas(conn.connection.dbapi_connection))

        def checkin(dbapi_connection, record):
            returned.append(pragmas(dbapi_connection))

        event.listen(engine, "after_cursor_execute", spy)
        event.listen(engine, "checkin", checkin)
        try:
            for full in (True, False):
                rollup.refresh(db.session, full=full)
                db.session.remove()
        finally:
            event.remove(engine, "after_cursor_execute", spy)
            event.remove(engine, "checkin", checkin)
    wanted = tuple(rollup.SQLITE_REFRESH_PRAGMAS.values())
    assert during and set(during) == {wanted}
    assert returned and set(returned) == {defaults} and defaults != wanted


def test_a_sqlite_refresh_that_fails_half_way_gives_its_connection_back_as_found(
        app, dbs, orders, monkeypatch):
    """A refresh that dies half-way (its transaction open, a temporary table in it)
    still leaves the pool with SQLite's defaults, raises its own error, and keeps the
    previous rollup in place."""
    from sqlalchemy import event

    _sqlite_app(app)
    returned = []

    def checkin(dbapi_connection, record):
        cur = dbapi_connection.cursor()
        try:
            returned.append(tuple(cur.execute(f"PRAGMA {k}").fetchone()[0]
                                  for k in rollup.SQLITE_REFRESH_PRAGMAS))
        finally:
            cur.close()

    with app.app_context():
        rollup.refresh(db.session, full=True)
        db.session.remove()
        before = db.session.execute(db.text("SELECT count(*), sum(amount), sum(orders) FROM crm_order_customer")).one()
        db.session.remove()
        with db.engine.connect() as conn:
            defaults = tuple(conn.exec_driver_sql(f"PRAGMA {k}").scalar()
                             for k in rollup.SQLITE_REFRESH_PRAGMAS)

        def boom(session, conn, dialect):
            conn.exec_driver_sql("CREATE TEMP TABLE crm_boom (x INTEGER)")
            conn.exec_driver_sql("INSERT INTO crm_boom VALUES (1)")
            raise RuntimeError("killed mid-run")

        monkeypatch.setattr(rollup, "_fill_next", boom)
        event.listen(db.engine, "checkin", checkin)
        try:
            with pytest.raises(RuntimeError):
                rollup.refresh(db.session, full=True)
        finally:
            event.remove(db.engine, "checkin", checkin)
        db.session.remove()
        after = db.session.execute(db.text("SELECT count(*), sum(amount), sum(orders) FROM crm_order_customer")).one()
    assert returned and set(returned) == {defaults}
    assert tuple(after) == tuple(before)


def test_the_sqlite_incremental_refresh_reads_changed_numbers_by_key(app, dbs, orders):
    """SQLite has no statistics for the refresh's temporary tables; without the forced
    join order it scanned the whole month and day tables for 1,000 changed numbers
    (≈ 150 ms each at M). The customers' periods are read by key; the day and month
    tables are their key's b-tree (WITHOUT ROWID) after a rebuild."""
    from sqlalchemy import event, text as sql

    _sqlite_app(app)
    plans = []

    def spy(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith(f"INSERT INTO {rollup.TMP_ROWS}") and "JOIN crm_order_" in statement:
            cur = conn.connection.dbapi_connection.cursor()
            plans.append(" | ".join(r[3] for r in cur.execute("EXPLAIN QUERY PLAN " + statement)))
            cur.close()

    with app.app_context():
        rollup.refresh(db.session, full=True)
        db.session.remove()
        shapes = dict(db.session.execute(sql(
            "SELECT name, sql FROM sqlite_master WHERE name IN ('crm_order_day', 'crm_order_month')")).all())
        db.session.remove()
        assert set(shapes) == {"crm_order_day", "crm_order_month"}
        assert all(s.rstrip().endswith("WITHOUT ROWID") for s in shapes.values()), shapes
    with dbs() as s:
        s.execute(Order.__table__.update().where(Order.customer_number == orders["c"])
                  .values(status=6))
        s.commit()
    with app.app_context():
        event.listen(db.engine, "after_cursor_execute", spy)
        try:
            assert rollup.refresh(db.session)["changed"] == 1
        finally:
            event.remove(db.engine, "after_cursor_execute", spy)
            db.session.remove()
    assert len(plans) == 2, plans
    for plan in plans:
        assert "SCAN a" in plan and "SEARCH m USING PRIMARY KEY (number=?)" in plan, plan
    with dbs() as s:
        assert as_dict(rollup.order_totals(s)) == raw_totals(s)


def test_the_running_totals_follow_every_change_on_postgresql(app, dbs, orders, user_id):
    """PostgreSQL: crm_order_running (per customer its days and running cents) is built
    by the rebuild, kept by the incremental refresh (the snapshot comparison above
    includes it) and by a merge: after each it equals the running totals computed
    afresh from crm_order_customer's day rows, and a range read from it (the
    difference of two running totals) equals the raw query."""
    from sqlalchemy import text as sql

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("the running totals are PostgreSQL's (arrays)")
        rollup.refresh(db.session, full=True)
        db.session.remove()

    def fresh_equals_kept():
        with app.app_context():
            try:
                kept = db.session.execute(sql(
                    f"SELECT customer_id, days, cents FROM {rollup.RUNNING} ORDER BY 1")).all()
                db.session.execute(sql(
                    "CREATE TEMPORARY TABLE tmp_running (customer_id INTEGER, days INTEGER[], "
                    "cents BIGINT[]) ON COMMIT DROP"))
                db.session.execute(sql(rollup.running_sql("tmp_running", "crm_order_customer")))
                fresh = db.session.execute(sql(
                    "SELECT customer_id, days, cents FROM tmp_running ORDER BY 1")).all()
                db.session.rollback()
                assert kept == fresh and kept
                return {r[0]: (r[1], r[2]) for r in kept}
            finally:
                db.session.remove()

    with dbs() as s:
        a_id = s.scalar(select(Customer.id).where(Customer.number == orders["a"]))
    running = fresh_equals_kept()
    days, cents = running[a_id]
    assert days == sorted(days) and cents == sorted(cents)      # running: never smaller
    assert days[-1] == 20310402 and cents[-1] == round(100 * float(raw_totals_of(dbs, orders["a"])))
    with dbs() as s:                                        # an order of c changes status
        s.execute(Order.__table__.update().where(Order.customer_number == orders["c"])
                  .values(status=6))
        s.commit()
    with app.app_context():
        assert rollup.refresh(db.session)["changed"] == 1
        db.session.remove()
    fresh_equals_kept()
    with dbs() as s:                                        # c merged into a
        c_id = s.scalar(select(Customer.id).where(Customer.number == orders["c"]))
        rollup.fold_merged(s, a_id, c_id)
        s.commit()
    running = fresh_equals_kept()
    assert c_id not in running


def raw_totals_of(dbs, number):
    with dbs() as s:
        return raw_totals(s)[number]


def test_backups_leave_out_the_running_totals_and_a_restore_rebuilds_them(app, dbs, orders):
    """crm_order_running is derived (PostgreSQL arrays, which a SQLite target could not
    hold): backups leave it out, and a logical restore into PostgreSQL rebuilds it from
    the restored crm_order_customer (``backup._rebuild_derived``)."""
    from sqlalchemy import text as sql

    from app.workflows import backup

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("the running totals are PostgreSQL's (arrays)")
        rollup.refresh(db.session, full=True)
        db.session.remove()
        with db.engine.connect() as conn:
            assert rollup.RUNNING not in backup._tables(conn)
            assert "crm_order_customer" in backup._tables(conn)
            built = conn.execute(sql(f"SELECT * FROM {rollup.RUNNING} ORDER BY 1")).all()
        with db.engine.begin() as conn:             # as a restore leaves it: stale
            conn.execute(sql(f"DELETE FROM {rollup.RUNNING}"))
            backup._rebuild_derived(conn)
        with db.engine.connect() as conn:
            assert conn.execute(sql(f"SELECT * FROM {rollup.RUNNING} ORDER BY 1")).all() == built
        assert built
