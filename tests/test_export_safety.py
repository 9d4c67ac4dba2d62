"""Every CSV / XLSX the product writes is safe and opens well (app/workflows/spreadsheet.py):

* text that a spreadsheet would read as a formula (``=HYPERLINK(...)``, ``+1+1``,
  ``-2+3``, ``@SUM(A1)``, ``\\t=1``, DDE ``=cmd|...``) never becomes one: in CSV it
  carries a leading ``'`` (defusedcsv's rule); in XLSX it is a string cell (no
  ``<f>`` anywhere in the sheet XML) with Excel's quote prefix; numbers (also
  negative ones) and dates stay typed;
* sheet titles are valid (``ABC/北京科技有限公司``, 31+ characters), columns are sized
  from the content (CJK double), the header row is frozen, an autofilter covers the
  data, date/datetime columns are real dates, ``text/csv; charset=utf-8`` once;
* 产品 and 库存 have CSV/XLSX export with the list's filters and rights.

Checked through every list export, report and import file (HTTP, like a user).
"""
import csv
import io
import re
import zipfile
from datetime import date, datetime, timezone
from decimal import Decimal
from urllib.parse import quote

import pytest
from defusedcsv.csv import _escape as defusedcsv_escape
from openpyxl import load_workbook
from sqlalchemy import delete

from app.models import ChurnMeasure, ChurnWarning, Customer, DictItem, Stock
from app.workflows import spreadsheet as ss

from . import factories as f

BOM = b"\xef\xbb\xbf"
PAYLOADS = ['=HYPERLINK("http://x","点我")', "+1+1", "-2+3", "@SUM(A1)", "\t=1",
            "=cmd|' /C calc'!A0"]
CSV_TYPE = "text/csv; charset=utf-8"


# ---- the rule itself ------------------------------------------------------------------------

@pytest.mark.parametrize("text", PAYLOADS + ["%0A=1", "|calc", "-5", "1,234.50", "正常文本",
                                              "", "a=1", " =1"])
def test_csv_rule_is_defusedcsvs_plus_tab_cr_lf(text):
    expected = defusedcsv_escape(text)
    if text and text[0] in "\t\r\n":
        expected = "'" + text
    assert ss.neutralise(text) == expected


def test_a_text_column_is_checked_as_each_cell_would_be():
    """csv_column's shortcut (one regex over the joined column) gives what the cell
    rule gives, with the trigger first, not first, after a NUL, beside None / ""."""
    cells = PAYLOADS + ["正常", "", None, "a\x00=1", "\x00=1", "=", "-", "-5", "x|y", "%x"]
    for column in ([c for c in cells if c is None or "=" not in c],    # no trigger first
                   cells, ["正常", None, ""], ["a\x00=1"], [None, None]):
        assert ss.csv_column(list(column)) == [None if v is None else ss.csv_value(v)
                                               for v in column], column
    rows = [["=1", 1, None], ["b", 2, "@x"]]
    for chunks in (rows, ss.Chunks([rows[:1], rows[1:]])):
        body = b"".join(ss.csv_stream(["a", "b", "c"], chunks)).decode("utf-8-sig")
        assert list(csv.reader(io.StringIO(body))) == [["a", "b", "c"], ["'=1", "1", ""],
                                                       ["b", "2", "'@x"]]


def test_typed_values_are_not_escaped():
    assert ss.csv_value(-5) == "-5" and ss.csv_value(Decimal("-5")) == "-5.00"
    assert ss.csv_value(-2.5) == "-2.5" and ss.csv_value(date(2024, 1, 2)) == "2024-01-02"
    assert ss.csv_value("-2+3") == "'-2+3" and ss.csv_value(None) == ""
    # an aware datetime is shown in the configured zone (Asia/Shanghai), naive as stored
    aware = datetime(2024, 1, 1, 16, 30, tzinfo=timezone.utc)
    assert ss.csv_value(aware) == "2024-01-02 00:30:00"
    assert ss.local_naive(aware) == datetime(2024, 1, 2, 0, 30)
    assert ss.csv_value(datetime(2024, 1, 1, 16, 30)) == "2024-01-01 16:30:00"


