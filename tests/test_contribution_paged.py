"""客户贡献分析 paged in SQL over the order rollup (issue 23.2/23.3): once the rollup is
built the report is one statement per page (app/reports/contribution.py,
``RollupQuery``). It must give exactly what the frame path (pandas over the raw
aggregate, used before the first refresh) gives: the same rows in the same order, the
same count, totals, chart and drill-down links, the same CSV and XLSX — for ranges of
whole months, partial months (edge days from the sales system), a range inside one
month, both comparisons, every sort, every page, a name filter and merged customers.
And it reads only the page: a bounded number of statements, never every row."""
from contextlib import contextmanager
from datetime import date
from itertools import product as combos

import pytest
from sqlalchemy import event, text

from app import reports
from app.extensions import db
from app.models import CustomerNumberAlias
from app.workflows import rollup

from . import factories as f


def _build(app, args):
    with app.app_context():
        try:
            return reports.build(db.session, "contribution", args)
        finally:
            db.session.remove()


def _outputs(app, args):
    with app.app_context():
        try:
            r = reports.build(db.session, "contribution", args)
            body = r.to_json()
            body.pop("data_as_of")
            return body, r.chart, r.to_csv()
        finally:
            db.session.remove()


def _refresh(app, full=False):
    with app.app_context():
        try:
            rollup.refresh(db.session, full=full)
        finally:
            db.session.remove()


@contextmanager
def _statements():
    """The SQL statements run on the app's engine inside the block (in an app
    context), as a list; the session is removed afterwards."""
    fetched = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        fetched.append(statement)
    event.listen(db.engine, "after_cursor_execute", seen)
    try:
        yield fetched
    finally:
        event.remove(db.engine, "after_cursor_execute", seen)
        db.session.remove()


def _forget_rollup(app):
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("DELETE FROM crm_rollup_state"))


@pytest.fixture
def shop(app, dbs, user_id, uniq):
    """Seven customers named 贡献<tag>… with orders in 2033-2034 (whole and partial
    months, statuses that do not count, equal amounts so the name decides, a customer
    with orders only in the comparison period) and one merged customer whose old
    number's orders count for the survivor."""
    tag = uniq()[-6:]
    prefix = f"贡献{tag}"
    with dbs() as s:
        m = user_id("manager1")
        names = ["甲", "乙", "丙", "丁", "戊", "己", "庚"]
        cs = [f.customer(s, m, name=f"{prefix}{n}公司") for n in names]
        alias = f"KHP{tag}"
        s.add(CustomerNumberAlias(number=alias, customer_id=cs[0].id, note="合并",
                                  created_by_fk=user_id("admin"), changed_by_fk=user_id("admin")))
        p = f.product(s, price="10.00")
        rows = [
            (cs[0].number, date(2033, 1, 5), 6, 3, "10.00"),
            (cs[0].number, date(2034, 1, 10), 5, 2, "10.00"),
            (alias, date(2034, 2, 15), 6, 1, "10.05"),          # merged: counts for 甲
            (alias, date(2034, 1, 20), 6, 2, "10.00"),          # … in a month 甲 has too
            (cs[1].number, date(2034, 1, 31), 6, 5, "10.00"),   # equal to 丙 in Jan 2034
            (cs[2].number, date(2034, 1, 1), 5, 5, "10.00"),
            (cs[2].number, date(2034, 3, 20), 6, 1, "0.01"),
            (cs[3].number, date(2033, 2, 10), 6, 7, "10.00"),   # only in 2033
            (cs[4].number, date(2034, 2, 28), 4, 9, "10.00"),   # cancelled: not counted
            (cs[4].number, date(2034, 2, 14), 6, 4, "12.34"),
            (cs[5].number, date(2034, 12, 31), 6, 1, "99.99"),
            (cs[5].number, date(2033, 12, 1), 5, 1, "99.99"),
            (cs[6].number, date(2034, 3, 5), 2, 8, "10.00"),    # not shipped: not counted
        ]
        for number, day, status, qty, price in rows:
            f.order(s, number, [(p, qty, price)], status=status, day=day)
        s.commit()
    return prefix


