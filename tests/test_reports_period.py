"""统计报表 with a date range, a comparison, paging/sort, drill-down links, the service
figures (issue 22.4), exports and bad input. Figures are checked against hand-computed
fixtures; each fixture lives in a range of its own (1980s dates) or behind a unique
customer name, since the database is shared."""
import io
import json
import re
from datetime import date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
from openpyxl import load_workbook

from app.models import ChurnWarning
from app.reports.period import Period, compare_period, parse_period, preset
from app.workflows.errors import ValidationError

from . import factories as f


def get(api, name, user="supervisor", **params):
    r = api(user).get(f"/api/v1/report/{name}", query_string=params)
    assert r.status_code == 200, r.text
    return r.json


def list_rows(web, link, user="supervisor"):
    """The rows of the list a drill-down link opens, via the list's own export
    (same query string): [dict of the CSV columns]."""
    path, _, qs = link.partition("?")
    export = {"/order/list/": "/order/export/csv/", "/customer/list/": "/customer/export/csv/",
              "/service/archive/": "/service/archive/export/csv/",
              "/churn/list/": "/churn/export/csv/"}[path]
    c = web(user)
    page = c.get(link)
    assert page.status_code == 200, page.text[:500]
    r = c.get(f"{export}?{qs}")
    assert r.status_code == 200
    return pd.read_csv(io.BytesIO(r.data), encoding="utf-8-sig", dtype=str).to_dict("records"), \
        page.text


# ---- periods ------------------------------------------------------------------------------

def test_presets():
    today = date(2025, 5, 15)
    assert preset("month", today) == Period(date(2025, 5, 1), date(2025, 5, 31))
    assert preset("quarter", today) == Period(date(2025, 4, 1), date(2025, 6, 30))
    assert preset("year", today) == Period(date(2025, 1, 1), date(2025, 12, 31))
    assert preset("last_year", today) == Period(date(2024, 1, 1), date(2024, 12, 31))
    assert preset("quarter", date(2025, 12, 31)) == Period(date(2025, 10, 1), date(2025, 12, 31))


@pytest.mark.parametrize("start,end,kind,want", [
    ("2025-03-01", "2025-03-31", "previous", ("2025-02-01", "2025-02-28")),   # whole month
    ("2025-04-01", "2025-06-30", "previous", ("2025-01-01", "2025-03-31")),   # quarter
    ("2025-01-01", "2025-12-31", "previous", ("2024-01-01", "2024-12-31")),
    ("2025-03-10", "2025-03-19", "previous", ("2025-02-28", "2025-03-09")),   # 10 days
    ("2024-02-29", "2024-03-05", "last_year", ("2023-02-28", "2023-03-05")),
    ("2025-01-01", "2025-12-31", "last_year", ("2024-01-01", "2024-12-31")),
])
def test_compare_periods(start, end, kind, want):
    p = Period(date.fromisoformat(start), date.fromisoformat(end))
    c = compare_period(p, kind)
    assert (c.start.isoformat(), c.end.isoformat()) == want


def test_year_means_whole_year_and_from_to_win():
    assert parse_period({"year": "2024"})[0] == Period(date(2024, 1, 1), date(2024, 12, 31))
    assert parse_period({"year": "2024", "from": "2024-03-01", "to": "2024-03-02"})[0] == \
        Period(date(2024, 3, 1), date(2024, 3, 2))
    assert parse_period({})[0] == Period()


@pytest.mark.parametrize("args,field,text", [
    ({"from": "2025-02-01", "to": "2025-01-01"}, "from", "晚于"),
    ({"from": "2010-01-01", "to": "2025-01-01"}, "to", "10 年"),
    ({"from": "2025-01-01", "to": "2025-02-01", "compare": "week"}, "compare", "对比方式"),
    ({"from": "2025/01/01"}, "from", "YYYY-MM-DD"),
    ({"to": "2025-02-30"}, "to", "YYYY-MM-DD"),
    ({"compare": "previous"}, "compare", "日期范围"),
])
def test_bad_input_is_400_in_chinese(api, web, args, field, text):
    with pytest.raises(ValidationError):
        parse_period(args)
    for name in ("contribution", "service"):
        r = api("supervisor").get(f"/api/v1/report/{name}", query_string=args)
        assert r.status_code == 400 and r.json["field"] == field and text in r.json["message"]
    page = web("exec").get("/reports/composition/", query_string=args)
    assert page.status_code == 400 and text in page.text