@pytest.mark.parametrize("title, expected", [
    ("ABC/北京科技有限公司 的联系人", "ABC／北京科技有限公司 的联系人"),
    ("a\\b?c*d[e]f:g", "a＼b？c＊d【e】f：g"),
    ("'引号'", "引号"), ("", "Sheet1"), ("History", "History_"),
    ("很" * 40, "很" * 31),
])
def test_sheet_titles_are_valid(title, expected):
    assert ss.sheet_title(title) == expected


def test_display_width_counts_cjk_double():
    assert ss.display_width("ABC") == 3 and ss.display_width("北京科技") == 8
    assert ss.display_width("短\n更长的一行") == 10
    assert ss.column_widths(["名称"], [["北京科技有限公司"]]) == [18]
    assert ss.column_widths(["x"], [["长" * 100]]) == [ss.MAX_WIDTH]


def test_xlsx_writer_typed_and_safe_offline():
    rows = [[p, -5, Decimal("-5.00"), date(2024, 1, 2), datetime(2024, 1, 2, 3, 4, 5), True,
             "#N/A", "bad\x01char"] for p in PAYLOADS]
    body = ss.xlsx_bytes("x", ["文本", "整数", "金额", "日期", "时间", "是否", "错误", "控制"], rows)
    ws = assert_safe_xlsx(body, PAYLOADS)
    row = next(ws.iter_rows(min_row=2, max_row=2))
    assert [c.data_type for c in row] == ["s", "n", "n", "d", "d", "s", "s", "s"]
    assert row[1].value == -5 and row[2].value == -5 and row[2].number_format == "#,##0.00"
    assert row[3].value == datetime(2024, 1, 2) and row[3].number_format == "yyyy-mm-dd"
    assert row[4].value == datetime(2024, 1, 2, 3, 4, 5) and "hh:mm" in row[4].number_format
    assert row[5].value == "是" and row[6].value == "#N/A" and row[7].value == "badchar"


# ---- helpers ----------------------------------------------------------------------------------

def csv_rows(r):
    assert r.status_code == 200, r.data[:300]
    assert r.headers["Content-Type"] == CSV_TYPE      # one charset, not two
    assert r.headers.get_all("Content-Type") == [CSV_TYPE]
    assert r.data.startswith(BOM)
    return list(csv.reader(io.StringIO(r.data.decode("utf-8-sig"))))


def assert_safe_csv(r, texts):
    """No cell starts like a formula; each of ``texts`` is there, neutralised."""
    rows = csv_rows(r)
    cells = [c for row in rows for c in row]
    for c in cells:
        assert not ss.is_formula_like(c), c
    for t in texts:
        assert ss.neutralise(t) in cells, (t, rows)
        assert ss.neutralise(t).startswith("'")
    return rows


def assert_safe_xlsx(body, texts):
    """No formula anywhere in the sheet; each of ``texts`` is there unchanged, as a
    string cell with the quote prefix; frozen header, autofilter."""
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        sheets = [n for n in z.namelist() if n.startswith("xl/worksheets/")]
        for n in sheets:
            assert "<f>" not in z.read(n).decode("utf-8") and "<f " not in z.read(n).decode("utf-8")
    ws = load_workbook(io.BytesIO(body)).active
    by_value = {}
    for row in ws.iter_rows():
        for c in row:
            assert c.data_type != "f", (c.coordinate, c.value)
            if c.value is not None:
                by_value.setdefault(c.value, c)
    for t in texts:
        assert t in by_value, (t, list(by_value)[:40])
        assert by_value[t].data_type == "s" and by_value[t].quotePrefix
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:{ws.cell(1, ws.max_column).column_letter}{ws.max_row}"
    return ws


def xlsx_of(r):
    assert r.status_code == 200, r.data[:300]
    assert r.mimetype == ss.XLSX_MIME
    return r.data


def named(tag):
    """The payloads with a unique tag appended (they still start like a formula)."""
    return [p + tag for p in PAYLOADS]


# ---- A. every list export --------------------------------------------------------------------

