"""更新预计成交 while 开发中 (issue 21 B): the assignee and 销售主管 update 预计金额,
预计成交日期 and 成功机率 of an ``assigned`` opportunity — REST, the form on the
opportunity page, the board's token path; wrong person 403, not (any more) 开发中 409,
bad input 400 in Chinese, nothing changed on any refusal; one WorkflowEvent per change.
Runs on SQLite and (with CRM_TEST_DATABASE_URL) on PostgreSQL."""
import json
import re
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.models import Opportunity, WorkflowEvent
from app.workflows import opportunities as wf
from app.workflows.actors import Actor

from . import factories as f


@pytest.fixture
def developing(dbs, user_id, uniq):
    """An opportunity 开发中 assigned to manager1, created by supervisor, with a forecast."""
    with dbs() as s:
        o = f.opportunity(s, user_id("supervisor"), status="assigned",
                          assignee_id=user_id("manager1"), customer_name=uniq("预测更新"),
                          success_rate=40, expected_amount=Decimal("5000.00"),
                          expected_close_on=date(2027, 1, 31))
        s.commit()
        return o.id


def state(dbs, pk):
    with dbs() as s:
        o = s.get(Opportunity, pk)
        events = s.scalars(select(WorkflowEvent).where(WorkflowEvent.entity == "opportunity",
                                                       WorkflowEvent.entity_id == pk,
                                                       WorkflowEvent.action == "forecast")
                           .order_by(WorkflowEvent.id)).all()
        return ((o.expected_amount, o.expected_close_on, o.success_rate, o.status),
                [(e.created_by_fk, json.loads(e.note)) for e in events])


def test_assignee_updates_the_forecast_and_it_is_audited(api, dbs, user_id, developing):
    r = api("manager1").post(f"/api/v1/opportunity/{developing}/forecast",
                             json={"expected_amount": "120,000.5", "expected_close_on": "2027-03-31",
                                   "success_rate": 70})
    assert r.status_code == 200, r.text
    res = r.json["result"]
    assert (res["expected_amount"], res["expected_close_on"], res["success_rate"],
            res["status"]) == ("120000.50", "2027-03-31", 70, "assigned")
    assert r.json["message"] == "预计成交已更新"
    values, events = state(dbs, developing)
    assert values == (Decimal("120000.50"), date(2027, 3, 31), 70, "assigned")
    assert events == [(user_id("manager1"), {
        "expected_amount": ["5000.00", "120000.50"], "expected_close_on": ["2027-01-31", "2027-03-31"],
        "success_rate": [40, 70]})]
    # only the fields given change; an empty 预计金额 clears it
    r = api("manager1").post(f"/api/v1/opportunity/{developing}/forecast", json={"expected_amount": ""})
    assert r.status_code == 200 and r.json["result"]["expected_amount"] is None
    values, events = state(dbs, developing)
    assert values == (None, date(2027, 3, 31), 70, "assigned")
    assert events[-1][1] == {"expected_amount": ["120000.50", None]}


def test_supervisor_and_admin_may_too(api, dbs, developing):
    for who, amount in (("supervisor", "1.00"), ("admin", "2.00")):
        r = api(who).post(f"/api/v1/opportunity/{developing}/forecast", json={"expected_amount": amount})
        assert r.status_code == 200, (who, r.text)
        assert state(dbs, developing)[0][0] == Decimal(amount)


@pytest.mark.parametrize("who", ["manager2", "exec"])
def test_wrong_person_is_403_and_nothing_changes(api, dbs, developing, who):
    before = state(dbs, developing)
    r = api(who).post(f"/api/v1/opportunity/{developing}/forecast", json={"expected_amount": "9"})
    assert r.status_code == 403, r.text
    assert re.search(r"[\u4e00-\u9fff]", r.json["message"])
    assert state(dbs, developing) == before


@pytest.mark.parametrize("status", ["succeeded", "failed", "unassigned"])
def test_not_developing_is_409_and_nothing_changes(api, dbs, user_id, uniq, status):
    with dbs() as s:
        o = f.opportunity(s, user_id("supervisor"), status=status,
                          assignee_id=None if status == "unassigned" else user_id("manager1"),
                          customer_name=uniq("预测状态"), expected_amount=Decimal("10.00"))
        s.commit()
        pk = o.id
    before = state(dbs, pk)
    who = "supervisor" if status == "unassigned" else "manager1"
    r = api(who).post(f"/api/v1/opportunity/{pk}/forecast", json={"expected_amount": "11"})
    assert r.status_code == 409, r.text
    assert ("编辑" if status == "unassigned" else "开发中") in r.json["message"]
    assert state(dbs, pk) == before


def test_a_twin_that_closed_it_first_wins_409_nothing_changed(app, dbs, user_id, developing):
    """The compare-and-set: the step read the row while 开发中, a concurrent 开发成功
    committed before its UPDATE — 409, the forecast and the status stay as the twin left."""
    actor = Actor(id=user_id("manager1"), roles=frozenset({"客户经理"}))
    with dbs() as s:
        stale = wf.get(s, developing)
        wf.require_update_forecast(actor, stale)          # passes: still 开发中 here
        with dbs() as twin:
            wf.fail(twin, actor, developing)
            twin.commit()
        original_get = wf.get
        try:
            wf.get = lambda _s, _pk: stale                 # the row as this request read it
            with pytest.raises(wf.Conflict):
                wf.update_forecast(s, actor, developing, {"expected_amount": "77"})
        finally:
            wf.get = original_get
        s.rollback()
    values, events = state(dbs, developing)
    assert values == (Decimal("5000.00"), date(2027, 1, 31), 40, "failed") and events == []