RANGES = [
    {},
    {"year": "2034"},
    {"from": "2034-01-01", "to": "2034-03-31"},       # whole months
    {"from": "2034-01-01", "to": "2034-02-28"},       # 乙 and 丙 equal: the name decides
    {"from": "2034-01-10", "to": "2034-02-20"},       # partial first and last month
    {"from": "2034-02-01", "to": "2034-02-14"},       # inside one month
    {"from": "2034-02-01", "to": "2034-02-28"},       # one whole month
    {"from": "2033-12-15", "to": "2035-01-01"},
]
COMPARES = [None, "previous", "last_year"]


def _cases(prefix):
    for rng, cmp in combos(RANGES, COMPARES):
        if cmp and not rng:
            continue                                   # a comparison needs a range
        base = dict(rng, customer=prefix)
        if cmp:
            base["compare"] = cmp
        sorts = [None, "customer_name", "amount"] + (["amount_compare", "amount_change"]
                                                      if cmp else [])
        for sort, order in combos(sorts, (None, "asc", "desc")):
            if sort is None and order:
                continue
            args = dict(base)
            if sort:
                args["sort"] = sort
            if order:
                args["order"] = order
            yield dict(args, page_size="3")
            if sort in (None, "amount_change", "amount", "amount_compare"):
                yield dict(args, page_size="2", page="1")
                yield dict(args, page_size="2", page="9")   # past the end: the last page


def test_paged_equals_the_frame_path_for_every_range_compare_sort_and_page(app, shop):
    cases = list(_cases(shop))
    _forget_rollup(app)
    before = [_outputs(app, a) for a in cases]
    _refresh(app)
    with app.app_context():
        assert reports.contribution.paged(db.session, reports.parse_params({})) is not None
        db.session.remove()
    after = [_outputs(app, a) for a in cases]
    for args, b, a in zip(cases, before, after):
        assert a[0] == b[0], args
        assert a[1] == b[1], args
        assert a[2] == b[2], args
    # the fixture's figures, by hand. 2034: 己 99.99, 甲 2 × 10 + 2 × 10 + 10.05 (two
    # orders of its merged number), 丙 50 + 0.01, 乙 50, 戊 4 × 12.34 (the cancelled
    # order not counted)
    body = after[cases.index(dict(year="2034", customer=shop, page_size="3"))][0]
    assert body["count"] == 5 and body["total"]["amount"] == "299.41"
    assert [(r["customer_name"][-3:], r["amount"]) for r in body["rows"]] == [
        ("己公司", "99.99"), ("甲公司", "50.05"), ("丙公司", "50.01")]
    tie = after[cases.index(dict(RANGES[3], customer=shop, page_size="3"))][0]
    assert [r["customer_name"][-3:] for r in tie["rows"]] == ["甲公司", "丙公司", "乙公司"]
    assert body["rows"][0]["link"].startswith("/order/list/?_flt_3_customer_number=")


def test_xlsx_and_an_unfiltered_report_agree_too(app, shop):
    args = {"year": "2034", "compare": "previous", "sort": "amount_change", "page_size": "5"}
    _forget_rollup(app)
    with app.app_context():
        r = reports.build(db.session, "contribution", dict(args, customer=shop))
        xlsx_before = r.to_xlsx()
        full = reports.build(db.session, "contribution", args)
        full_before = (full.count, full.json_total(), full.chart["title"],
                       len(full.to_csv()))
        db.session.remove()
    _refresh(app)
    with app.app_context():
        r = reports.build(db.session, "contribution", dict(args, customer=shop))
        assert r.row_count is not None                      # the paged path
        from openpyxl import load_workbook
        import io
        rows = lambda b: [[c.value for c in row] for row in load_workbook(io.BytesIO(b)).active]
        assert rows(r.to_xlsx()) == rows(xlsx_before)
        full = reports.build(db.session, "contribution", args)
        assert (full.count, full.json_total(), full.chart["title"],
                len(full.to_csv())) == full_before
        db.session.remove()


