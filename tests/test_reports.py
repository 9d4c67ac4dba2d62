"""统计报表 and list export: numbers against hand-computed fixtures, filters, rights,
CSV (BOM, pandas round trip) / XLSX files, and streamed list exports.

The database is shared with other tests: every report is scoped by unique customer
names (the customer filter) or compared before/after the fixture is added.
"""
import io
import tracemalloc
from datetime import date, datetime
from urllib.parse import quote

import pandas as pd
import pytest
from openpyxl import load_workbook
from sqlalchemy import delete, insert

from app.models import ChurnWarning, DictItem
from app.reports.common import percents

from . import factories as f

BOM = b"\xef\xbb\xbf"


def rows(api, name, **params):
    r = api("supervisor").get(f"/api/v1/report/{name}", query_string=params)
    assert r.status_code == 200, r.text
    return strip(r.json["rows"])


def strip(rows_):
    """The rows without their drill-down ``link`` (tested in test_reports_period.py)."""
    return [{k: v for k, v in r.items() if k != "link"} for r in rows_]


# ---- 客户贡献分析 -------------------------------------------------------------------

@pytest.fixture
def contribution_fixture(dbs, user_id, uniq):
    """A: 2023 → 250.50, 2024 → 30.00 (+ a status-3 order that must not count);
    B: 2024 → 99.99 (+ status 4); C: only orders with status 1–4."""
    prefix = uniq("贡献测试")
    m1 = user_id("manager1")
    with dbs() as s:
        a = f.customer(s, m1, name=f"{prefix}甲科技有限公司")
        b = f.customer(s, m1, name=f"{prefix}乙贸易有限公司")
        c = f.customer(s, m1, name=f"{prefix}丙实业有限公司")
        p = f.product(s, price="100.00")
        f.order(s, a.number, [(p, 2, "100.00"), (p, 1, "50.50")], status=6, day=date(2023, 3, 5))
        f.order(s, a.number, [(p, 3, "10.00")], status=5, day=date(2024, 12, 31))
        f.order(s, a.number, [(p, 100, "1000.00")], status=3, day=date(2024, 6, 1))
        f.order(s, b.number, [(p, 1, "99.99")], status=6, day=date(2024, 1, 1))
        f.order(s, b.number, [(p, 5, "5.00")], status=4, day=date(2024, 2, 1))
        for st in (1, 2, 3, 4):
            f.order(s, c.number, [(p, 7, "70.00")], status=st, day=date(2024, 5, 5))
        s.commit()
        return {"prefix": prefix, "a": a.name, "b": b.name, "c": c.name}


def test_contribution_numbers_all_years(api, contribution_fixture):
    fx = contribution_fixture
    r = api("exec").get("/api/v1/report/contribution", query_string={"customer": fx["prefix"]})
    assert r.status_code == 200
    assert strip(r.json["rows"]) == [{"customer_name": fx["a"], "amount": "280.50"},
                              {"customer_name": fx["b"], "amount": "99.99"}]
    assert r.json["total"] == {"customer_name": "合计", "amount": "380.49"}


def test_contribution_year_filter_and_empty_year(api, contribution_fixture):
    fx = contribution_fixture
    assert rows(api, "contribution", customer=fx["prefix"], year=2024) == [
        {"customer_name": fx["b"], "amount": "99.99"},
        {"customer_name": fx["a"], "amount": "30.00"}]
    assert rows(api, "contribution", customer=fx["prefix"], year=2023) == [
        {"customer_name": fx["a"], "amount": "250.50"}]
    assert rows(api, "contribution", customer=fx["prefix"], year=2022) == []


def test_contribution_name_filter_is_contains(api, contribution_fixture):
    fx = contribution_fixture
    # a fragment from the middle of one name
    assert rows(api, "contribution", customer=fx["prefix"][-6:] + "乙贸易") == [
        {"customer_name": fx["b"], "amount": "99.99"}]
    # the customer with only status 1–4 orders never appears
    assert rows(api, "contribution", customer=fx["c"]) == []