def test_customer_and_contact_exports_neutralise(web, dbs, user_id, uniq):
    tag = uniq("注入")
    names = named(tag)
    with dbs() as s:
        custs = [f.customer(s, user_id("manager1"), name=n) for n in names]
        for p in PAYLOADS:
            f.contact(s, custs[0], user_id("manager1"), name=p, position=p, memo=p,
                      office_phone="+86-10-12345678")
        s.commit()
        cid = custs[0].id
    c = web("supervisor")
    rows = assert_safe_csv(c.get(f"/customer/export/csv/?_flt_2_name={quote(tag)}"), names)
    assert len(rows) == 1 + len(names)
    assert rows[1][5] == "4"   # 客户满意度: a number, untouched
    ws = assert_safe_xlsx(xlsx_of(c.get(f"/customer/export/xlsx/?_flt_2_name={quote(tag)}")),
                          names)
    assert ws.cell(2, 6).value == 4 and ws.cell(2, 6).data_type == "n"
    rows = assert_safe_csv(c.get(f"/contacts/customer/{cid}/export/csv/"),
                           PAYLOADS + [names[0], "+86-10-12345678"])
    assert_safe_xlsx(xlsx_of(c.get(f"/contacts/customer/{cid}/export/xlsx/")),
                     PAYLOADS + [names[0], "+86-10-12345678"])


def test_opportunity_and_plan_exports_neutralise_and_keep_types(web, dbs, user_id, uniq):
    tag = uniq("机会注入")
    names = named(tag)
    with dbs() as s:
        opps = [f.opportunity(s, user_id("supervisor"), customer_name=n, summary=p, contact=p,
                              source=p, status="assigned", assignee_id=user_id("manager1"),
                              assigned_on=datetime(2024, 5, 6, 7, 8, 9))
                for n, p in zip(names, PAYLOADS)]
        for p in PAYLOADS:
            f.plan_item(s, opps[0], user_id("manager1"), content=p, result=p,
                        date=date(2024, 6, 1))
        s.commit()
    c = web("supervisor")
    url = f"/opportunity/export/{{}}/?_flt_2_customer_name={quote(tag)}"
    rows = assert_safe_csv(c.get(url.format("csv")), names + PAYLOADS)
    head = rows[0]
    assert {r[head.index("指派时间")] for r in rows[1:]} == {"2024-05-06 07:08:09"}
    ws = assert_safe_xlsx(xlsx_of(c.get(url.format("xlsx"))), names + PAYLOADS)
    col = head.index("指派时间") + 1
    assert ws.cell(2, col).value == datetime(2024, 5, 6, 7, 8, 9)
    assert ws.cell(2, col).is_date and "yy" in ws.cell(2, col).number_format
    rate = ws.cell(2, head.index("成功机率") + 1)
    assert rate.value == 50 and rate.data_type == "n"
    m = web("manager1")
    url = f"/myplan/export/{{}}/?_flt_2_customer_name={quote(tag)}"
    assert_safe_csv(m.get(url.format("csv")), names + PAYLOADS)
    ws = assert_safe_xlsx(xlsx_of(m.get(url.format("xlsx"))), names + PAYLOADS)
    dates = [r[5] for r in ws.iter_rows(min_row=2, values_only=True) if r[5] is not None]
    assert dates and all(d == datetime(2024, 6, 1) for d in dates)


def test_service_archive_export_neutralises(web, dbs, user_id, uniq):
    tag = uniq("服务注入")
    with dbs() as s:
        cust = f.customer(s, user_id("manager1"), name=PAYLOADS[0] + tag)
        for p in PAYLOADS:
            f.service(s, cust, user_id("manager1"), summary=f"{p}{tag}", request=p,
                      status="archived", assignee_id=user_id("manager1"),
                      assigned_on=datetime(2024, 2, 1, 9), handling=p,
                      handler_id=user_id("manager1"), handled_on=datetime(2024, 2, 2, 9),
                      result=p, satisfaction=5)
        s.commit()
    c = web("exec")
    url = f"/service/archive/export/{{}}/?summary={quote(tag)}"
    assert_safe_csv(c.get(url.format("csv")), named(tag) + PAYLOADS)
    ws = assert_safe_xlsx(xlsx_of(c.get(url.format("xlsx"))), named(tag) + PAYLOADS)
    head = [c.value for c in ws[1]]
    handled = ws.cell(2, head.index("处理时间") + 1)
    assert handled.value == datetime(2024, 2, 2, 9) and handled.is_date
    assert ws.cell(2, head.index("满意度") + 1).value == 5


