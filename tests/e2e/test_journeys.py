"""The user journeys of issue 10, in Chromium, in Chinese.

One test per journey; each logs in through the login form as the role that does
the work, asserts on what the user sees (Chinese labels, flash messages, statuses)
and fails on any console error, failed request or unexpected HTTP >= 400 (see the
``session`` fixture in conftest.py, which also saves a full-page screenshot of
every tab under tests/e2e/artifacts/).

The journeys only *read* the database (sqlite3, read-only) to pick suitable demo
records (a customer of manager1 with orders, a record of manager2 ...); every
change goes through the browser.
"""
import email
import email.header
import re
import sqlite3
import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest

# ---- helpers ---------------------------------------------------------------------------


def _uid():
    return uuid.uuid4().hex[:6]


def db_rows(env, sql, *args, sales=False):
    """Rows of a read-only query on the server's CRM (or sales) database."""
    path = Path(env["CRM_INSTANCE_DIR"]) / ("sales.db" if sales else "crm.db")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=15)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def user_id(env, username):
    return db_rows(env, "SELECT id FROM ab_user WHERE username = ?", username)[0][0]


def flash_text(s):
    """The text of the flash messages on the page."""
    return " ".join(s.page.locator(".alert").all_inner_texts())


def submit(s, selector="button[type=submit], input[type=submit]"):
    with s.page.expect_navigation():
        s.page.locator(selector).first.click()


def watch_dialogs(s):
    """Accept every confirm()/alert() and remember its text."""
    seen = []

    def _accept(dialog):
        seen.append(dialog.message)
        dialog.accept()
    s.page.on("dialog", _accept)
    return seen


def pick_select2(s, select_id, text, search=None):
    """Choose ``text`` in the select2 widget that replaced <select id=select_id>."""
    s.page.locator(f"#{select_id} + .select2-container .select2-selection").click()
    if search is not None:
        s.page.locator(".select2-container--open .select2-search__field").fill(search)
    option = s.page.locator(".select2-container--open .select2-results__option",
                            has_text=text).first
    option.click()


def select2_options(s, select_id):
    """The option texts the open select2 dropdown of ``select_id`` offers."""
    s.page.locator(f"#{select_id} + .select2-container .select2-selection").click()
    items = s.page.locator(".select2-container--open .select2-results__option")
    items.first.wait_for()
    texts = [t.strip() for t in items.all_inner_texts()]
    s.page.keyboard.press("Escape")
    return texts


def find_row(s, text):
    """The table row holding ``text``, following the 下一页 links of a paged list."""
    for _ in range(50):
        row = s.page.locator("table tbody tr", has_text=text)
        if row.count():
            return row.first
        nxt = s.page.locator("a", has_text="下一页")
        if not nxt.count():
            break
        with s.page.expect_navigation():
            nxt.first.click()
    raise AssertionError(f"no row with {text!r} in the list")


def expand_navbar(s):
    """A narrow window or an administrator's long menu collapses the navbar behind its
    toggle (crm.js): open it first, as a user would."""
    toggle = s.page.locator(".navbar-toggle")
    if toggle.is_visible() and not s.page.locator(".navbar-collapse.in").count():
        toggle.click()
        s.page.wait_for_selector(".navbar-collapse.in")


def open_menu(s, category, item):
    expand_navbar(s)
    s.page.click(f".navbar >> text={category}")
    with s.page.expect_navigation():
        s.page.click(f".navbar .dropdown-menu >> text={item}")


def assert_no_english(text, *words):
    for w in words or ("List ", "Search", "Add Filter", "Record Count", "Edit ", "Delete",
                       "Back", "Save", "Forbidden", "Not Found", "Error"):
        assert w not in text, f"English {w!r} on a zh page"


REGIONS = {"北京", "华北", "中南", "东北", "西部"}
LEVELS = {"普通客户", "重点开发客户", "大客户", "合作伙伴", "战略合作伙伴"}