def test_contribution_unfiltered_is_sorted_and_contains_fixture(api, contribution_fixture):
    fx = contribution_fixture
    # every page (the report pages by 50; earlier tests may have added bigger customers)
    all_rows, page = [], 0
    while True:
        got = rows(api, "contribution", page=page, page_size=500)
        all_rows += got
        if len(got) < 500:
            break
        page += 1
    amounts = [float(r["amount"]) for r in all_rows]
    assert amounts == sorted(amounts, reverse=True)
    names = {r["customer_name"]: r["amount"] for r in all_rows}
    assert names[fx["a"]] == "280.50" and fx["c"] not in names


# ---- 客户构成分析 -------------------------------------------------------------------

def _counts(rows_):
    return {r["item"]: r["count"] for r in rows_}


def test_composition_by_level_credit_satisfaction(api, dbs, user_id, uniq):
    before = {by: _counts(rows(api, "composition", by=by))
              for by in ("level", "credit", "satisfaction")}
    m1 = user_id("manager1")
    with dbs() as s:
        big = f.dict_item(s, "客户等级", "大客户")
        partner = f.dict_item(s, "客户等级", "合作伙伴")
        f.customer(s, m1, name=uniq("构成A"), level=big, credit=1, satisfaction=5)
        f.customer(s, m1, name=uniq("构成B"), level=big, credit=1, satisfaction=2)
        f.customer(s, m1, name=uniq("构成C"), level=partner, credit=3, satisfaction=5)
        # a lost customer is not part of the customer base
        f.customer(s, m1, name=uniq("构成D"), level=big, credit=1, satisfaction=5, status="lost")
        s.commit()
    after = {by: rows(api, "composition", by=by) for by in ("level", "credit", "satisfaction")}
    delta = {by: {k: v - before[by].get(k, 0) for k, v in _counts(after[by]).items()}
             for by in after}
    assert delta["level"]["大客户"] == 2 and delta["level"]["合作伙伴"] == 1
    assert delta["level"]["普通客户"] == 0
    assert [delta["credit"][k] for k in "12345"] == [2, 0, 1, 0, 0]
    assert delta["satisfaction"]["5"] == 2 and delta["satisfaction"]["2"] == 1
    for by, rs in after.items():
        assert {"普通客户", "重点开发客户", "大客户", "合作伙伴", "战略合作伙伴"} <= set(
            _counts(rs)) if by == "level" else {"1", "2", "3", "4", "5"} <= set(_counts(rs))
        total = sum(r["count"] for r in rs)
        assert abs(sum(r["percent"] for r in rs) - 100) <= 0.01
        for r in rs:
            assert set(r) == {"item", "count", "percent"}
            assert abs(r["percent"] - r["count"] * 100 / total) < 0.01


def test_percents_always_sum_to_100():
    for counts in ([1, 1, 1], [2, 1], [1, 0, 0], [7, 3, 5, 11, 13], [1] * 7, [0, 0]):
        p = percents(counts)
        assert sum(p) == pytest.approx(100 if sum(counts) else 0, abs=1e-9)
        assert all(abs(x - c * 100 / (sum(counts) or 1)) < 0.01 for x, c in zip(p, counts))


def test_composition_bad_by_is_400(api):
    r = api("supervisor").get("/api/v1/report/composition?by=industry")
    assert r.status_code == 400 and "统计方式" in r.json["message"]


# ---- 客户服务分析 -------------------------------------------------------------------