def test_a_page_reads_only_the_page(app, shop):
    """The paged path runs a few statements and fetches the page's rows (plus the
    chart's top 20), never every customer; the frame path fetches them all."""
    _refresh(app)
    with app.app_context(), _statements() as fetched:
        r = reports.build(db.session, "contribution", {"page_size": "2", "sort": "customer_name"})
        assert len(r.main.df) == 2 and r.count > 2
        assert len(r.chart["categories"]) == min(20, r.count)
    report_sql = [s for s in fetched if "crm_order_customer" in s]
    # all time is one row per customer in crm_order_customer (period 0): the page, its
    # count and totals, the chart's top 20 — the page and the chart are LIMITed
    assert len(report_sql) == 3, report_sql
    assert sum("LIMIT" in s.upper() for s in report_sql) == 2
    assert all("LIMIT" in s.upper() or "count(*)" in s.lower() for s in report_sql)
    assert not any("crm_order_month" in s or "GROUP BY" in s.upper() for s in report_sql)


def test_a_merge_after_the_refresh_counts_for_the_survivor_at_once(app, api, dbs, shop):
    """crm_order_customer is per customer: a merge folds the merged customer's years
    into the survivor's in its own transaction — the report equals the frame path
    (which maps the new alias at read time) without a refresh."""
    from app.models import Customer

    _refresh(app)
    with dbs() as s:
        ids = dict(s.query(Customer.name, Customer.id).filter(Customer.name.like(f"{shop}%")))
    # 己 (2033 + 2034) into 丙 (2034): both have 2034, only 己 has 2033
    r = api("supervisor").post("/api/v1/import/merge", json={
        "survivor_id": ids[f"{shop}丙公司"], "merged_id": ids[f"{shop}己公司"]})
    assert r.status_code == 200, r.text
    cases = [dict(rng, customer=shop, page_size="10") for rng in RANGES]
    cases += [dict(RANGES[1], customer=shop, compare="previous", page_size="10")]
    after = [_outputs(app, a) for a in cases]
    _forget_rollup(app)
    before = [_outputs(app, a) for a in cases]
    for args, b, a in zip(cases, before, after):
        assert a == b, args
    rows = {r["customer_name"][-3:]: r["amount"] for r in after[0][0]["rows"]}
    assert "己公司" not in rows and rows["丙公司"] == "249.99"   # 50 + 0.01 + 99.99 + 99.99