@pytest.fixture
def churn_payloads(dbs, user_id, uniq):
    tag = uniq("流失注入")
    with dbs() as s:
        for i, p in enumerate(PAYLOADS):
            cust = f.customer(s, user_id("manager1"), name=p + tag, status="lost")
            w = ChurnWarning(customer_id=cust.id, manager_id=user_id("manager1"),
                             warned_on=datetime(2024, 5, 1, 2, 3, 4),
                             last_order_date=date(2023, 10, 1), status="lost", reason=p,
                             confirmed_on=datetime(2024, 6, 1 + i, 10),
                             created_by_fk=user_id("admin"), changed_by_fk=user_id("admin"),
                             created_on=datetime.now(), changed_on=datetime.now())
            s.add(w)
            s.flush()
            s.add(ChurnMeasure(warning_id=w.id, text=p, created_by_fk=user_id("manager1"),
                               changed_by_fk=user_id("manager1"), created_on=datetime.now(),
                               changed_on=datetime.now()))
        s.commit()
    return tag


def test_churn_list_export_neutralises_and_dates_are_dates(web, churn_payloads):
    tag = churn_payloads
    c = web("supervisor")
    url = f"/churn/export/{{}}/?status=all&customer={quote(tag)}"
    assert_safe_csv(c.get(url.format("csv")), named(tag) + PAYLOADS)
    ws = assert_safe_xlsx(xlsx_of(c.get(url.format("xlsx"))), named(tag) + PAYLOADS)
    head = [x.value for x in ws[1]]
    for label, value in (("预警时间", datetime(2024, 5, 1, 2, 3, 4)),
                         ("上次下单时间", datetime(2023, 10, 1))):
        cell = ws.cell(2, head.index(label) + 1)
        assert cell.is_date and cell.value == value and "yy" in cell.number_format
    assert ws.cell(2, head.index("确认流失时间") + 1).is_date


def test_dictionary_order_product_stock_exports_neutralise(web, dbs, user_id, uniq):
    tag = uniq("基础注入")
    admin = user_id("admin")
    with dbs() as s:
        for p in PAYLOADS:
            s.add(DictItem(type=tag, item=p, value=p, editable=True, created_by_fk=admin,
                           changed_by_fk=admin, created_on=datetime.now(),
                           changed_on=datetime.now()))
        cust = f.customer(s, user_id("manager1"))
        prods = [f.product(s, name=n, price="-5.00") for n in named(tag)]
        for p in PAYLOADS:
            o = f.order(s, cust.number, [(prods[0], 1, "1.00")], status=6,
                        day=date(2024, 4, 1))
            o.address = p
            s.add(Stock(product_id=prods[0].id, warehouse=p + tag, location=p, quantity=-3,
                        memo=p))
        s.commit()
        number, pid = cust.number, prods[0].id
    c = web("admin")
    try:
        for url, texts in ((f"/dictitem/export/{{}}/?_flt_3_type={quote(tag)}", PAYLOADS),
                           (f"/order/export/{{}}/?_flt_3_customer_number={number}", PAYLOADS),
                           (f"/product/export/{{}}/?_flt_2_name={quote(tag)}", named(tag)),
                           (f"/stock/export/{{}}/?_flt_2_warehouse={quote(tag)}",
                            named(tag) + PAYLOADS)):
            rows = assert_safe_csv(c.get(url.format("csv")), texts)
            assert len(rows) == 1 + len(PAYLOADS), (url, rows)
            ws = assert_safe_xlsx(xlsx_of(c.get(url.format("xlsx"))), texts)
            if "/product/" in url:   # a negative price: a number in both files
                assert {r[4] for r in rows[1:]} == {"-5.00"}
                price = ws.cell(2, 5)
                assert price.value == -5 and price.data_type == "n"
            if "/stock/" in url:
                assert {r[3] for r in rows[1:]} == {"-3"} and ws.cell(2, 4).value == -3
                assert {r[0] for r in rows[1:]} == {ss.neutralise(named(tag)[0])}
            if "/order/" in url:
                assert ws.cell(2, 3).is_date and ws.cell(2, 6).value == 1
        # the stock export also follows a relation filter (product)
        rows = csv_rows(c.get(f"/stock/export/csv/?_flt_0_product={pid}"))
        assert len(rows) == 1 + len(PAYLOADS)
    finally:
        with dbs() as s:
            s.execute(delete(DictItem).where(DictItem.type == tag))
            s.commit()