def manager1_customer(env, with_orders=False, exclude=()):
    """A normal customer of manager1 (with status-5/6 orders when asked)."""
    rows = db_rows(env, "SELECT c.id, c.number, c.name FROM crm_customer c JOIN ab_user u "
                        "ON u.id = c.manager_id WHERE u.username = 'manager1' "
                        "AND c.status = 'normal' AND c.merged_into_id IS NULL "
                        "AND c.address IS NOT NULL ORDER BY c.id")
    rows = [r for r in rows if r[0] not in exclude]
    if with_orders:
        numbers = {r[0] for r in db_rows(env, "SELECT DISTINCT customer_number FROM sales_order "
                                              "WHERE status IN (5, 6)", sales=True)}
        rows = [r for r in rows if r[1] in numbers]
    assert rows, "the demo data has no suitable customer of manager1"
    return rows[0]


# ---- 1. opportunity → assign → plan → results → 开发成功 → 客户信息 ----------------------


def test_journey1_opportunity_to_customer(session, server):
    _base, env = server
    name = f"北京星河测试科技有限公司{_uid()}"
    m = session("manager1")
    open_menu(m, "营销管理", "销售机会管理")
    assert "销售机会管理" in m.text()
    with m.page.expect_navigation():
        m.page.click("a[href*='/opportunity/add']")
    assert "新建销售机会" in m.text()
    m.page.fill("#source", "展会")
    m.page.fill("#customer_name", name)
    m.page.fill("#success_rate", "60")
    m.page.fill("#summary", "采购激光打印机")
    m.page.fill("#contact", "赵敏")
    m.page.fill("#contact_phone", "13900139000")
    m.page.fill("#description", "计划采购 20 台激光打印机，年底前交付。")
    submit(m)
    msg = flash_text(m)
    assert "保存成功" in msg, msg
    number = re.search(r"XS\d{12}", msg).group(0)
    row = m.page.locator("tr", has_text=number)
    assert "未指派" in row.inner_text()
    opp_id = db_rows(env, "SELECT id FROM crm_opportunity WHERE number = ?", number)[0][0]

    # 销售主管 assigns it to manager1
    sup = session("supervisor")
    sup.goto("/opportunity/list/")
    with sup.page.expect_navigation():
        sup.page.locator("tr", has_text=number).locator("a", has_text="指派").click()
    assert "指派销售机会" in sup.text() and name in sup.text()
    sup.page.select_option("#assignee_id", value=str(user_id(env, "manager1")))
    submit(sup)
    assert "指派成功" in flash_text(sup)
    assert "已指派（开发中）" in sup.page.locator("tr", has_text=number).inner_text()

    # the 客户经理 plans two items from 我的开发计划
    m.goto("/myplan/list/")
    assert number in m.text() and "我的开发计划" in m.text()
    m.goto("/opportunity/list/")
    with m.page.expect_navigation():
        m.page.locator("tr", has_text=number).locator("a", has_text="制定计划").click()
    assert "制定客户开发计划" in m.text()
    day1 = date.today() + timedelta(days=3)
    for day, content in ((day1, "电话联系采购经理，了解需求"),
                         (day1 + timedelta(days=7), "上门演示样机并报价")):
        m.page.fill("#date", day.isoformat())
        m.page.fill("#content", content)
        submit(m, "button:has-text('添加')")
        assert "保存成功" in flash_text(m)
    items = m.page.locator("table.crm-plan-items tbody tr")
    assert items.count() == 2
    assert day1.isoformat() in items.nth(0).inner_text()

    # records the results on the 执行计划 page
    with m.page.expect_navigation():
        m.page.click("a:has-text('执行计划')")
    assert "执行客户开发计划" in m.text()
    for i, result in enumerate(("客户有兴趣，约好演示", "客户认可报价")):
        m.page.locator("table.crm-plan-items tbody tr").nth(i).locator("textarea").fill(result)
        submit(m, f"table.crm-plan-items tbody tr:nth-child({i + 1}) button")
        assert "执行效果已保存" in flash_text(m)
    results = m.page.locator("table.crm-plan-items textarea[name=result]")
    assert [results.nth(i).input_value() for i in range(2)] == ["客户有兴趣，约好演示", "客户认可报价"]

    # 开发成功 (asks for a confirmation first)
    dialogs = watch_dialogs(m)
    submit(m, "button:has-text('开发成功')")
    msg = flash_text(m)
    assert "开发成功：已创建客户" in msg, msg
    confirmed = bool(dialogs) and "开发成功" in dialogs[0]  # checked at the end
    assert "开发成功" in m.page.locator("table").first.inner_text()

    # the new customer is in 客户信息 (newest first) and its page shows the contact
    open_menu(m, "客户管理", "客户信息")
    assert "客户信息" in m.text()
    with m.page.expect_navigation():
        m.page.locator("table a", has_text=name).first.click()
    body = m.text()
    assert name in body and "赵敏" in body and "正常" in body
    assert "客户信息不完整" in body
    assert db_rows(env, "SELECT status FROM crm_opportunity WHERE id = ?", opp_id)[0][0] == "succeeded"
    assert_no_english(body)
    assert confirmed, "开发成功 did not ask for a confirmation (inline onsubmit blocked by the CSP?)"