def test_api_and_page_read_the_rollup(app, api, web, shop):
    _refresh(app)
    body = api("supervisor").get("/api/v1/report/contribution",
                                 query_string={"customer": shop, "year": "2034",
                                               "compare": "last_year", "page_size": "2"}).json
    assert body["data_as_of"] and body["count"] == 6 and len(body["rows"]) == 2
    assert body["total"]["amount_compare"] == "199.99"   # 2033: 甲 30, 丁 70, 己 99.99
    page = web("supervisor").get("/reports/contribution/", query_string={
        "customer": shop, "year": "2034", "page_size": "2"})
    assert page.status_code == 200
    assert "订单数据更新于" in page.text and f"{shop}己公司" in page.text
    bad = api("supervisor").get("/api/v1/report/contribution",
                                query_string={"sort": "nope"})
    assert bad.status_code == 400 and "排序列" in bad.json["message"]


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
def test_migration_0013_sums_a_rollup_already_built(tmp_path, backend_name):
    """An install upgraded to 0013 (and 0016, quarters) with its rollup built reads
    crm_order_customer at once: the migrations fill it with what the next refresh
    would build."""
    import os

    from flask_migrate import downgrade, upgrade

    from .conftest import build_app, dispose_app

    if backend_name == "postgresql" and not os.environ.get("CRM_TEST_DATABASE_URL"):
        pytest.skip("PostgreSQL runs when CRM_TEST_DATABASE_URL is set")
    app = build_app(tmp_path, backend_name)
    try:
        with app.app_context():
            from app.models import Customer
            m = db.session.scalar(text("SELECT id FROM ab_user WHERE username = 'manager1'"))
            c1, c2 = f.customer(db.session, m), f.customer(db.session, m)
            p = f.product(db.session, price="2.50")
            for number, day, qty in ((c1.number, date(2035, 1, 2), 4), (c1.number, date(2036, 5, 1), 1),
                                     (c2.number, date(2036, 7, 9), 3)):
                f.order(db.session, number, [(p, qty, "2.50")], status=6, day=day)
            db.session.commit()
            rollup.refresh(db.session)
            built = sorted(tuple(r) for r in db.session.execute(text(
                "SELECT period, customer_id, amount, orders FROM crm_order_customer")))
            assert (0, c1.id, 1250, 2) in built and (2036, c2.id, 750, 1) in built
            assert (203501, c1.id, 1000, 1) in built and (203605, c1.id, 250, 1) in built
            # quarters (0016): 2035 Q1, 2036 Q2 and Q3
            assert {(20351, c1.id, 1000, 1), (20362, c1.id, 250, 1),
                    (20363, c2.id, 750, 1)} <= set(built)
            db.session.remove()
            assert (20350102, c1.id, 1000, 1) in built                  # a day
            downgrade(revision="0012")
            upgrade()
            again = sorted(tuple(r) for r in db.session.execute(text(
                "SELECT period, customer_id, amount, orders FROM crm_order_customer")))
            # the migrations sum the months (the days need the sales system: the next
            # refresh builds them; until then a partial month is read from the sales)
            assert again == [r for r in built if r[0] < 10000000]
            assert not rollup.has_days(db.session)
            # a refresh by this code before the upgrade (the new index and the quarters
            # already there): 0014 and 0016 still apply and change nothing
            db.session.remove()
            downgrade(revision="0013")
            rollup.refresh(db.session)
            db.session.remove()
            upgrade()
            assert sorted(tuple(r) for r in db.session.execute(text(
                "SELECT period, customer_id, amount, orders FROM crm_order_customer"))) == built
            assert rollup.has_days(db.session)
            assert Customer  # the model still maps the table
            db.session.remove()
    finally:
        dispose_app(app)


def test_the_refresh_swap_does_not_wait_for_customer_readers(app, shop):
    """A request reading the customers (a transaction still open) must not hold up the
    refresh's swap — nor would the waiting swap hold up every later customer read.
    (A foreign key from crm_order_customer to crm_customer did exactly that on
    PostgreSQL: dropping the old table locked crm_customer exclusively.)"""
    import threading

    _refresh(app)
    with app.app_context():
        reader = db.engine.connect()
        try:
            reader.execute(text("SELECT count(*) FROM crm_customer")).scalar()   # open txn
            done = {}

            def run():
                with app.app_context():
                    try:
                        done["state"] = rollup.refresh(db.session)
                    finally:
                        db.session.remove()
            t = threading.Thread(target=run, daemon=True)
            t.start()
            t.join(60)
            finished = not t.is_alive()
        finally:
            reader.rollback()
            reader.close()
        t.join(120)
        assert finished, "the swap waited for a transaction that had read crm_customer"
        assert done["state"]["customers"] > 0


