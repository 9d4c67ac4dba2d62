"""销售机会看板: board data and rights, the forecast against hand-computed figures,
预计金额/预计成交日期 input rules (API and form), the board's data endpoint.

The steps the board offers (指派, 开发成功, 终止开发) are the opportunity resource's
(tests/test_marketing.py); here: that the board offers exactly what the workflow
allows, and that a step from the board (cookie + X-CSRFToken) behaves as everywhere.
Runs on SQLite and (with CRM_TEST_DATABASE_URL) on PostgreSQL.
"""
import json
import re
import uuid
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Opportunity
from app.workflows import forecast as board_wf
from app.workflows import opportunities as wf
from app.workflows.actors import Actor

from . import factories as f
from .conftest import PASSWORD

STATUSES = ("unassigned", "assigned", "succeeded", "failed")


def new_manager(app):
    """A fresh 客户经理 (so the forecast's by-manager figures are this test's alone)."""
    name = "fc" + uuid.uuid4().hex[:8]
    with app.app_context():
        sm = app.appbuilder.sm
        u = sm.add_user(name, "预", "测", f"{name}@demo.crm", [sm.find_role("客户经理")],
                        password=PASSWORD)
        db.session.commit()
        uid = u.id
        db.session.remove()
    return name, uid


def board_data(page_text):
    m = re.search(r'<script type="application/json" id="crm-board-data">(.*?)</script>',
                  page_text, re.S)
    assert m, "no board data on the page"
    return json.loads(m.group(1))


def card_of(data, opp_id):
    for col in data["columns"]:
        for c in col["cards"]:
            if c["id"] == opp_id:
                return col["status"], c
    return None, None


def db_counts(dbs):
    with dbs() as s:
        rows = dict(s.execute(select(Opportunity.status, func.count())
                              .group_by(Opportunity.status)).all())
    return {k: rows.get(k, 0) for k in STATUSES}


# ---- the page, its data and who sees what ---------------------------------------------

@pytest.mark.parametrize("username", ["admin", "exec", "supervisor", "manager1"])
def test_every_role_with_the_list_sees_the_board(app, web, username):
    w = web(username)
    r = w.get("/opportunity/board/")
    assert r.status_code == 200, r.text[:300]
    assert "销售机会看板" in r.text and "<title>销售机会看板 - " in r.text
    assert 'href="/opportunity/board/"' in w.get("/").text      # menu 营销管理 › 销售机会看板
    data = board_data(r.text)
    assert [c["status"] for c in data["columns"]] == list(STATUSES)
    assert [c["label"] for c in data["columns"]] == ["未指派", "开发中", "开发成功", "开发失败"]
    assert "board.js" in r.text and "X-CSRFToken" not in r.text   # the script sends it


def test_anonymous_is_sent_to_login_and_api_is_401(app, api):
    c = app.test_client()
    for url in ("/opportunity/board/", "/opportunity/board/data"):
        r = c.get(url)
        assert r.status_code == 302 and "/login" in r.headers["Location"]
    r = api().get("/api/v1/opportunity/forecast/")
    assert r.status_code == 401 and "请先登录" in r.json["message"]


def test_counts_cards_and_what_each_card_offers(app, web, dbs, user_id):
    with dbs() as s:
        sup, m1, m2 = user_id("supervisor"), user_id("manager1"), user_id("manager2")
        un = f.opportunity(s, m1, summary="看板未指派")
        mine = f.opportunity(s, sup, status="assigned", assignee_id=m1, summary="看板我的",
                             expected_amount=Decimal("1200.50"), expected_close_on=date(2027, 3, 1))
        f.plan_item(s, mine, m1, date=date(2020, 1, 2), content="早就该做", result="已做")
        f.plan_item(s, mine, m1, date=date(2020, 1, 5), content="过期未做")
        f.plan_item(s, mine, m1, date=date(2099, 1, 1), content="以后")
        other = f.opportunity(s, sup, status="assigned", assignee_id=m2, summary="看板别人的")
        won = f.opportunity(s, sup, status="succeeded", assignee_id=m1)
        s.commit()
        ids = un.id, mine.id, other.id, won.id
    counts = db_counts(dbs)
    expect = {  # user → {opportunity: (column, may)}
        "supervisor": {ids[0]: ("unassigned", dict(assign=True, succeed=False, fail=False,
                                                   update_forecast=False)),
                       ids[1]: ("assigned", dict(assign=False, succeed=False, fail=False,
                                                 update_forecast=True))},
        "manager1": {ids[0]: ("unassigned", dict(assign=False, succeed=False, fail=False,
                                                 update_forecast=False)),
                     ids[1]: ("assigned", dict(assign=False, succeed=True, fail=True,
                                               update_forecast=True)),
                     ids[2]: ("assigned", dict(assign=False, succeed=False, fail=False,
                                               update_forecast=False))},
        "exec": {ids[1]: ("assigned", dict(assign=False, succeed=False, fail=False,
                                           update_forecast=False)),
                 ids[3]: ("succeeded", dict(assign=False, succeed=False, fail=False,
                                            update_forecast=False))},
    }
    for username, cards in expect.items():
        data = board_data(web(username).get("/opportunity/board/").text)
        assert {c["status"]: c["count"] for c in data["columns"]} == counts, username
        for pk, (column, may) in cards.items():
            status, card = card_of(data, pk)
            assert status == column and card["may"] == may, (username, pk, card)
    _s, card = card_of(board_data(web("manager1").get("/opportunity/board/").text), ids[1])
    assert card["summary"] == "看板我的" and card["assignee"] == "张伟"
    assert card["next_plan_on"] == "2020-01-05" and card["overdue"] is True   # first without 执行效果
    assert card["expected_amount"] == "1200.50" and card["expected_close_on"] == "2027-03-01"
    assert card["url"] == f"/opportunity/show/{ids[1]}"
    _s, card = card_of(board_data(web("manager1").get("/opportunity/board/").text), ids[0])
    assert card["assignee"] is None and card["next_plan_on"] is None