# ---- 2. a 客户经理 maintains a customer ---------------------------------------------------


def test_journey2_manager_maintains_customer(session, server):
    _base, env = server
    cid, cnumber, cname = manager1_customer(env, with_orders=True)
    m = session("manager1")
    open_menu(m, "客户管理", "我的客户")
    assert "我的客户" in m.text()
    # narrow 我的客户 to the customer (FAB's filter in the URL: 客户编号 starts with)
    m.page.goto(m.page.url + f"&_flt_0_number={cnumber}")
    assert "我的客户" in m.text() and cname in m.text()
    with m.page.expect_navigation():
        m.page.locator("table a", has_text=cname).first.click()
    assert cname in m.text() and "基本信息" in m.text()

    # edit: the dictionary selects offer only their own category
    with m.page.expect_navigation():
        m.page.click("a:has-text('编辑客户信息')")
    assert "编辑客户信息" in m.text()
    regions = set(select2_options(m, "region")) - {""}
    levels = set(select2_options(m, "level")) - {""}
    late = []  # checked at the end, so that the rest of the journey runs too
    if regions != REGIONS:
        late.append(f"地区 offers {sorted(regions)}")
    if levels != LEVELS:
        late.append(f"客户等级 offers {sorted(levels)}")
    pick_select2(m, "region", "华北")
    pick_select2(m, "level", "战略合作伙伴")
    m.page.fill("#address", "北京市海淀区中关村大街 1 号")
    submit(m)
    assert "保存成功" in flash_text(m), flash_text(m)
    row = m.page.locator("tr", has_text=cnumber)
    if row.count():
        assert "战略合作伙伴" in row.inner_text() and "华北" in row.inner_text()

    # add a contact
    m.goto(f"/customer/show/{cid}")
    with m.page.expect_navigation():
        m.page.click("#contacts a:has-text('新建联系人')")
    assert "新建联系人" in m.text()
    contact = f"王小明{_uid()}"
    m.page.fill("#name", contact)
    m.page.check("input[name=gender][value='男']")
    m.page.fill("#position", "采购经理")
    m.page.fill("#office_phone", "010-62345678")
    m.page.fill("#mobile", "13800138000")
    m.page.fill("#email", "wangxm@example.com")
    submit(m, "#contact-form button[type=submit]")
    assert "保存成功" in flash_text(m)
    assert contact in m.page.locator("table.crm-contacts").inner_text()

    # add an interaction record
    m.goto(f"/customer/show/{cid}")
    with m.page.expect_navigation():
        m.page.click("#activities a:has-text('新建交往记录')")
    assert "新建交往记录" in m.text()
    assert m.page.input_value("#date") == date.today().isoformat()
    m.page.fill("#place", "客户公司会议室")
    m.page.fill("#summary", f"季度回访{_uid()}")
    m.page.fill("#detail", "介绍新款打印机，客户计划下季度采购。")
    submit(m, "#activity-form button[type=submit]")
    assert "保存成功" in flash_text(m)
    assert "客户公司会议室" in m.page.locator("table.crm-activities").inner_text()

    # the customer page: edited data, the contact, the record; historical orders → detail
    m.goto(f"/customer/show/{cid}")
    basic = m.page.locator("table.crm-customer-basic").inner_text()
    assert "战略合作伙伴" in basic and "华北" in basic
    assert contact in m.page.locator("#contacts").inner_text()
    assert "客户公司会议室" in m.page.locator("#activities").inner_text()
    orders = m.page.locator("table.crm-orders tbody tr")
    assert orders.count() >= 1
    first = orders.first.inner_text()
    assert "元" in first and ("已发货" in first or "已回款" in first), first
    order_no = orders.first.locator("a").inner_text()
    with m.page.expect_navigation():
        orders.first.locator("a").click()
    body = m.text()
    assert order_no in body and "订单明细" in body and "合计" in body and " 元" in body
    assert_no_english(body)
    assert not late, "dictionary selects of 编辑客户信息: " + "; ".join(late)