def test_comparing_two_single_periods_walks_the_index(app, shop):
    """year=… & compare (or one month & compare) sorted by an amount: two LIMITed
    reads of crm_order_customer (the sorted period's rows, then the other period's
    rows it lacks) and one aggregate (a distinct count) for the count and totals — no GROUP BY, no
    materialised per-customer sum; the page straddling the two agrees with the
    frame path (the equivalence test above)."""
    _refresh(app)
    with app.app_context(), _statements() as fetched:
        for args in ({"year": "2034", "compare": "previous"},
                     {"from": "2034-01-01", "to": "2034-03-31", "compare": "last_year"},
                     {"from": "2034-02-01", "to": "2034-02-28", "compare": "last_year",
                      "sort": "amount_compare", "order": "asc"}):
            fetched.clear()
            r = reports.build(db.session, "contribution", dict(args, page_size="2"))
            assert r.row_count is not None and r.count >= len(r.main.df)
            sql = [s for s in fetched if "crm_order_customer" in s]
            assert sql and not any("GROUP BY" in s.upper() or "MATERIALIZED" in s.upper()
                                   for s in sql), sql
            assert all("LIMIT" in s.upper() or "count(" in s.lower() for s in sql), sql


def test_the_postgresql_array_literal_round_trips_any_number(app):
    """The partial-month path sends its numbers and day rows to PostgreSQL as one
    array literal each: quotes, backslashes, commas, braces and blanks survive."""
    from app.reports.contribution import pg_array
    values = ['KH1', 'a"b', 'c\\d', 'e,f', '{g}', ' h ', 'NULL', '客户']
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("PostgreSQL only (SQLite takes IN lists)")
        got = db.session.execute(text("SELECT unnest(CAST(:a AS varchar[]))"),
                                 {"a": pg_array(values)}).scalars().all()
        assert got == values
        assert db.session.execute(text("SELECT unnest(CAST(:a AS bigint[]))"),
                                  {"a": pg_array([1, -2, 10**12])}).scalars().all() == [1, -2, 10**12]
        db.session.remove()


def test_the_name_walk_gives_the_pages_the_join_gives(app, shop, monkeypatch):
    """Sorted by name with no name filter, SQLite walks the customers' name index for
    the first pages; each page (both directions, a page past the walk's depth, the
    last page) equals the join-and-sort page — and the walk really ran."""
    from app.reports import contribution
    _refresh(app)
    pages = [dict(sort="customer_name", order=o, page_size=str(n), page=str(p), **rng)
             for o in ("asc", "desc") for n, p in ((3, 0), (2, 1), (4, 2))
             for rng in ({}, {"year": "2034"})]
    walked = []
    real = contribution.RollupQuery._name_walk

    def spy(self, sort, depth):
        got = real(self, sort, depth)
        walked.append(got is not None)
        return got
    monkeypatch.setattr(contribution.RollupQuery, "_name_walk", spy)
    with_walk = [_outputs(app, a) for a in pages]
    monkeypatch.setattr(contribution, "NAME_WALK_MAX", 0)
    without = [_outputs(app, a) for a in pages]
    for args, a, b in zip(pages, with_walk, without):
        assert a == b, args
    with app.app_context():
        sqlite = db.engine.dialect.name == "sqlite"
    assert any(walked) == sqlite


