"""销售机会看板 in Chromium: drag an unassigned card to 开发中 → the assign dialog →
assigned; the 客户经理 drags it to 开发成功; a lost race (the row changes in the
database between page load and drop) shows the server's 409 message on the card,
which moves back; the keyboard way (Tab to a card's button, Enter).

The opportunities are created through the REST API (JWT) with unique names; the race
is made by writing the server's SQLite database directly, as another user would.
"""
import json
import sqlite3
import urllib.request
from pathlib import Path

from .conftest import PASSWORD
from .test_journeys import _uid, db_rows, user_id, watch_dialogs


def _api(base, username, method, path, body=None, token=None):
    if token is None:
        token = _api(base, username, "POST", "/api/v1/security/login",
                     {"username": username, "password": PASSWORD, "provider": "db"},
                     token="")["access_token"]
    req = urllib.request.Request(base + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=15) as r:
        return json.loads(r.read())


def new_opportunity(base, name, **extra):
    body = {"customer_name": name, "success_rate": 60, "summary": "看板采购打印机",
            "description": "看板旅程", "expected_amount": "50000", "expected_close_on": "2027-06-30",
            **extra}
    return _api(base, "manager1", "POST", "/api/v1/opportunity/", body)["id"]


def write_db(env, sql, *args):
    con = sqlite3.connect(Path(env["CRM_INSTANCE_DIR"]) / "crm.db", timeout=15)
    try:
        con.execute(sql, args)
        con.commit()
    finally:
        con.close()


def card(s, pk):
    return s.page.locator(f".crm-card[data-id='{pk}']")


def column(s, status):
    return s.page.locator(f".crm-board-col[data-status='{status}']")


def count(s, status):
    return int(column(s, status).locator(".crm-board-count").inner_text())


def db_count(env, status):
    return db_rows(env, "SELECT count(*) FROM crm_opportunity WHERE status = ?", status)[0][0]


def open_board(s):
    s.goto("/opportunity/board/")
    s.page.wait_for_selector(".crm-board-col")