@pytest.mark.parametrize("body, field, words", [
    ({"expected_amount": "-1"}, "expected_amount", "不能小于 0"),
    ({"expected_amount": "十万"}, "expected_amount", "必须是数字"),
    ({"expected_amount": "1.234"}, "expected_amount", "最多两位小数"),
    ({"expected_amount": True}, "expected_amount", "必须是数字"),
    ({"expected_close_on": "2027/3/1"}, "expected_close_on", "格式不正确"),
    ({"expected_close_on": "1999-12-31"}, "expected_close_on", "不合理"),
    ({"success_rate": 101}, "success_rate", "0 到 100"),
    ({"success_rate": ""}, "success_rate", "不能为空"),
    ({"summary": "改概要"}, "summary", "只有未指派时才能编辑"),
    ({}, "expected_amount", "至少一项"),
])
def test_bad_input_is_400_in_chinese_and_nothing_changes(api, dbs, developing, body, field, words):
    before = state(dbs, developing)
    r = api("manager1").post(f"/api/v1/opportunity/{developing}/forecast", json=body)
    assert r.status_code == 400, r.text
    assert r.json["field"] == field and words in r.json["message"], r.json
    assert state(dbs, developing) == before


def test_every_problem_is_reported_at_once(api, developing):
    r = api("manager1").post(f"/api/v1/opportunity/{developing}/forecast",
                             json={"expected_amount": "-1", "expected_close_on": "x"})
    assert r.status_code == 400
    assert {e["field"] for e in r.json["errors"]} == {"expected_amount", "expected_close_on"}


def test_the_form_on_the_opportunity_page(web, dbs, developing):
    w = web("manager1")
    page = w.get(f"/opportunity/show/{developing}").text
    assert "更新预计成交" in page and f'action="/opportunity/forecast/{developing}"' in page
    assert 'value="5000.00"' in page and 'value="2027-01-31"' in page
    r = w.post_form(f"/opportunity/forecast/{developing}",
                    {"expected_amount": "-3", "expected_close_on": "2027-02-30", "success_rate": "40"},
                    form_url=f"/opportunity/show/{developing}")
    assert r.status_code == 400
    assert "预计金额（元）不能小于 0" in r.text and "预计成交日期" in r.text
    assert 'value="-3"' in r.text                         # the form again with what was typed
    assert state(dbs, developing)[1] == []
    r = w.post_form(f"/opportunity/forecast/{developing}",
                    {"expected_amount": "8800", "expected_close_on": "2027-02-28", "success_rate": "55"},
                    form_url=f"/opportunity/show/{developing}")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/opportunity/show/{developing}")
    assert state(dbs, developing)[0] == (Decimal("8800.00"), date(2027, 2, 28), 55, "assigned")


def test_the_form_is_offered_only_to_who_may_and_refused_to_others(web, dbs, developing):
    assert "更新预计成交" not in web("manager2").get(f"/opportunity/show/{developing}").text
    assert "更新预计成交" not in web("exec").get(f"/opportunity/show/{developing}").text
    w = web("manager2")
    r = w.post_form(f"/opportunity/forecast/{developing}", {"expected_amount": "1"},
                    form_url="/opportunity/add")          # a page of theirs with a token
    assert r.status_code == 403
    assert state(dbs, developing)[1] == []


def test_the_board_card_offers_it_and_the_page_token_path_works(web, dbs, developing):
    w = web("manager1")
    page = w.get("/opportunity/board/").text
    token = re.search(r'data-csrf="([^"]+)"', page).group(1)
    data = json.loads(re.search(r'<script type="application/json" id="crm-board-data">(.*?)</script>',
                                page, re.S).group(1))
    card = next(c for col in data["columns"] for c in col["cards"] if c["id"] == developing)
    assert card["may"]["update_forecast"] is True
    url = f"/api/v1/opportunity/{developing}/forecast"
    assert w.client.post(url, json={"success_rate": 60}).status_code == 400        # no token
    r = w.client.post(url, json={"success_rate": 60}, headers={"X-CSRFToken": token})
    assert r.status_code == 200, r.text
    assert state(dbs, developing)[0][2] == 60


def test_workflow_rule_matches_may():
    mgr, other, sup = (Actor(id=i, roles=frozenset({r})) for i, r in
                       ((7, "客户经理"), (8, "客户经理"), (9, "销售主管")))
    opp = type("O", (), dict(status="assigned", number="XS1", created_by_fk=9, assignee_id=7))
    assert wf.may(mgr, opp)["update_forecast"] and wf.may(sup, opp)["update_forecast"]
    assert not wf.may(other, opp)["update_forecast"]
    opp.status = "succeeded"
    assert not any(wf.may(a, opp)["update_forecast"] for a in (mgr, sup))