@pytest.mark.parametrize("args,field", [({"sort": "nonsense"}, "sort"), ({"order": "up"}, "order"),
                                        ({"page": "-1"}, "page"), ({"page_size": "0"}, "page_size"),
                                        ({"page_size": "501"}, "page_size")])
def test_bad_sort_and_page_are_400(api, web, args, field):
    r = api("supervisor").get("/api/v1/report/contribution", query_string=args)
    assert r.status_code == 400 and r.json["field"] == field
    assert web("supervisor").get("/reports/churn/", query_string=args).status_code == 400


# ---- 客户贡献分析 ------------------------------------------------------------------------

@pytest.fixture
def orders(dbs, user_id, uniq):
    """A: 2023-03-05 250.50, 2024-12-31 30.00 (+ a status-3 order); B: 2024-01-01 99.99;
    C: 2023-06-01 10.00 only."""
    prefix = uniq("区间贡献")
    m1 = user_id("manager1")
    with dbs() as s:
        a = f.customer(s, m1, name=f"{prefix}甲")
        b = f.customer(s, m1, name=f"{prefix}乙")
        c = f.customer(s, m1, name=f"{prefix}丙")
        p = f.product(s)
        f.order(s, a.number, [(p, 2, "100.00"), (p, 1, "50.50")], status=6, day=date(2023, 3, 5))
        f.order(s, a.number, [(p, 3, "10.00")], status=5, day=date(2024, 12, 31))
        f.order(s, a.number, [(p, 9, "9.00")], status=3, day=date(2024, 6, 1))
        f.order(s, b.number, [(p, 1, "99.99")], status=6, day=date(2024, 1, 1))
        f.order(s, c.number, [(p, 1, "10.00")], status=6, day=date(2023, 6, 1))
        s.commit()
        return {"prefix": prefix, "a": a.name, "b": b.name, "c": c.name, "a_no": a.number}


def test_contribution_range_and_previous_year(api, orders):
    fx = orders
    body = get(api, "contribution", customer=fx["prefix"], **{"from": "2024-01-01",
               "to": "2024-12-31", "compare": "previous"})
    assert body["period"] == {"from": "2024-01-01", "to": "2024-12-31"}
    assert body["compare"] == {"kind": "previous", "from": "2023-01-01", "to": "2023-12-31"}
    got = [{k: r[k] for k in ("customer_name", "amount", "amount_compare", "amount_change")}
           for r in body["rows"]]
    assert got == [
        {"customer_name": fx["b"], "amount": "99.99", "amount_compare": "0.00",
         "amount_change": None},
        {"customer_name": fx["a"], "amount": "30.00", "amount_compare": "250.50",
         "amount_change": -88.0},          # (30 - 250.5) / 250.5
        {"customer_name": fx["c"], "amount": "0.00", "amount_compare": "10.00",
         "amount_change": -100.0},
    ]
    assert body["total"] == {"customer_name": "合计", "amount": "129.99",
                             "amount_compare": "260.50", "amount_change": -50.1}
    assert body["count"] == 3 and body["page"] == 0 and body["page_size"] == 50
    # last_year of a whole year is the same comparison here; a range without C's order
    body = get(api, "contribution", customer=fx["prefix"], compare="last_year",
               **{"from": "2023-03-01", "to": "2023-03-31"})
    assert body["compare"]["from"] == "2022-03-01"
    assert [(r["customer_name"], r["amount"], r["amount_compare"]) for r in body["rows"]] == [
        (fx["a"], "250.50", "0.00")]
    # the old year filter gives the same figures as the range
    assert [r["amount"] for r in get(api, "contribution", customer=fx["prefix"],
                                     year="2024")["rows"]] == ["99.99", "30.00"]