def test_columns_show_the_newest_cards_and_the_exact_count(app, dbs, user_id):
    with app.app_context():
        actor = Actor(id=user_id("exec"), roles=frozenset({"高管"}))
        columns = board_wf.board(db.session, actor, limit=2)
        for status, n, cards in columns:
            assert len(cards) == min(n, 2)
            assert [c.id for c in cards] == sorted((c.id for c in cards), reverse=True)
            assert all(c.status == status for c in cards)
        db.session.remove()


def test_assign_permission_taken_away_hides_the_drop(app, web, dbs, user_id):
    """The board offers a step only when the role has its permission (the API would 403)."""
    from .test_rights_matrix import _set_permission

    pk = None
    with dbs() as s:
        pk = f.opportunity(s, user_id("manager1")).id
        s.commit()
    _set_permission(app, "销售主管", ("can_assign", "Opportunity"), False)
    try:
        page = web("supervisor").get("/opportunity/board/")
        _s, card = card_of(board_data(page.text), pk)
        assert card["may"]["assign"] is False
        assert 'id="crm-assign-manager"' in page.text and "张伟" not in page.text.split(
            'id="crm-assign-manager"')[1].split("</select>")[0]
    finally:
        _set_permission(app, "销售主管", ("can_assign", "Opportunity"), True)
    page = web("supervisor").get("/opportunity/board/")
    assert card_of(board_data(page.text), pk)[1]["may"]["assign"] is True


def test_data_endpoint_counts_card_and_bad_id(app, web, dbs, user_id):
    with dbs() as s:
        pk = f.opportunity(s, user_id("manager1"), summary="数据接口").id
        s.commit()
    w = web("exec")
    r = w.get(f"/opportunity/board/data?id={pk}")
    assert r.status_code == 200
    assert r.json["counts"] == db_counts(dbs)
    assert r.json["card"]["id"] == pk and r.json["card"]["summary"] == "数据接口"
    assert set(r.json["forecast"]) == {"total", "by_month", "by_manager", "without_amount"}
    assert w.get("/opportunity/board/data?id=2147483600").json["card"] is None
    for bad in ("abc", "-1", "1.5", "", "99999999999"):
        r = w.get(f"/opportunity/board/data?id={bad}")
        assert r.status_code == 400, bad
        body = r.get_json(silent=True)
        msg = body["message"] if body else r.text
        assert "参数 id" in msg or "太大" in msg, (bad, msg)


def test_a_step_from_the_board_is_the_api_step_with_the_page_token(app, web, dbs, user_id):
    """What board.js does: cookie + X-CSRFToken from the page; a lost race is 409 and
    changes nothing."""
    with dbs() as s:
        pk = f.opportunity(s, user_id("manager1")).id
        s.commit()
    w = web("supervisor")
    page = w.get("/opportunity/board/").text
    token = re.search(r'data-csrf="([^"]+)"', page).group(1)
    url = f"/api/v1/opportunity/{pk}/assign"
    body = {"assignee_id": user_id("manager1")}
    assert w.client.post(url, json=body).status_code == 400           # no token
    r = w.client.post(url, json=body, headers={"X-CSRFToken": token})
    assert r.status_code == 200 and r.json["result"]["status"] == "assigned"
    r = w.client.post(url, json={"assignee_id": user_id("manager2")}, headers={"X-CSRFToken": token})
    assert r.status_code == 409 and "只有未指派的销售机会才能指派" in r.json["message"], r.text
    with dbs() as s:
        assert s.get(Opportunity, pk).assignee_id == user_id("manager1")
    card = w.get(f"/opportunity/board/data?id={pk}").json["card"]
    assert card["status"] == "assigned" and card["assignee"] == "张伟"