# ---- 3. service ticket: 新创建 → feedback < 3 → 已归档 → archive search -------------------


def test_journey3_service_ticket_round_trip(session, server):
    _base, env = server
    cid, cnumber, cname = manager1_customer(env)
    summary = f"打印机卡纸{_uid()}"
    m = session("manager1")
    open_menu(m, "服务管理", "服务创建")
    m.page.select_option("#service_type", label="投诉")
    pick_select2(m, "customer_id", cname, search=cname[:4])
    m.page.fill("#summary", summary)
    m.page.fill("#request", "客户反映打印机频繁卡纸，要求上门检修。")
    submit(m, "#service-create button[type=submit]")
    msg = flash_text(m)
    assert "保存成功：服务" in msg, msg
    number = re.search(r"FW\d{12}", msg).group(0)
    assert m.page.input_value("#summary") == ""  # back to an empty form for the next one
    tid = db_rows(env, "SELECT id FROM crm_service WHERE number = ?", number)[0][0]

    sup = session("supervisor")
    open_menu(sup, "服务管理", "服务分配")
    row = find_row(sup, number)  # oldest first: the new ticket is on the last page
    assert "新创建" in row.inner_text()
    row.locator("select[name=assignee_id]").select_option(value=str(user_id(env, "manager1")))
    with sup.page.expect_navigation():
        row.locator("button", has_text="分配").click()
    assert f"服务 {number} 已分配给" in flash_text(sup)

    def handle(text):
        open_menu(m, "服务管理", "服务处理")
        r = find_row(m, number)
        assert "已分配" in r.inner_text()
        with m.page.expect_navigation():
            r.locator("a", has_text="处理").click()
        m.page.fill("#handling", text)
        submit(m, "form button[type=submit]:has-text('保存')")
        assert "处理已保存" in flash_text(m)

    def feedback(result, score):
        open_menu(m, "服务管理", "服务反馈")
        r = find_row(m, number)
        assert "已处理" in r.inner_text()
        with m.page.expect_navigation():
            r.locator("a", has_text="反馈").click()
        m.page.fill("#result", result)
        m.page.select_option("#satisfaction", value=str(score))
        submit(m, "form button[type=submit]:has-text('保存')")
        return flash_text(m)

    handle("电话指导客户清理进纸通道。")
    msg = feedback("问题仍然存在", 2)
    assert "满意度低于 3" in msg and "退回" in msg, msg
    handle("上门更换搓纸轮，已恢复正常。")
    msg = feedback("客户满意", 4)
    assert f"服务 {number} 已归档" in msg, msg

    # found in the archive search (by 概要 and 服务类型), with its full history
    open_menu(m, "服务管理", "服务归档")
    m.page.fill("#summary", summary[-6:])
    m.page.select_option("#service_type", label="投诉")
    m.page.fill("#date_from", date.today().isoformat())
    submit(m, "#archive-search button[type=submit]")
    row = m.page.locator("tr", has_text=number)
    assert row.count() == 1 and "已归档" in row.inner_text() and cname in row.inner_text()
    with m.page.expect_navigation():
        row.locator("a", has_text=number).click()
    body = m.text()
    assert summary in body and "已归档" in body
    assert "上门更换搓纸轮" in body and "电话指导客户" in body  # both rounds in the history
    assert db_rows(env, "SELECT status FROM crm_service WHERE id = ?", tid)[0][0] == "archived"
    assert_no_english(body)