def test_service_counts_by_type_and_year(api, dbs, user_id, uniq):
    def counts(**kw):
        return {r["service_type"]: r["count"] for r in rows(api, "service", **kw)}

    before_99, before_01, before_all = counts(year=1999), counts(year=2001), counts()
    m1 = user_id("manager1")
    with dbs() as s:
        cust = f.customer(s, m1, name=uniq("服务报表"))
        for t, when, st in [("咨询", datetime(1999, 1, 1, 0, 0, 1), "created"),
                            ("咨询", datetime(1999, 12, 31, 23, 59), "archived"),
                            ("投诉", datetime(1999, 6, 1), "handled"),
                            ("建议", datetime(2001, 1, 1), "assigned")]:
            f.service(s, cust, m1, status=st, service_type=t, created_on=when, changed_on=when)
        s.commit()
    d99 = {k: v - before_99.get(k, 0) for k, v in counts(year=1999).items()}
    d01 = {k: v - before_01.get(k, 0) for k, v in counts(year=2001).items()}
    dall = {k: v - before_all.get(k, 0) for k, v in counts().items()}
    assert (d99["咨询"], d99["投诉"], d99["建议"]) == (2, 1, 0)
    assert (d01["咨询"], d01["投诉"], d01["建议"]) == (0, 0, 1)
    assert sum(dall.values()) == 4
    # an empty year lists every 服务类型 with 0
    assert set(counts(year=1901).values()) == {0}
    assert {"咨询", "建议", "投诉"} <= set(counts(year=1901))


@pytest.mark.parametrize("year", ["abc", "20245", "1800", "-1"])
def test_bad_year_is_400_in_chinese(api, year):
    r = api("supervisor").get(f"/api/v1/report/service?year={year}")
    assert r.status_code == 400
    assert r.json["field"] == "year" and "年份" in r.json["message"]


# ---- 客户流失分析 -------------------------------------------------------------------

@pytest.fixture
def churn_fixture(dbs, user_id, uniq):
    prefix = uniq("流失测试")
    m1, m2 = user_id("manager1"), user_id("manager2")
    with dbs() as s:
        a = f.customer(s, m1, name=f"{prefix}甲", status="lost")
        b = f.customer(s, m2, name=f"{prefix}乙", status="lost")
        c = f.customer(s, m1, name=f"{prefix}丙")
        for cust, mgr, status, last, confirmed, reason in [
            (a, m1, "lost", date(2024, 1, 2), datetime(2024, 9, 1, 10, 0), "价格原因"),
            (b, m2, "lost", None, datetime(2024, 10, 5, 9, 30), "转向竞争对手"),
            (c, m1, "warning", date(2024, 2, 2), None, None),
        ]:
            w = ChurnWarning(customer_id=cust.id, manager_id=mgr, last_order_date=last,
                             warned_on=datetime(2024, 8, 1), confirmed_on=confirmed,
                             reason=reason, status=status, created_by_fk=mgr, changed_by_fk=mgr)
            s.add(w)
        s.commit()
    return {"prefix": prefix, "a": f"{prefix}甲", "b": f"{prefix}乙"}


def test_churn_rows_and_filters(api, churn_fixture):
    fx = churn_fixture
    got = rows(api, "churn", customer=fx["prefix"])
    assert got == [
        {"customer_name": fx["b"], "manager": "刘芳", "last_order_date": None,
         "confirmed_on": "2024-10-05", "reason": "转向竞争对手"},
        {"customer_name": fx["a"], "manager": "张伟", "last_order_date": "2024-01-02",
         "confirmed_on": "2024-09-01", "reason": "价格原因"},
    ]
    assert [r["customer_name"] for r in rows(api, "churn", customer=fx["prefix"], manager="张伟")] == [fx["a"]]
    assert [r["customer_name"] for r in rows(api, "churn", customer=fx["prefix"], manager="manager2")] == [fx["b"]]
    assert rows(api, "churn", customer=fx["prefix"], manager="不存在的经理") == []


def test_churn_html_page(web, churn_fixture):
    fx = churn_fixture
    r = web("exec").get(f"/reports/churn/?customer={quote(fx['prefix'])}")
    assert r.status_code == 200
    assert fx["a"] in r.text and "价格原因" in r.text and "2024-09-01" in r.text