# ---- A. reports -------------------------------------------------------------------------------

def test_reports_neutralise_and_keep_numbers_typed(web, api, dbs, user_id, uniq, churn_payloads):
    tag = uniq("报表注入")
    with dbs() as s:
        p = f.product(s, price="1.00")
        for i, name in enumerate(named(tag)):
            cust = f.customer(s, user_id("manager1"), name=name)
            f.order(s, cust.number, [(p, 1, f"{i + 1}.00")], status=6, day=date(2024, 3, 1))
        s.commit()
    for client, base in ((api("exec"), "/api/v1/report/"), (web("supervisor"), "/reports/")):
        sep = "?" if base.startswith("/api") else "/?"
        url = f"{base}contribution{sep}customer={quote(tag)}&format="
        rows = assert_safe_csv(client.get(url + "csv"), named(tag))
        amounts = {r[0]: r[1] for r in rows[1:]}
        assert amounts[ss.neutralise(named(tag)[0])] == "1.00" and amounts["合计"] == "21.00"
        ws = assert_safe_xlsx(xlsx_of(client.get(url + "xlsx")), named(tag))
        cells = {r[0].value: r[1] for r in ws.iter_rows(min_row=2)}
        assert cells[named(tag)[0]].value == 1 and cells[named(tag)[0]].data_type == "n"
        url = f"{base}churn{sep}customer={quote(churn_payloads)}&format="
        assert_safe_csv(client.get(url + "csv"), named(churn_payloads) + PAYLOADS)
        ws = assert_safe_xlsx(xlsx_of(client.get(url + "xlsx")), named(churn_payloads) + PAYLOADS)
        assert ws.cell(2, 4).is_date and ws.cell(2, 3).is_date
    for name in ("composition", "service"):
        r = api("exec").get(f"/api/v1/report/{name}?format=csv")
        assert r.headers["Content-Type"] == CSV_TYPE
        assert_safe_xlsx(xlsx_of(api("exec").get(f"/api/v1/report/{name}?format=xlsx")), [])


# ---- A. imports: the result report and the templates --------------------------------------------

def test_import_report_and_templates_are_safe(api, web, dbs, user_id, uniq):
    from .test_imports import commit, csv_bytes, upload
    with dbs() as s:
        cust = f.customer(s, user_id("manager1"), name=uniq("导入注入"))
        s.commit()
        number = cust.number
    head = ["客户编号", "客户名称", "姓名", "性别", "职位", "办公电话", "手机", "电子邮件", "备注"]
    rows = [[number, "", p, "男", "经理", "010-88886666", "", "", p] for p in PAYLOADS]
    c = api("manager1")
    r = upload(c, csv_bytes(rows, header=head), "联系人.csv", kind="contacts")
    assert r.status_code == 201, r.text
    r = commit(c, r.json["id"])
    assert r.status_code == 200 and r.json["created"] == len(PAYLOADS), r.text
    for client, url in ((c, f"/api/v1/import/{r.json['id']}/report"),
                        (web("manager1"), f"/imports/{r.json['id']}/report.csv")):
        got = assert_safe_csv(client.get(url), [p.strip() for p in PAYLOADS])
        assert got[1][0] == "2"   # 行号 stays a plain number
    for kind in ("customer", "contact"):
        rows = assert_safe_csv(web("supervisor").get(f"/imports/template/{kind}.csv"), [])
        assert len(rows) == 1 and len(rows[0]) > 3   # the Chinese headers only