# ---- 4. churn: churn-check → two 暂缓流失 measures → confirm → customer 已流失 ------------


def test_journey4_churn_warning_confirmed(session, server, cli):
    _base, env = server
    out = cli("churn-check").stdout
    assert "新开流失预警" in out, out
    m = session("manager1")
    open_menu(m, "客户管理", "客户流失管理")
    assert "客户流失管理" in m.text()
    row = m.page.locator("table tbody tr", has_text="预警").filter(has_not_text="暂缓").first
    cname = row.locator("td").nth(1).inner_text().strip()
    with m.page.expect_navigation():
        row.locator("a", has_text="详情").click()
    assert "客户流失预警" in m.text() and cname in m.text()

    for i, measure in enumerate(("上门拜访，了解停止下单的原因", "提供九折优惠报价")):
        m.page.fill("#measure", measure)
        submit(m, "button:has-text('添加暂缓措施')")
        assert "暂缓措施已保存" in flash_text(m)
        assert "暂缓流失" in m.page.locator("h2").inner_text()
        assert measure in m.text()

    dialogs = watch_dialogs(m)
    m.page.fill("#reason", "客户已转向其他供应商")
    submit(m, "button:has-text('确认流失')")
    assert "已确认流失" in flash_text(m)
    confirmed = bool(dialogs)  # checked at the end
    assert "已流失" in m.page.locator("h2").inner_text()
    with m.page.expect_navigation():
        m.page.locator("a", has_text=cname).first.click()
    assert "已流失" in m.page.locator("h2").inner_text()
    body = m.text()
    assert "流失记录" in body and "客户已转向其他供应商" in body
    assert "编辑客户信息" not in body  # a lost customer can only be viewed
    assert_no_english(body)
    assert confirmed, "确认流失 did not ask for a confirmation (inline onsubmit blocked by the CSP?)"


# ---- 5. 高管 reads the reports, switches 构成, downloads CSV and XLSX ----------------------


REPORTS = [("contribution", "客户贡献分析"), ("composition", "客户构成分析"),
           ("service", "客户服务分析"), ("churn", "客户流失分析")]


def _download(s, selector, tmp_path):
    with s.page.expect_download() as info:
        s.page.click(selector)
    d = info.value
    assert d.failure() is None, d.failure()
    # Chromium aborts the navigation request that turned into a download: not an error
    s.errors[:] = [e for e in s.errors if e != f"requestfailed: {d.url} net::ERR_ABORTED"]
    target = tmp_path / d.suggested_filename
    d.save_as(target)
    return d.suggested_filename, target.read_bytes()


def test_journey5_executive_reports(session, tmp_path):
    import io

    import openpyxl

    e = session("exec")
    open_menu(e, "统计报表", "客户贡献分析")
    for name, title in REPORTS:
        with e.page.expect_navigation():
            e.page.click(f"ul.nav-tabs a:has-text('{title}')")
        assert title in e.page.locator(".panel-title").first.inner_text()
        chart = e.page.locator("#crm-report-chart")
        if name != "churn" or chart.count():  # 流失 may have no confirmed rows yet
            chart.locator("canvas").first.wait_for()
            assert chart.bounding_box()["height"] > 300
        fname, csv = _download(e, "a.crm-export-csv", tmp_path)
        assert fname.endswith(".csv") and csv.startswith(b"\xef\xbb\xbf"), fname
        csv.decode("utf-8-sig")
        fname, xlsx = _download(e, "a.crm-export-xlsx", tmp_path)
        assert fname.endswith(".xlsx"), fname
        wb = openpyxl.load_workbook(io.BytesIO(xlsx))
        assert wb.active.max_row >= 1
        e.screenshot(f"journey5-{name}")

    # 构成 by 等级 / 信用度 / 满意度
    e.goto("/reports/composition/")
    for by, label, sample in (("level", "按等级", "普通客户"), ("credit", "按信用度", "5"),
                              ("satisfaction", "按满意度", "3")):
        e.page.select_option("#by", value=by)
        submit(e, ".crm-report-filters button[type=submit]")
        assert e.page.locator("#by option:checked").inner_text().strip() == label
        table = e.page.locator("table.crm-report-table").inner_text()
        assert sample in table and "%" in table, table
        e.page.locator("#crm-report-chart canvas").first.wait_for()
        fname, csv = _download(e, "a.crm-export-csv", tmp_path)
        assert csv.startswith(b"\xef\xbb\xbf")
        assert sample in csv.decode("utf-8-sig")
    assert_no_english(e.text())