def test_contribution_paging_and_sort(api, orders):
    fx = orders
    q = {"customer": fx["prefix"], "from": "2023-01-01", "to": "2024-12-31"}
    full = get(api, "contribution", **q)["rows"]
    assert [r["customer_name"] for r in full] == [fx["a"], fx["b"], fx["c"]]  # 280.50 99.99 10
    page = get(api, "contribution", page=1, page_size=1, **q)
    assert page["count"] == 3 and [r["customer_name"] for r in page["rows"]] == [fx["b"]]
    assert page["total"]["amount"] == "390.49"   # the totals are of every row, not the page
    asc = get(api, "contribution", sort="amount", order="asc", **q)["rows"]
    assert [r["customer_name"] for r in asc] == [fx["c"], fx["b"], fx["a"]]
    by_name = get(api, "contribution", sort="customer_name", order="desc", **q)
    assert [r["customer_name"] for r in by_name["rows"]] == sorted(
        [fx["a"], fx["b"], fx["c"]], reverse=True)
    assert by_name["sort"] == "customer_name" and by_name["order"] == "desc"
    # a page past the end shows the last page
    assert get(api, "contribution", page=99, page_size=2, **q)["page"] == 1


def test_contribution_drill_down_lists_exactly_the_counted_orders(api, web, orders):
    fx = orders
    body = get(api, "contribution", customer=fx["prefix"], **{"from": "2024-01-01",
               "to": "2024-12-31"})
    row = next(r for r in body["rows"] if r["customer_name"] == fx["a"])
    qs = parse_qs(urlsplit(row["link"]).query)
    assert qs["_flt_3_customer_number"] == [fx["a_no"]]
    listed, _ = list_rows(web, row["link"])
    assert [(o["下单日期"], o["总金额"]) for o in listed] == [("2024-12-31", "30.00")]
    # without a range: every counted order of A (the status-3 order is not in the list)
    row = next(r for r in get(api, "contribution", customer=fx["prefix"])["rows"]
               if r["customer_name"] == fx["a"])
    listed, _ = list_rows(web, row["link"])
    assert sorted(o["总金额"] for o in listed) == ["250.50", "30.00"]


def test_contribution_exports_carry_range_and_comparison(api, web, orders):
    fx = orders
    q = {"customer": fx["prefix"], "from": "2024-01-01", "to": "2024-12-31",
         "compare": "last_year", "format": "xlsx"}
    r = api("exec").get("/api/v1/report/contribution", query_string=q)
    ws = load_workbook(io.BytesIO(r.data)).active
    values = list(ws.iter_rows(values_only=True))
    assert values[0] == ("客户名称", "订单金额（元）", "订单金额（元）（去年同期）", "变化（%）",
                         "统计期间", "对比期间")
    assert values[1][:4] == (fx["b"], 99.99, 0, None)
    assert values[2][:4] == (fx["a"], 30, 250.5, -88)
    assert values[-1][:4] == ("合计", 129.99, 260.5, -50.1)
    assert values[1][4:] == ("2024-01-01 至 2024-12-31", "2023-01-01 至 2023-12-31（去年同期）")
    assert len(values) == 5   # header, 3 customers, total: every row, not a page
    r = web("exec").get("/reports/contribution/", query_string=dict(q, format="csv",
                                                                   page_size=1))
    df = pd.read_csv(io.BytesIO(r.data), encoding="utf-8-sig", dtype=str)
    assert len(df) == 4 and df.iloc[-1]["订单金额（元）"] == "129.99"
    assert set(df["对比期间"]) == {"2023-01-01 至 2023-12-31（去年同期）"}