# ---- B. files that open well ------------------------------------------------------------------

def test_contacts_xlsx_of_a_customer_with_slash_and_long_name(web, dbs, user_id, uniq):
    tag = uniq()
    with dbs() as s:
        a = f.customer(s, user_id("manager1"), name=f"ABC/北京科技有限公司{tag}")
        b = f.customer(s, user_id("manager1"),
                       name=f"[总部]:上海?*\\某某某某国际贸易集团股份有限公司华东大区分公司{tag}")
        for cust in (a, b):
            f.contact(s, cust, user_id("manager1"), name="张三")
        s.commit()
        ids = (a.id, b.id)
    c = web("manager2")
    for cid in ids:
        r = c.get(f"/contacts/customer/{cid}/export/xlsx/")
        assert r.status_code == 200, r.data[:300]
        wb = load_workbook(io.BytesIO(r.data))
        title = wb.active.title
        assert len(title) <= 31 and not re.search(r"[\\/?*\[\]:]", title)
        assert wb.active.cell(2, 3).value == "张三"
        assert "%2F" in r.headers["Content-Disposition"] or cid != ids[0]
    assert load_workbook(io.BytesIO(c.get(f"/contacts/customer/{ids[0]}/export/xlsx/").data)
                         ).active.title.startswith("ABC／北京科技有限公司")


def test_xlsx_columns_sized_from_content_frozen_and_filtered(web, dbs, user_id, uniq):
    tag = uniq("宽度")
    long_name = f"北京中关村高新技术开发区信息科技股份有限公司{tag}"
    with dbs() as s:
        cust = f.customer(s, user_id("manager1"), name=long_name)
        f.customer(s, user_id("manager1"), name=f"短{tag}")
        s.commit()
        number = cust.number
    ws = load_workbook(io.BytesIO(xlsx_of(web("exec").get(
        f"/customer/export/xlsx/?_flt_2_name={quote(tag)}")))).active
    assert [ws.cell(1, 1).value, ws.cell(1, 2).value] == ["客户编号", "名称"]
    assert ws.column_dimensions["A"].width >= ss.display_width(number)
    assert ws.column_dimensions["B"].width >= ss.display_width(long_name)
    assert ws.column_dimensions["B"].width <= ss.MAX_WIDTH
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref == "A1:H3"
    assert ws.cell(1, 1).font.bold


def test_every_csv_content_type_has_one_charset(web, api, dbs, user_id):
    with dbs() as s:
        cid = f.customer(s, user_id("manager1")).id
        s.commit()
    c = web("admin")
    for url in ("/customer/export/csv/", f"/contacts/customer/{cid}/export/csv/",
                "/opportunity/export/csv/", "/myplan/export/csv/",
                "/service/archive/export/csv/?summary=nothing-here", "/churn/export/csv/?customer=x",
                "/order/export/csv/?_flt_3_customer_number=none", "/dictitem/export/csv/?_flt_3_type=x",
                "/product/export/csv/?_flt_2_name=none", "/stock/export/csv/?_flt_2_warehouse=none",
                "/reports/service/?format=csv", "/imports/template/customer.csv"):
        r = c.get(url)
        assert r.status_code == 200, url
        assert r.headers.get_all("Content-Type") == [CSV_TYPE], url
    assert api("exec").get("/api/v1/report/churn?format=csv").headers["Content-Type"] == CSV_TYPE


# ---- B. 产品 / 库存 export: buttons, filters, rights ---------------------------------------------------