# ---- 6. admin edits a role; the user's menu changes ------------------------------------


PRODUCTS = "产品 · 查看列表"   # one permission governs the 产品查询 menu, page and API


def _edit_manager_role(admin, add=False):
    open_menu(admin, "安全", "角色列表")
    row = admin.page.locator("table tr", has_text="客户经理").first
    with admin.page.expect_navigation():
        row.locator("a[href*='/roles/edit/']").click()
    assert "编辑角色" in admin.text()
    if add:
        admin.page.locator("#permissions + .select2-container .select2-search__field").fill("产品 ·")
        admin.page.locator(".select2-container--open .select2-results__option",
                           has_text=PRODUCTS).first.click()
    else:
        chip = admin.page.locator(".select2-selection__choice", has_text=PRODUCTS)
        assert chip.count() == 1, f"客户经理 lacks {PRODUCTS} before the test"
        chip.locator(".select2-selection__choice__remove").click()
        admin.page.keyboard.press("Escape")
        assert admin.page.locator(".select2-selection__choice", has_text=PRODUCTS).count() == 0
    submit(admin, "form button[type=submit]")
    return flash_text(admin)


def _menu_items(s, category):
    expand_navbar(s)
    s.page.click(f".navbar >> text={category}")
    items = s.page.locator(".navbar li.dropdown.open .dropdown-menu a").all_inner_texts()
    s.page.keyboard.press("Escape")
    return [i.strip() for i in items]


def test_journey6_admin_edits_role_permissions(session):
    before = session("manager1")
    assert "产品查询" in _menu_items(before, "基础数据")
    admin = session("admin")
    try:
        msg = _edit_manager_role(admin)
        assert "记录已更新" in msg, msg
        m = session("manager1")
        items = _menu_items(m, "基础数据")
        assert "产品查询" not in items and "库存查询" in items, items
    finally:
        msg = _edit_manager_role(admin, add=True)
    assert "记录已更新" in msg, msg
    again = session("manager1")
    assert "产品查询" in _menu_items(again, "基础数据")
    assert_no_english(admin.text(), "List ", "Search", "Add Filter")


# ---- 7. documents (Chinese file name) and mail (local SMTP server) ---------------------


def test_journey7_document_with_chinese_name(session, server, tmp_path):
    _base, env = server
    cid, cnumber, cname = manager1_customer(env)
    m = session("manager1")
    m.goto(f"/customer/show/{cid}")
    assert "文档" in m.text()
    with m.page.expect_navigation():
        m.page.locator("a", has_text="上传文档").first.click()
    assert f"{cname} 的文档" in m.text()
    name = f"合同（草案）第{_uid()}号 北京.txt"
    content = "甲方：北京星河科技有限公司\n乙方：本公司\n金额：壹万元整\n".encode("utf-8")
    m.page.set_input_files("#up-file", files=[{"name": name, "mimeType": "text/plain",
                                               "buffer": content}])
    shown = name in m.page.locator("#up-names").inner_text()  # checked at the end
    submit(m, "button:has-text('上传')")
    assert f"上传成功：{name}（v1）" in flash_text(m)
    row = m.page.locator("tr", has_text=name)
    assert "v1" in row.inner_text()
    with m.page.expect_download() as info:
        row.locator("a", has_text="下载").click()
    d = info.value
    m.errors[:] = [e for e in m.errors if e != f"requestfailed: {d.url} net::ERR_ABORTED"]
    assert d.suggested_filename == name
    target = tmp_path / "doc.txt"
    d.save_as(target)
    assert target.read_bytes() == content
    # the customer page lists it in its 文档 section
    m.goto(f"/customer/show/{cid}")
    assert name in m.page.locator("#documents").inner_text()
    assert shown, "the chosen file name is not shown (inline onchange blocked by the CSP?)"