# ---- rights --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["contribution", "composition", "service", "churn"])
def test_rights(web, api, name):
    for user in ("supervisor", "exec", "admin"):
        assert web(user).get(f"/reports/{name}/").status_code == 200
        assert api(user).get(f"/api/v1/report/{name}").status_code == 200
    assert web("manager1").get(f"/reports/{name}/").status_code == 403
    assert web("manager1").get(f"/reports/{name}/?format=csv").status_code == 403
    assert api("manager1").get(f"/api/v1/report/{name}").status_code == 403
    assert api("manager1").get(f"/api/v1/report/{name}?format=xlsx").status_code == 403
    assert api().get(f"/api/v1/report/{name}").status_code == 401


def test_menu_shows_reports_only_to_allowed_roles(web):
    assert "客户贡献分析" in web("supervisor").get("/reports/contribution/").text
    home = web("manager1").get("/", follow_redirects=True).text
    assert "客户贡献分析" not in home and "统计报表" not in home


def test_unknown_report_is_404(api, web):
    r = api("supervisor").get("/api/v1/report/nonsense")
    assert r.status_code == 404 and "没有这个报表" in r.json["message"]
    assert web("supervisor").get("/reports/nonsense/").status_code == 404


# ---- pages, charts, files ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["contribution", "composition", "service", "churn"])
def test_page_has_table_local_echarts_and_downloads(web, name):
    r = web("supervisor").get(f"/reports/{name}/")
    assert r.status_code == 200
    html = r.text
    assert "/static/vendor/echarts.min.js" in html and "cdn" not in html.lower()
    assert "<table" in html and "导出 CSV" in html and "导出 XLSX" in html
    assert web("supervisor").get("/static/vendor/echarts.min.js").status_code == 200


def test_html_bad_filter_is_400_with_chinese_message(web):
    r = web("supervisor").get("/reports/contribution/?year=twenty")
    assert r.status_code == 400 and "年份必须是" in r.text


def test_contribution_csv_bom_and_pandas_round_trip(web, api, contribution_fixture):
    fx = contribution_fixture
    for r in (api("supervisor").get("/api/v1/report/contribution",
                                    query_string={"customer": fx["prefix"], "format": "csv"}),
              web("exec").get("/reports/contribution/", query_string={
                  "customer": fx["prefix"], "format": "csv"})):
        assert r.status_code == 200 and r.mimetype == "text/csv"
        assert r.data.startswith(BOM)
        cd = r.headers["Content-Disposition"]
        assert "filename*=UTF-8''" + quote("客户贡献分析_") in cd and cd.endswith(".csv")
        df = pd.read_csv(io.BytesIO(r.data), encoding="utf-8-sig", dtype=str)
        assert list(df.columns) == ["客户名称", "订单金额（元）"]
        assert df.values.tolist() == [[fx["a"], "280.50"], [fx["b"], "99.99"], ["合计", "380.49"]]


def test_composition_xlsx_opens_with_openpyxl(api):
    r = api("supervisor").get("/api/v1/report/composition?by=level&format=xlsx")
    assert r.status_code == 200
    assert r.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert "filename*=UTF-8''" + quote("客户构成分析_") in r.headers["Content-Disposition"]
    ws = load_workbook(io.BytesIO(r.data)).active
    values = list(ws.iter_rows(values_only=True))
    assert values[0] == ("客户等级", "客户数", "占比（%）")
    assert "大客户" in [v[0] for v in values] and values[-1][0] == "合计"
    body = values[1:-1]
    assert values[-1][1] == sum(v[1] for v in body)
    assert abs(sum(v[2] for v in body) - 100) <= 0.01