def test_product_and_stock_exports_follow_the_list(app, web, dbs, uniq):
    tag = uniq("导出产品")
    with dbs() as s:
        mine = f.product(s, name=f"{tag}激光打印机", price="1234.50")
        f.product(s, name=uniq("别的产品"), price="1.00")
        s.add(Stock(product_id=mine.id, warehouse=f"{tag}一号库", location="A-01", quantity=7))
        s.add(Stock(product_id=mine.id, warehouse=f"{tag}二号库", location="B-02", quantity=0))
        s.add(Stock(product_id=mine.id, warehouse=uniq("别的仓库"), quantity=1))
        s.commit()
    for who in ("manager1", "exec", "supervisor", "admin"):
        c = web(who)
        page = c.get(f"/product/list/?_flt_2_name={quote(tag)}")
        assert page.status_code == 200 and "导出 CSV" in page.text and "导出 XLSX" in page.text
        assert f"/product/export/xlsx/?_flt_2_name={quote(tag)}" in page.text
        r = c.get(f"/product/export/csv/?_flt_2_name={quote(tag)}")
        assert "filename*=UTF-8''" + quote("产品查询_") in r.headers["Content-Disposition"]
        rows = csv_rows(r)
        assert rows == [["名称", "型号", "等级/批次", "单位", "单价", "备注"],
                        [f"{tag}激光打印机", "P1", "一等品", "台", "1234.50", ""]]
        ws = load_workbook(io.BytesIO(xlsx_of(
            c.get(f"/product/export/xlsx/?_flt_2_name={quote(tag)}")))).active
        assert ws.cell(2, 5).value == Decimal("1234.50") or ws.cell(2, 5).value == 1234.5
        assert ws.cell(2, 5).number_format == "#,##0.00"
        page = c.get(f"/stock/list/?_flt_2_warehouse={quote(tag)}")
        assert page.status_code == 200 and "导出 CSV" in page.text
        rows = csv_rows(c.get(f"/stock/export/csv/?_flt_2_warehouse={quote(tag)}"))
        assert rows[0] == ["产品", "仓库", "货位", "件数", "备注"]
        assert sorted(r[1:4] for r in rows[1:]) == [[f"{tag}一号库", "A-01", "7"],
                                                    [f"{tag}二号库", "B-02", "0"]]
        assert {r[0] for r in rows[1:]} == {f"{tag}激光打印机"}
        ws = load_workbook(io.BytesIO(xlsx_of(
            c.get(f"/stock/export/xlsx/?_flt_2_warehouse={quote(tag)}")))).active
        assert ws.max_row == 3 and {ws.cell(2, 4).data_type, ws.cell(3, 4).data_type} == {"n"}
    anon = app.test_client()
    for url in ("/product/export/csv/", "/stock/export/xlsx/"):
        r = anon.get(url)
        assert r.status_code in (302, 401) and not r.data.startswith(BOM)
        assert web("manager1").get(url.replace("/csv/", "/pdf/").replace("/xlsx/", "/pdf/")
                                   ).status_code == 404


# ---- E. the customer CSV written by PostgreSQL (COPY) ----------------------------------------

RULE_CASES = PAYLOADS + ["%0A=1", "|calc", "-5", "1,234.50", "-1,5.", "--5", "-", "正常文本", "",
                         "a=1", " =1", "\n=1", "\r1", "a|b", "it's", 'say "hi", ok', "x\ny",
                         "\\.", "=a|b|c"]


def test_the_sql_formula_rule_is_the_python_rule(app):
    """``neutralised_sql`` gives what ``neutralise`` gives for every kind of text (and
    NULL for ''); a statement with a column that is not text or an integer, or any
    database but PostgreSQL, takes the Python writer."""
    from sqlalchemy import String, literal, select

    from app.extensions import db
    from app.models import Customer

    with app.app_context():
        conn = db.session.connection()
        typed = ss.StatementRows(lambda: conn, select(Customer.number, Customer.created_on))
        assert typed.copy_csv() is None
        plain = ss.StatementRows(lambda: conn, select(Customer.number, Customer.satisfaction))
        if conn.dialect.name != "postgresql":
            assert plain.copy_csv() is None
            return
        got = conn.execute(select(*[ss.neutralised_sql(literal(t, String))
                                    for t in RULE_CASES])).one()
        assert list(got) == [ss.neutralise(t) or None for t in RULE_CASES]
        db.session.rollback()