def test_contribution_page_shows_comparison_and_links(web, orders):
    fx = orders
    r = web("supervisor").get("/reports/contribution/", query_string={
        "customer": fx["prefix"], "from": "2024-01-01", "to": "2024-12-31",
        "compare": "previous", "page_size": "2"})
    assert r.status_code == 200
    html = r.text
    assert "对比期间" in html and "2023-01-01 至 2023-12-31" in html and "-88.0%" in html
    assert "/order/list/?_flt_3_customer_number=" in html and "crm-report-charts" in html
    assert "第 1 / 2 页" in html and "page=1" in html
    assert "本月" in html and "本季度" in html and "去年" in html and "自定义" in html


# ---- 客户构成分析 ------------------------------------------------------------------------

def test_composition_range_compare_and_customer_list(api, web, dbs, user_id, uniq):
    m1 = user_id("manager1")
    names = {}
    with dbs() as s:
        for i, (credit, when, status) in enumerate([
                (2, datetime(1987, 3, 5, 10), "normal"), (2, datetime(1987, 3, 31, 23, 59), "normal"),
                (5, datetime(1987, 3, 1), "normal"), (2, datetime(1987, 3, 9), "lost"),
                (2, datetime(1987, 2, 10), "normal"), (2, datetime(1987, 4, 1), "normal")]):
            c = f.customer(s, m1, name=uniq(f"构成区间{i}"), credit=credit, created_on=when,
                           status=status)
            names[i] = c.name
        s.commit()
    body = get(api, "composition", by="credit", compare="previous",
               **{"from": "1987-03-01", "to": "1987-03-31"})
    rows = {r["item"]: r for r in body["rows"]}
    assert rows["2"]["count"] == 2 and rows["5"]["count"] == 1 and rows["1"]["count"] == 0
    assert rows["2"]["count_compare"] == 1 and rows["2"]["count_change"] == 100.0
    assert rows["5"]["count_compare"] == 0 and rows["5"]["count_change"] is None
    assert rows["2"]["percent"] == 66.67 and body["total"]["count"] == 3
    assert body["total"]["count_compare"] == 1
    listed, html = list_rows(web, rows["2"]["link"])
    assert sorted(r["名称"] for r in listed) == sorted([names[0], names[1]])
    assert names[0] in html and names[3] not in html
    # by level and by region: the link filters the relation
    lv = {r["item"]: r for r in get(api, "composition", by="level",
                                    **{"from": "1987-03-01", "to": "1987-03-31"})["rows"]}
    listed, _ = list_rows(web, lv["大客户"]["link"])
    assert len(listed) == lv["大客户"]["count"] == 3
    rg = {r["item"]: r for r in get(api, "composition", by="region",
                                    **{"from": "1987-03-01", "to": "1987-03-31"})["rows"]}
    listed, _ = list_rows(web, rg["北京"]["link"])
    assert len(listed) == rg["北京"]["count"] == 3


# ---- 客户服务分析 ------------------------------------------------------------------------

@pytest.fixture
def tickets(dbs, user_id, uniq):
    return make_tickets(dbs, user_id, uniq, 1986)


def make_tickets(dbs, user_id, uniq, year):
    """Six tickets of ``year`` (May–June, one in April: the previous period)."""
    m1 = user_id("manager1")
    t0 = datetime(year, 5, 10, 8, 0)
    with dbs() as s:
        cust = f.customer(s, m1, name=uniq("服务区间"))
        specs = [  # type, priority, created, first response after h, resolved after h, due h, sat
            ("咨询", "普通", t0, 2, 10, 12, 5),
            ("咨询", "普通", t0 + timedelta(days=1), 4, 30, 24, 3),
            ("咨询", "紧急", t0 + timedelta(days=2), 1, None, 24, None),
            ("投诉", "普通", t0 + timedelta(days=3), None, None, 24, None),
            ("投诉", "普通", datetime(year, 6, 2), 3, 5, 24, 4),
            ("咨询", "普通", datetime(year, 4, 20), 1, 2, 24, 1),  # the previous period
        ]
        for st, pr, created, resp, res, due, sat in specs:
            status = "archived" if res else ("handled" if resp else "created")
            f.service(s, cust, m1, status=status, service_type=st, priority=pr,
                      created_on=created, changed_on=created,
                      first_response_on=created + timedelta(hours=resp) if resp else None,
                      resolved_on=created + timedelta(hours=res) if res else None,
                      response_due=created + timedelta(hours=48),
                      resolution_due=created + timedelta(hours=due), satisfaction=sat)
        s.commit()
        return cust.name