# ---- the forecast -----------------------------------------------------------------------

def test_forecast_figures_match_the_hand_computed_ones(app, api, web, dbs, user_id):
    name, uid = new_manager(app)
    year = date.today().year + 9           # a year nobody else's data uses
    sup = user_id("supervisor")
    rows = [  # (status, amount, rate, close)
        ("assigned", "100000.00", 60, date(year, 3, 10)),   # 60000
        ("assigned", "0.01", 55, date(year, 3, 31)),        # 0.0055
        ("assigned", "12345.67", 33, date(year, 4, 1)),     # 4074.0711
        ("assigned", "5000.00", 100, None),                 # 5000, month unknown
        ("assigned", None, 80, date(year, 4, 2)),           # no amount: not counted
        ("unassigned", "999.00", 90, date(year, 4, 3)),     # not in progress
        ("succeeded", "999.00", 90, date(year, 4, 3)),
        ("failed", "999.00", 90, date(year, 4, 3)),
    ]
    before = api("exec").get("/api/v1/opportunity/forecast/").json["result"]
    with dbs() as s:
        for status, amount, rate, close in rows:
            f.opportunity(s, sup, status=status, assignee_id=None if status == "unassigned" else uid,
                          success_rate=rate, expected_amount=Decimal(amount) if amount else None,
                          expected_close_on=close)
        s.commit()
    r = api("exec").get("/api/v1/opportunity/forecast/")
    assert r.status_code == 200, r.text
    fc = r.json["result"]
    months = {m["month"]: m for m in fc["by_month"]}
    assert months[f"{year}-03"] == {"month": f"{year}-03", "weighted": "60000.01",
                                    "amount": "100000.01", "count": 2}
    assert months[f"{year}-04"] == {"month": f"{year}-04", "weighted": "4074.07",
                                    "amount": "12345.67", "count": 1}
    mgr = [m for m in fc["by_manager"] if m["assignee_id"] == uid]
    # (100000×60 + 0.01×55 + 12345.67×33 + 5000×100) / 100 = 69074.0766
    assert mgr == [{"assignee_id": uid, "name": f"预测", "weighted": "69074.08",
                    "amount": "117345.68", "count": 4}]
    assert fc["total"]["count"] == before["total"]["count"] + 4
    assert fc["without_amount"] == before["without_amount"] + 1
    assert abs(Decimal(fc["total"]["weighted"]) - Decimal(before["total"]["weighted"])
               - Decimal("69074.08")) <= Decimal("0.01")
    keys = [m["month"] for m in fc["by_month"]]
    assert keys == sorted(k for k in keys if k) + ([None] if None in keys else [])
    weights = [Decimal(m["weighted"]) for m in fc["by_manager"]]
    assert weights == sorted(weights, reverse=True)
    # the board shows the same figures
    page = web("supervisor").get("/opportunity/board/").text
    assert board_data(page)["forecast"] == fc


def test_forecast_is_read_by_the_list_permission_only(app, api):
    from .test_rights_matrix import _set_permission

    for username in ("admin", "exec", "supervisor", "manager1"):
        assert api(username).get("/api/v1/opportunity/forecast/").status_code == 200
    _set_permission(app, "高管", ("can_list", "Opportunity"), False)
    try:
        r = api("exec").get("/api/v1/opportunity/forecast/")
        assert r.status_code == 403 and "无权" in r.json["message"]
    finally:
        _set_permission(app, "高管", ("can_list", "Opportunity"), True)


# ---- 预计金额 / 预计成交日期: input rules -------------------------------------------------

BASE = {"success_rate": 40, "summary": "预测字段", "description": "测试预计金额"}