def test_churn_and_service_xlsx(api, churn_fixture):
    r = api("exec").get("/api/v1/report/churn", query_string={
        "customer": churn_fixture["prefix"], "format": "xlsx"})
    ws = load_workbook(io.BytesIO(r.data)).active
    values = list(ws.iter_rows(values_only=True))
    assert values[0] == ("客户名称", "客户经理", "上次下单日期", "确认流失日期", "流失原因")
    assert values[2][0] == churn_fixture["a"] and values[2][1] == "张伟"
    assert values[2][2].date() == date(2024, 1, 2)
    r = api("exec").get("/api/v1/report/service?format=csv&year=1901")
    text = r.data.decode("utf-8-sig")
    main = text.split("\r\n\r\n")[0]  # the service figures follow after an empty line
    df = pd.read_csv(io.StringIO(main))
    assert list(df.columns) == ["服务类型", "服务数量", "超时数量", "按时率（%）", "统计期间"]
    assert df.iloc[-1, 0] == "合计" and set(df["统计期间"]) == {"1901-01-01 至 1901-12-31"}


def test_bad_format_is_400(api):
    r = api("supervisor").get("/api/v1/report/service?format=pdf")
    assert r.status_code == 400 and r.json["field"] == "format"


# ---- list export ------------------------------------------------------------------------

@pytest.fixture
def dict_rows(dbs, user_id, uniq):
    """Dictionary items of a unique 类别 (removed afterwards)."""
    made = []

    def _make(n, type_=None):
        type_ = type_ or uniq("导出")
        admin = user_id("admin")
        with dbs() as s:
            s.execute(insert(DictItem), [
                {"type": type_, "item": f"条目{i:06d}", "value": str(i), "editable": i % 2 == 0,
                 "created_by_fk": admin, "changed_by_fk": admin,
                 "created_on": datetime.now(), "changed_on": datetime.now()}
                for i in range(n)])
            s.commit()
        made.append(type_)
        return type_
    yield _make
    with dbs() as s:
        s.execute(delete(DictItem).where(DictItem.type.in_(made)))
        s.commit()


def test_dictionary_export_honours_search_and_uses_chinese(web, dict_rows):
    t = dict_rows(3)
    other = dict_rows(2)
    c = web("manager1")
    page = c.get(f"/dictitem/list/?_flt_3_type={quote(t)}")
    assert page.status_code == 200 and "导出 CSV" in page.text
    assert f"/dictitem/export/csv/?_flt_3_type={quote(t)}" in page.text
    r = c.get(f"/dictitem/export/csv/?_flt_3_type={quote(t)}")
    assert r.status_code == 200 and r.is_streamed
    assert r.data.startswith(BOM)
    assert "filename*=UTF-8''" + quote("数据字典_") in r.headers["Content-Disposition"]
    df = pd.read_csv(io.BytesIO(r.data), encoding="utf-8-sig", dtype=str)
    assert list(df.columns) == ["编号", "类别", "条目", "值", "是否可编辑"]
    assert set(df["类别"]) == {t} and len(df) == 3 and other not in r.data.decode("utf-8-sig")
    assert sorted(df["是否可编辑"]) == ["否", "是", "是"]
    # a second condition narrows further
    r = c.get(f"/dictitem/export/xlsx/?_flt_3_type={quote(t)}&_flt_3_item=条目000001")
    assert r.status_code == 200 and r.is_streamed
    ws = load_workbook(io.BytesIO(r.data)).active
    values = list(ws.iter_rows(values_only=True))
    assert values[0] == ("编号", "类别", "条目", "值", "是否可编辑")
    assert [v[1:] for v in values[1:]] == [(t, "条目000001", "1", "否")]


def test_export_needs_login_and_list_right(app, web):
    r = app.test_client().get("/dictitem/export/csv/")
    assert r.status_code in (302, 401) and b"\xef\xbb\xbf" not in r.data
    assert web("manager1").get("/dictitem/export/pdf/").status_code == 404