def test_service_range_compare_figures_and_archive_link(api, web, tickets):
    body = get(api, "service", compare="previous", **{"from": "1986-05-01", "to": "1986-06-30"})
    assert body["compare"] == {"kind": "previous", "from": "1986-03-01", "to": "1986-04-30"}
    rows = {r["service_type"]: r for r in body["rows"]}
    assert rows["咨询"]["count"] == 3 and rows["咨询"]["count_compare"] == 1
    assert rows["咨询"]["count_change"] == 200.0 and rows["投诉"]["count"] == 2
    listed, html = list_rows(web, rows["咨询"]["link"])
    assert len(listed) == 3 and tickets in html
    assert sorted(r["状态"] for r in listed) == sorted(["已归档", "已归档", "已处理"])
    t = body["tables"]
    by = {(r["service_type"], r["priority"]): r for r in t["by_priority"]["rows"]}
    assert by[("咨询", "普通")] == {"service_type": "咨询", "priority": "普通", "count": 2,
                                   "response_hours": 3.0, "resolution_hours": 20.0,
                                   "within_percent": 50.0}
    assert by[("咨询", "紧急")]["response_hours"] == 1.0
    assert by[("咨询", "紧急")]["resolution_hours"] is None
    assert by[("咨询", "紧急")]["within_percent"] is None
    assert by[("投诉", "普通")]["response_hours"] == 3.0 and by[("投诉", "普通")]["count"] == 2
    tot = t["by_priority"]["total"]
    assert tot["count"] == 5 and tot["response_hours"] == 2.5 and tot["within_percent"] == 66.7
    sat = {r["month"]: r for r in t["satisfaction"]["rows"]}
    assert sat["1986-05"] == {"month": "1986-05", "rated": 2, "satisfaction": 4.0}
    assert sat["1986-06"]["satisfaction"] == 4.0 and t["satisfaction"]["total"]["rated"] == 3
    ages = {r["age"]: r["open"] for r in t["open_age"]["rows"]}
    assert ages[">30 天"] == 2 and sum(ages.values()) == 2 == t["open_age"]["total"]["open"]


def test_service_export_has_every_table(api, tickets):
    q = {"from": "1986-05-01", "to": "1986-06-30", "format": "xlsx"}
    wb = load_workbook(io.BytesIO(api("exec").get("/api/v1/report/service",
                                                  query_string=q).data))
    assert len(wb.sheetnames) == 4
    sheet = list(wb.worksheets[1].iter_rows(values_only=True))
    assert sheet[0][:6] == ("服务类型", "优先级", "服务数量", "平均首次响应（小时）",
                            "平均解决（小时）", "时限内解决率（%）")
    assert sheet[0][-1] == "统计期间"
    text = api("exec").get("/api/v1/report/service", query_string=dict(
        q, format="csv")).data.decode("utf-8-sig")
    assert "平均首次响应（小时）" in text and "未结服务（按已开启时长）" in text
    assert "1986-05" in text


def test_service_page_shows_figures(web, tickets):
    r = web("exec").get("/reports/service/?from=1986-05-01&to=1986-06-30&compare=last_year")
    assert r.status_code == 200
    for text in ("服务时效（类型 × 优先级）", "满意度（按创建月份）", "未结服务（按已开启时长）",
                 "&gt;30 天", "/service/archive/?status=all"):
        assert text in r.text