@pytest.mark.parametrize("field,value,words", [
    ("expected_amount", -1, "不能小于 0"),
    ("expected_amount", "-0.01", "不能小于 0"),
    ("expected_amount", "一万", "必须是数字"),
    ("expected_amount", "12abc", "必须是数字"),
    ("expected_amount", True, "必须是数字"),
    ("expected_amount", [100], "必须是数字"),
    ("expected_amount", {"v": 1}, "必须是数字"),
    ("expected_amount", "NaN", "必须是数字"),
    ("expected_amount", "Infinity", "必须是数字"),
    ("expected_amount", "1.234", "最多两位小数"),
    ("expected_amount", "1000000000000", "太大"),
    ("expected_amount", 1e300, "太大"),
    ("expected_close_on", "2027/03/31", "格式不正确"),
    ("expected_close_on", 20270331, "格式不正确"),
    ("expected_close_on", "2027-02-30", "格式不正确"),
    ("expected_close_on", "明年", "格式不正确"),
    ("expected_close_on", "1899-12-31", "不合理"),
    ("expected_close_on", "0001-01-01", "不合理"),
    ("expected_close_on", "9999-12-31", "不合理"),
    ("expected_close_on", ["2027-03-31"], "格式不正确"),
])
def test_bad_forecast_fields_are_400_in_chinese_and_nothing_is_saved(api, dbs, uniq, field,
                                                                     value, words):
    name = uniq("预测客户")
    r = api("manager1").post("/api/v1/opportunity/", json=dict(BASE, customer_name=name,
                                                               **{field: value}))
    assert r.status_code == 400, r.text
    assert r.json["field"] == field and words in r.json["message"], r.json
    assert ("预计金额" if field == "expected_amount" else "预计成交日期") in r.json["message"]
    with dbs() as s:
        assert s.scalar(select(func.count()).where(Opportunity.customer_name == name)) == 0


def test_good_forecast_fields_are_saved_and_edited(api, dbs, uniq):
    c = api("manager1")
    name = uniq("预测客户")
    r = c.post("/api/v1/opportunity/", json=dict(BASE, customer_name=name,
                                                 expected_amount="120,000.5",
                                                 expected_close_on="2027-03-31"))
    assert r.status_code == 201, r.text
    pk = r.json["id"]
    assert r.json["result"]["expected_amount"] == "120000.50"
    assert r.json["result"]["expected_close_on"] == "2027-03-31"
    got = c.get(f"/api/v1/opportunity/{pk}").json["result"]
    assert got["expected_amount"] == "120000.50" and got["expected_close_on"] == "2027-03-31"
    listed = c.get(f"/api/v1/opportunity/?q=(filters:!((col:customer_name,opr:eq,value:{name})))")
    assert listed.json["result"][0]["expected_amount"] == "120000.50"
    r = c.put(f"/api/v1/opportunity/{pk}", json={"expected_amount": 0, "expected_close_on": ""})
    assert r.status_code == 200, r.text
    assert r.json["result"]["expected_amount"] == "0.00"
    assert r.json["result"]["expected_close_on"] is None
    r = c.put(f"/api/v1/opportunity/{pk}", json={"expected_amount": None})
    assert r.status_code == 200 and r.json["result"]["expected_amount"] is None
    r = c.put(f"/api/v1/opportunity/{pk}", json={"expected_amount": -5})
    assert r.status_code == 400 and r.json["field"] == "expected_amount"
    with dbs() as s:
        o = s.get(Opportunity, pk)
        assert o.expected_amount is None and o.expected_close_on is None


def test_the_html_forms_take_and_check_the_forecast_fields(web, dbs, uniq):
    w = web("manager1")
    page = w.get("/opportunity/add").text
    assert "预计金额（元）" in page and "预计成交日期" in page
    name = uniq("表单预测")
    form = dict(BASE, customer_name=name, source="", contact="", contact_phone="",
                expected_amount="-3", expected_close_on="2027/1/1")
    r = w.post_form("/opportunity/add", form)
    assert r.status_code == 400
    assert "预计金额（元）不能小于 0" in r.text and "预计成交日期格式不正确" in r.text
    with dbs() as s:
        assert s.scalar(select(func.count()).where(Opportunity.customer_name == name)) == 0
    form.update(expected_amount="8800", expected_close_on="2027-01-15")
    r = w.post_form("/opportunity/add", form, form_url="/opportunity/add")
    assert r.status_code == 302, r.text[:500]
    with dbs() as s:
        o = s.scalars(select(Opportunity).where(Opportunity.customer_name == name)).one()
        assert o.expected_amount == Decimal("8800.00") and o.expected_close_on == date(2027, 1, 15)
        pk = o.id
    show = w.get(f"/opportunity/show/{pk}").text
    assert "8,800.00 元" in show and "2027-01-15" in show
    edit = w.get(f"/opportunity/edit/{pk}").text
    assert 'value="8800.00"' in edit and "2027-01-15" in edit


def test_workflow_unit_rules():
    assert wf.parse_amount(None) is None and wf.parse_amount("  ") is None
    assert wf.parse_amount("0") == Decimal("0.00")
    assert wf.parse_amount(12.5) == Decimal("12.50")
    assert wf.parse_amount("999999999999.99") == Decimal("999999999999.99")
    today = date(2026, 12, 1)
    assert wf.parse_close_on("2036-12-31", today=today) == date(2036, 12, 31)
    assert wf.parse_close_on("2000-01-01", today=today) == date(2000, 1, 1)
    for bad in ("2037-01-01", "1999-12-31"):
        with pytest.raises(wf.ValidationError):
            wf.parse_close_on(bad, today=today)