def test_customer_csv_from_the_database_reads_as_the_python_writers(web, dbs, user_id, uniq,
                                                                    app, backend, monkeypatch):
    """On PostgreSQL the customer export is COPY's CSV (LF line ends); opened as a
    spreadsheet reads it, it holds the very cells the Python writer gives, including
    formula-like, quoted, multi-line and empty texts and a manager whose name is a
    formula; elsewhere it is the Python writer's (CRLF) over the DBAPI cursor's rows —
    the same cells as over SQLAlchemy's rows."""
    tag = uniq("副本")
    names = [t + tag for t in RULE_CASES]
    with dbs() as s:
        from flask_appbuilder.security.sqla.models import User
        sup = s.get(User, user_id("supervisor"))
        first, sup_last = sup.first_name, sup.last_name or ""
        sup.first_name = "=HYPERLINK(1)"
        for i, n in enumerate(names):
            f.customer(s, user_id("supervisor") if i % 2 else user_id("manager1"), name=n,
                       satisfaction=i % 5 + 1)
        # a dictionary text that looks like a formula (decoded from its id on SQLite)
        level = DictItem(type="客户等级", item="=等级" + tag, value="=等级" + tag,
                         created_by_fk=user_id("admin"), changed_by_fk=user_id("admin"))
        s.add(level)
        f.customer(s, user_id("manager1"), name="等级" + tag, level=level)
        s.commit()
    try:
        c = web("supervisor")
        url = f"/customer/export/csv/?_flt_2_name={quote(tag)}"
        body = c.get(url)
        rows = assert_safe_csv(body, [n for n in names if ss.is_formula_like(n)]
                               + ["=HYPERLINK(1)" + sup_last, "=等级" + tag])
        assert len(rows) == 2 + len(names)
        lines_end = body.data.split(b"\n")[1]
        if backend == "postgresql":
            assert not body.data.split(b"\n")[0].endswith(b"\r")     # one line end throughout
            assert not lines_end.endswith(b"\r")
        else:
            assert body.data.split(b"\n")[0].endswith(b"\r")
        # no COPY, no raw cursor: SQLAlchemy's rows through the Python writer
        monkeypatch.setattr(ss.StatementRows, "_columns", lambda self: None)
        python = c.get(url)
        assert python.data.split(b"\n")[0].endswith(b"\r")
        assert csv_rows(python) == rows
        assert sorted(r[1] for r in rows[1:]) == sorted([ss.neutralise(n) for n in names]
                                                        + ["等级" + tag])
    finally:
        with dbs() as s:
            s.get(User, user_id("supervisor")).first_name = first
            s.execute(delete(Customer).where(Customer.name == "等级" + tag))
            s.execute(delete(DictItem).where(DictItem.item == "=等级" + tag))
            s.commit()


def test_decoded_codes_are_neutralised_even_when_unknown():
    """SQLite's decoded columns skip the writer's per-column check, so the decoder
    itself writes the CSV form: known texts and a code shown as itself alike."""
    from sqlalchemy import Column, MetaData, String, Table, create_engine, insert, select

    eng = create_engine("sqlite://")
    t = Table("t", MetaData(), Column("code", String), Column("name", String))
    t.metadata.create_all(eng)
    with eng.connect() as conn:
        conn.execute(insert(t), [{"code": "ok", "name": "-2+3"}, {"code": "=坏", "name": "a"},
                                 {"code": "f", "name": "b"}, {"code": None, "name": "c"}])
        rows = ss.StatementRows(lambda: conn, select(t.c.code, t.c.name),
                                coded=(select(t.c.code, t.c.name),
                                       lambda _c: {0: ss.Labels({"ok": "好", "f": "=公式"})}))
        body = b"".join(ss.csv_stream(["代码", "名称"], rows)).decode("utf-8-sig")
        assert list(csv.reader(io.StringIO(body))) == [
            ["代码", "名称"], ["好", "'-2+3"], ["'=坏", "a"], ["'=公式", "b"], ["", "c"]]
        assert list(rows) == [("好", "-2+3"), ("=坏", "a"), ("=公式", "b"), (None, "c")]