@pytest.fixture
def smtp_server(server):
    """A local aiosmtpd server on the port the app sends to; yields the received mails."""
    from aiosmtpd.controller import Controller

    _base, env = server
    received = []

    class Handler:
        async def handle_DATA(self, smtp, session, envelope):
            received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 OK"

    ctrl = Controller(Handler(), hostname="127.0.0.1", port=int(env["CRM_MAIL_PORT"]))
    ctrl.start()
    yield received
    ctrl.stop()


def _decoded(header):
    return str(email.header.make_header(email.header.decode_header(header)))


def test_journey7_mail_to_contact(session, server, smtp_server):
    _base, env = server
    cid, cnumber, cname = manager1_customer(env)
    m = session("manager1")
    # a contact with an e-mail address, added through the UI
    m.goto(f"/contacts/customer/{cid}/add")
    contact = f"李雷{_uid()}"
    address = f"lilei.{_uid()}@example.com"
    m.page.fill("#name", contact)
    m.page.check("input[name=gender][value='男']")
    m.page.fill("#position", "总经理")
    m.page.fill("#office_phone", "010-88886666")
    m.page.fill("#email", address)
    submit(m, "#contact-form button[type=submit]")
    assert "保存成功" in flash_text(m)

    m.goto(f"/customer/show/{cid}")
    with m.page.expect_navigation():
        m.page.locator("#mail a", has_text="写邮件").first.click()
    assert "写邮件" in m.text() and cname in m.text()
    m.page.locator("label.checkbox-inline", has_text=contact).locator("input").check()
    subject = f"新款打印机报价单 {_uid()}"
    m.page.fill("#subject", subject)
    m.page.fill("#body", f"{contact} 您好：\n\n附上新款打印机的报价，请查收。\n\n张伟")
    submit(m, "button:has-text('发送')")
    assert "邮件已发送" in flash_text(m), flash_text(m)
    assert len(smtp_server) == 1, smtp_server
    _from, rcpts, raw = smtp_server[0]
    assert rcpts == [address]
    msg = email.message_from_bytes(raw)
    assert _decoded(msg["Subject"]) == subject
    body = msg.get_payload(decode=True) if not msg.is_multipart() else \
        msg.get_payload(0).get_payload(decode=True)
    assert "附上新款打印机的报价" in body.decode(msg.get_content_charset() or
                                            msg.get_payload(0).get_content_charset() or "utf-8")
    # the customer page lists the mail
    m.goto(f"/customer/show/{cid}")
    assert subject in m.page.locator("#mail").inner_text()


# ---- 8. another manager's record by URL → the Chinese 403 page --------------------------


def test_journey8_other_managers_record_is_403(session, server):
    _base, env = server
    other = db_rows(env, "SELECT c.id FROM crm_customer c JOIN ab_user u ON u.id = c.manager_id "
                         "WHERE u.username = 'manager2' AND c.status = 'normal' ORDER BY c.id")
    opp = db_rows(env, "SELECT o.id FROM crm_opportunity o JOIN ab_user u ON u.id = o.assignee_id "
                       "WHERE u.username = 'manager2' AND o.status = 'assigned' ORDER BY o.id")
    assert other and opp, "the demo data has no customer / assigned opportunity of manager2"
    m = session("manager1")
    # reading the customer stays allowed (all staff read all customers)
    assert m.goto(f"/customer/show/{other[0][0]}").status == 200
    assert "编辑客户信息" not in m.text()
    m.allowed_statuses.add(403)
    for path in (f"/customer/edit/{other[0][0]}", f"/contacts/customer/{other[0][0]}/add",
                 f"/opportunity/plan/{opp[0][0]}"):
        resp = m.goto(path)
        assert resp.status == 403, (path, resp.status)
        heading = m.page.locator(".panel-danger .panel-title").inner_text()
        assert "403" in heading and re.search(r"[\u4e00-\u9fff]", heading), heading
        body = m.text()
        assert "回到首页" in body
        assert_no_english(body)