def test_service_report_scans_the_tickets_twice(app, api, web, dbs, user_id, uniq):
    """The tickets of the range are read twice: one GROUP BY (type, priority) for the
    main table, 类型 × 优先级 and 未结服务, one GROUP BY month for 满意度 (it was six
    aggregations); a comparison adds one scan of the other period. Every statement of
    the report is counted too: the two scans plus the service types."""
    from sqlalchemy import event

    from app.extensions import db
    from app.reports import build

    make_tickets(dbs, user_id, uniq, 1987)  # (1986 is the figures tests' range)
    scans = []

    def count(_conn, _cur, stmt, *_a, **_k):
        if re.search(r"\bFROM crm_service\b", stmt):
            scans.append(stmt)
    with app.app_context():
        engine = db.engines[None]
    client, page = api("supervisor"), web("supervisor")
    rng = {"from": "1987-05-01", "to": "1987-06-30"}
    event.listen(engine, "before_cursor_execute", count)
    try:
        for args, want in ((rng, 2), ({}, 2), ({"from": "1987-05-01", "to": "1987-05-31"}, 2),
                           (dict(rng, compare="previous"), 3), (dict(rng, format="csv"), 2)):
            scans.clear()
            r = client.get("/api/v1/report/service", query_string=args)
            assert r.status_code == 200 and len(scans) == want, (args, scans)
        scans.clear()
        assert page.get("/reports/service/", query_string=rng).status_code == 200
        assert len(scans) == 2, scans
    finally:
        event.remove(engine, "before_cursor_execute", count)

    every = []

    def count_all(_conn, _cur, stmt, *_a, **_k):
        every.append(stmt)
    with app.app_context():
        event.listen(engine, "before_cursor_execute", count_all)
        try:
            report = build(db.session, "service", rng)
        finally:
            event.remove(engine, "before_cursor_execute", count_all)
            db.session.remove()
    assert len(every) == 3, every
    assert [t.key for t in report.extras] == ["by_priority", "satisfaction", "open_age"]
    assert "_service_scan" not in report.params  # figures() took the shared scan out


def test_service_figures_alone_and_read_from_the_report_index(app, api, dbs, user_id, uniq):
    """figures() without run() first (its own scan) gives the tables run()+figures()
    give; both scans read an index alone (no table rows) on SQLite."""
    from app.extensions import db
    from app.reports import parse_params, service

    make_tickets(dbs, user_id, uniq, 1988)
    rng = {"from": "1988-05-01", "to": "1988-06-30", "compare": "previous"}
    want = get(api, "service", **rng)
    by = {(r["service_type"], r["priority"]): r for r in want["tables"]["by_priority"]["rows"]}
    assert by[("咨询", "普通")]["resolution_hours"] == 20.0  # the fixture's figures
    assert want["tables"]["open_age"]["total"]["open"] == 2
    now = datetime.now()
    with app.app_context():
        try:
            if db.engine.dialect.name == "sqlite":
                from sqlalchemy import select, text
                for stmt, index in (
                        (service._scan(db.session, parse_params(rng), now)["stmt"],
                         "ix_service_report"),
                        (service._satisfaction_stmt(db.session, parse_params({})),
                         "ix_service_created_rating")):
                    sql = str(stmt.compile(db.engine, compile_kwargs={"literal_binds": True}))
                    plan = " ".join(r[-1] for r in db.session.execute(
                        text("EXPLAIN QUERY PLAN " + sql)))
                    assert f"COVERING INDEX {index}" in plan, plan
        finally:
            db.session.remove()
    with app.app_context():
        try:
            params = parse_params(rng)
            service.run(db.session, params, now)
            shared = service.figures(db.session, params, now)
            alone = service.figures(db.session, parse_params(rng), now)
        finally:
            db.session.remove()
    for (k1, _, c1, df1, tot1, ch1), (k2, _, c2, df2, tot2, ch2) in zip(shared, alone):
        assert k1 == k2 and list(c1) == list(c2) and tot1 == tot2
        assert json.dumps(ch1, default=str) == json.dumps(ch2, default=str)  # NaN == NaN
        assert json.dumps(df1.to_dict("records"), default=str) == \
            json.dumps(df2.to_dict("records"), default=str)
    assert {k: t["total"] for k, t in want["tables"].items()} == {
        key: {k: (str(v) if k in ("service_type", "month", "age") else v) for k, v in tot.items()}
        for key, _, _, _, tot, _ in alone}