def test_board_journey_drag_assign_succeed_and_a_lost_race(session, server):
    base, env = server
    name = f"看板星河测试有限公司{_uid()}"
    pk = new_opportunity(base, name)

    # 销售主管: menu → board; drag the new card from 未指派 to 开发中 → the assign dialog
    sup = session("supervisor")
    sup.goto("/")
    sup.page.click(".navbar >> text=营销管理")
    with sup.page.expect_navigation():
        sup.page.click(".navbar .dropdown-menu >> text=销售机会看板")
    sup.page.wait_for_selector(".crm-board-col")
    assert "销售机会看板" in sup.text()
    c = card(sup, pk)
    assert name in c.inner_text() and "未指派" in c.inner_text() and "60%" in c.inner_text()
    assert c.locator("xpath=ancestor::section").get_attribute("data-status") == "unassigned"
    before = count(sup, "assigned")
    c.drag_to(column(sup, "assigned"))
    dialog = sup.page.locator("#crm-assign-dialog")
    dialog.wait_for(state="visible")
    assert name in dialog.inner_text()
    sup.page.select_option("#crm-assign-manager", str(user_id(env, "manager1")))
    sup.screenshot("board-assign-dialog")
    dialog.locator("button[type=submit]").click()
    sup.page.locator(f".crm-board-col[data-status='assigned'] .crm-card[data-id='{pk}']",
                     has_text="指派成功").wait_for()
    assert "张伟" in card(sup, pk).inner_text()
    assert db_rows(env, "SELECT status FROM crm_opportunity WHERE id = ?", pk)[0][0] == "assigned"
    assert count(sup, "assigned") == before + 1 == db_count(env, "assigned")
    # the 销售主管 may not close it: no buttons, and a drop to 开发成功 is explained, not sent
    assert card(sup, pk).locator("button").count() == 0

    # 客户经理: drag it to 开发成功 (confirms first)
    m = session("manager1")
    dialogs = watch_dialogs(m)
    open_board(m)
    won_before = count(m, "succeeded")
    card(m, pk).drag_to(column(m, "succeeded"))
    m.page.locator(f".crm-board-col[data-status='succeeded'] .crm-card[data-id='{pk}']",
                   has_text="开发成功：已建立客户").wait_for()
    assert dialogs and "开发成功" in dialogs[0]
    assert db_rows(env, "SELECT status FROM crm_opportunity WHERE id = ?", pk)[0][0] == "succeeded"
    assert count(m, "succeeded") == won_before + 1
    assert db_rows(env, "SELECT count(*) FROM crm_customer WHERE name = ?", name)[0][0] == 1

    # a lost race: someone assigns the card after the board was loaded
    late = new_opportunity(base, f"看板抢输测试有限公司{_uid()}")
    open_board(sup)
    assert card(sup, late).locator("xpath=ancestor::section").get_attribute("data-status") == "unassigned"
    shown_assigned = count(sup, "assigned")
    write_db(env, "UPDATE crm_opportunity SET status = 'assigned', assignee_id = ?, "
                  "assigned_on = CURRENT_TIMESTAMP WHERE id = ?", user_id(env, "manager2"), late)
    sup.allowed_statuses.add(409)
    card(sup, late).drag_to(column(sup, "assigned"))
    sup.page.locator("#crm-assign-dialog").wait_for(state="visible")
    sup.page.select_option("#crm-assign-manager", str(user_id(env, "manager1")))
    sup.page.locator("#crm-assign-dialog button[type=submit]").click()
    msg = card(sup, late).locator(".crm-card-msg.alert-danger")
    msg.wait_for()
    assert "指派" in msg.inner_text() and "销售机会" in msg.inner_text(), msg.inner_text()
    assert card(sup, late).locator("xpath=ancestor::section").get_attribute("data-status") == "unassigned"
    sup.page.wait_for_function(
        "n => Number(document.querySelector(\".crm-board-col[data-status='assigned'] .crm-board-count\").textContent) === n",
        arg=shown_assigned + 1)
    assert count(sup, "assigned") == db_count(env, "assigned")
    assert db_rows(env, "SELECT assignee_id FROM crm_opportunity WHERE id = ?", late)[0][0] == \
        user_id(env, "manager2")                                   # nothing changed by the drop
    sup.screenshot("board-lost-race")


def test_board_keyboard_buttons_and_forecast(session, server):
    base, env = server
    name = f"看板键盘测试有限公司{_uid()}"
    pk = new_opportunity(base, name, expected_amount="80000.00", success_rate=25)
    _api(base, "supervisor", "POST", f"/api/v1/opportunity/{pk}/assign",
         {"assignee_id": user_id(env, "manager1")})
    m = session("manager1")
    dialogs = watch_dialogs(m)
    open_board(m)
    c = card(m, pk)
    assert "80,000.00 元" in c.inner_text() and "2027-06-30" in c.inner_text()
    assert "预计成交" in m.text() and "加权预计金额" in m.text()
    # the forecast table of manager1 includes 80000 × 25% = 20000 among the months
    assert m.page.locator(".crm-forecast-months tbody tr", has_text="2027-06").count() == 1
    # keyboard: focus the card's 终止开发 button and press Enter
    button = c.locator("button[data-step='fail']")
    button.focus()
    assert m.page.evaluate("document.activeElement.dataset.step") == "fail"
    m.page.keyboard.press("Enter")
    m.page.locator(f".crm-board-col[data-status='failed'] .crm-card[data-id='{pk}']",
                   has_text="已终止开发").wait_for()
    assert dialogs and "终止开发" in dialogs[0]
    assert db_rows(env, "SELECT status FROM crm_opportunity WHERE id = ?", pk)[0][0] == "failed"
    # focus stays on the moved card (its number link), not lost to the page
    assert m.page.evaluate("document.activeElement.className") == "crm-card-number"
    # Tab moves on from the card's link to the next focusable control, as on any page
    m.page.keyboard.press("Tab")
    assert m.page.evaluate("document.activeElement.tagName") in ("A", "BUTTON")
    m.screenshot("board-manager")