def test_quarters_years_and_all_time_are_the_sums_of_their_months(app, shop):
    """After a refresh every derived period of crm_order_customer — quarter YYYYQ, year
    YYYY, all time 0 — is its customer's months summed (amount and orders), and every
    month is the sum of its days (YYYYMMDD)."""
    _refresh(app)
    with app.app_context():
        rows = db.session.execute(text(
            "SELECT customer_id, period, amount, orders FROM crm_order_customer")).all()
        db.session.remove()
    months = [(c, p, a, n) for c, p, a, n in rows if 100000 <= p < 1000000]
    want = {}
    for c, p, a, n in months:
        for key in ((c, (p // 100) * 10 + (p % 100 + 2) // 3), (c, p // 100), (c, 0)):
            got = want.setdefault(key, [0, 0])
            got[0] += a
            got[1] += n
    derived = {(c, p): [a, n] for c, p, a, n in rows if p < 100000}
    assert derived == want
    assert any(10000 <= p < 100000 for _, p in derived)      # quarters are there
    by_days = {}
    for c, p, a, n in rows:
        if p >= 10000000:
            got = by_days.setdefault((c, p // 100), [0, 0])
            got[0] += a
            got[1] += n
    assert by_days == {(c, p): [a, n] for c, p, a, n in months}
    assert by_days                                           # days are there


PARTIAL = [{"from": "2034-01-10", "to": "2034-02-20"}, {"from": "2034-02-01", "to": "2034-02-14"},
           {"from": "2033-12-15", "to": "2035-01-01"}, {"from": "2034-02-15", "to": "2034-02-15"},
           {"from": "2034-01-10", "to": "2034-02-20", "compare": "previous"},
           {"from": "2034-02-15", "to": "2034-02-15", "compare": "last_year"}]


def _outputs_and_sales_sql(app, cases):
    """(the outputs of ``cases``, the statements they ran on the sales bind)."""
    seen = []
    engine = db.engines["sales"]

    def listen(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)
    event.listen(engine, "after_cursor_execute", listen)
    try:
        return [_outputs(app, a) for a in cases], seen
    finally:
        event.remove(engine, "after_cursor_execute", listen)


def test_partial_months_are_read_from_the_rollup_days(app, shop):
    """A range's partial first/last month (and a single day) is read from the rollup's
    day rows: the same report as the frame path, and not one statement on the sales
    system per request; a rollup built by older code (no day rows) reads those days
    from the sales system and gives the same report too."""
    cases = [dict(r, customer=shop, page_size="3", **({"sort": s} if s else {}))
             for r in PARTIAL for s in (None, "amount", "customer_name")]
    _forget_rollup(app)
    before = [_outputs(app, a) for a in cases]
    _refresh(app)
    with app.app_context():
        after, seen = _outputs_and_sales_sql(app, cases)
    assert after == before
    assert seen == []
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("DELETE FROM crm_order_customer WHERE period >= 10000000"))
        older, seen = _outputs_and_sales_sql(app, cases)
    assert older == before
    assert any("sales_order" in s for s in seen)
    # one day alone is one period of the rollup: the single-period walk, no GROUP BY
    _refresh(app, full=True)        # the day rows deleted by hand: rebuild them all
    with app.app_context(), _statements() as fetched:
        reports.build(db.session, "contribution",
                      {"from": "2034-02-15", "to": "2034-02-15", "page_size": "2"})
    day_sql = [s for s in fetched if "crm_order_customer" in s]
    assert any("customer_name" in s for s in day_sql)
    assert not any("GROUP BY" in s.upper() for s in day_sql), day_sql


def test_ranges_of_several_grains_read_the_running_totals_on_postgresql(app, shop, monkeypatch):
    """PostgreSQL: a range that is not one period (several grains, partial months) is
    read from crm_order_running — one row per customer, the difference of two running
    totals — not from the period rows; with every comparison, sort and page it gives
    what summing the period rows gives (and the frame path, above)."""
    _refresh(app)
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("the running totals are PostgreSQL's (arrays)")
        db.session.remove()
    cases = [a for a in _cases(shop) if "from" in a or a.get("compare")]
    with app.app_context(), _statements() as seen:
        _build(app, dict(RANGES[4], customer=shop, compare="previous"))
    assert any(rollup.RUNNING in q for q in seen)
    # (the one probe of crm_order_customer left: whether the rollup holds days)
    assert not any("crm_order_customer" in q and "GROUP BY" in q for q in seen), seen
    running = [_outputs(app, a) for a in cases]
    monkeypatch.setattr(rollup, "has_running", lambda session: False)
    with app.app_context(), _statements() as seen:
        _build(app, dict(RANGES[4], customer=shop, compare="previous"))
    assert not any(rollup.RUNNING in q for q in seen)
    assert any("crm_order_customer" in q and "GROUP BY" in q for q in seen)
    grains = [_outputs(app, a) for a in cases]
    assert len(cases) > 100
    for args, r, g in zip(cases, running, grains):
        assert r == g, args