# ---- 客户流失分析 ------------------------------------------------------------------------

def test_churn_by_manager_compare_and_list_link(api, web, dbs, user_id, uniq):
    prefix = uniq("流失区间")
    m1, m2 = user_id("manager1"), user_id("manager2")
    with dbs() as s:
        for i, (mgr, confirmed) in enumerate([
                (m1, datetime(1985, 3, 2)), (m1, datetime(1985, 3, 30, 18)),
                (m2, datetime(1985, 3, 15)), (m1, datetime(1985, 2, 20)),
                (m1, datetime(1985, 4, 1))]):
            c = f.customer(s, mgr, name=f"{prefix}{i}", status="lost")
            s.add(ChurnWarning(customer_id=c.id, manager_id=mgr, warned_on=datetime(1985, 1, 1),
                               confirmed_on=confirmed, reason="价格原因", status="lost",
                               created_by_fk=mgr, changed_by_fk=mgr))
        s.commit()
    q = {"customer": prefix, "from": "1985-03-01", "to": "1985-03-31", "compare": "previous"}
    body = get(api, "churn", **q)
    assert [r["customer_name"] for r in body["rows"]] == [f"{prefix}1", f"{prefix}2", f"{prefix}0"]
    assert body["rows"][0]["link"].startswith("/churn/show/")
    mgr = {r["manager"]: r for r in body["tables"]["by_manager"]["rows"]}
    assert mgr["张伟"]["count"] == 2 and mgr["张伟"]["count_compare"] == 1
    assert mgr["张伟"]["count_change"] == 100.0 and mgr["刘芳"]["count"] == 1
    listed, html = list_rows(web, mgr["张伟"]["link"])
    assert sorted(r["客户名称"] for r in listed) == [f"{prefix}0", f"{prefix}1"]
    assert f"{prefix}3" not in html and f"{prefix}2" not in html
    page = web("exec").get("/reports/churn/", query_string=q)
    assert page.status_code == 200 and "按客户经理" in page.text and "/churn/list/?status=lost" \
        in page.text
    assert web("supervisor").get("/churn/list/?manager_id=x").status_code == 400
    assert web("supervisor").get("/churn/list/?confirmed_from=1985-13-01").status_code == 400


# ---- rights ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["contribution", "composition", "service", "churn"])
def test_manager_gets_403_with_the_new_args(api, web, name):
    q = {"from": "2025-01-01", "to": "2025-03-31", "compare": "previous", "page_size": "10"}
    assert api("manager1").get(f"/api/v1/report/{name}", query_string=q).status_code == 403
    assert web("manager1").get(f"/reports/{name}/", query_string=q).status_code == 403
    assert web("manager1").get(f"/reports/{name}/", query_string=dict(
        q, format="xlsx")).status_code == 403
    assert api().get(f"/api/v1/report/{name}", query_string=q).status_code == 401


@pytest.mark.parametrize("args", [{"page": "9" * 5000}, {"page_size": "²"}, {"year": "²⁰²⁵"},
                                  {"from": "２０２５-01-01"}, {"page": "1e3"}])
def test_odd_numbers_are_400_not_500(api, web, args):
    assert api("supervisor").get("/api/v1/report/service", query_string=args).status_code == 400
    assert web("supervisor").get("/reports/churn/", query_string=args).status_code == 400


@pytest.mark.parametrize("value", ["9" * 5000, "²", "-1"])
def test_churn_list_manager_id_is_400_not_500(web, value):
    assert web("supervisor").get("/churn/list/", query_string={"manager_id": value}).status_code == 400