def test_order_export_respects_base_filter_and_shows_status_names(web, dbs, user_id, uniq):
    """Orders with status 1–4 are not visible in the list, so not in the export."""
    with dbs() as s:
        cust = f.customer(s, user_id("manager1"), name=uniq("订单导出"))
        p = f.product(s, price="12.50")
        f.order(s, cust.number, [(p, 2, "12.50"), (p, 1, "0.25")], status=6, day=date(2024, 4, 1))
        f.order(s, cust.number, [(p, 1, "1.00")], status=5, day=date(2024, 5, 1))
        f.order(s, cust.number, [(p, 9, "9.00")], status=2, day=date(2024, 6, 1))
        s.commit()
        number = cust.number
    r = web("manager2").get(f"/order/export/csv/?_flt_3_customer_number={number}")
    assert r.status_code == 200 and r.is_streamed
    df = pd.read_csv(io.BytesIO(r.data), encoding="utf-8-sig", dtype=str)
    assert list(df.columns) == ["订单编号", "客户编号", "下单日期", "送货地址", "状态", "总金额"]
    assert df[["下单日期", "状态", "总金额"]].values.tolist() == [
        ["2024-05-01", "已发货", "1.00"], ["2024-04-01", "已回款", "25.25"]]


def test_list_export_streams_with_flat_memory(web, dict_rows):
    small, large = dict_rows(1500), dict_rows(6000)
    c = web("admin")

    def peak_of(type_, fmt="csv"):
        r = c.get(f"/dictitem/export/{fmt}/?_flt_3_type={quote(type_)}")
        assert r.status_code == 200 and r.is_streamed
        tracemalloc.start()
        size = chunks = 0
        for chunk in r.response:  # consume the generator without keeping it
            size += len(chunk)
            chunks += 1
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak, size, chunks

    peak_of(small)  # warm caches
    p_small, size_small, _ = peak_of(small)
    p_large, size_large, chunks = peak_of(large)
    assert size_large > 3.5 * size_small and chunks > 10
    # 4x the rows must not cost anything like 4x the memory
    assert p_large < 2 * p_small + 512 * 1024, (p_small, p_large)
    # xlsx too: rows go through a temporary file
    p_x, size_x, _ = peak_of(large, "xlsx")
    assert size_x > 0


def test_chart_values_without_rows_are_null_not_nan():
    """An average over no tickets is NaN in pandas; the page's chart JSON must stay
    valid JSON (a NaN broke the 客户服务分析 page in the browser)."""
    import json

    from app.views.reports import echarts_option

    option, _links = echarts_option({"type": "bar", "title": "t", "categories": ["甲", "乙", "丙"],
                                     "series": [("平均", [float("nan"), 2.5, float("inf")])]})
    data = option["series"][0]["data"]
    assert data == [None, 2.5, None]
    json.dumps(option, allow_nan=False)


def test_chart_value_axes_drop_overlapping_labels():
    """The top-20 chart's amount axis runs to millions in a plot narrowed by the customer
    names; ECharts printed every tick label on top of its neighbours (seen in Chromium at
    M: "0 500,000 1,000,000 …" as one smudge). Both value axes drop the labels that
    would overlap, and the amount axis asks for few ticks."""
    from app.views.reports import echarts_option

    wide, _ = echarts_option({"type": "bar", "title": "t",
                              "categories": ["某某科技有限公司（北京1分公司）", "某某网络有限公司"],
                              "series": [("本期", [3061784, 2952208]), ("上一期", [52685, 645855])]})
    assert wide["xAxis"]["type"] == "value"
    assert wide["xAxis"]["axisLabel"]["hideOverlap"] is True and wide["xAxis"]["splitNumber"] <= 5
    tall, _ = echarts_option({"type": "bar", "title": "t", "categories": ["咨询", "建议"],
                              "series": [("服务数量", [28041, 9467])]})
    assert tall["yAxis"]["type"] == "value" and tall["yAxis"]["axisLabel"]["hideOverlap"] is True
