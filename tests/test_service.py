"""服务管理: create, assign, handle, feedback (incl. a < 3 round trip), archive search,
the forbidden paths (nothing changed), racing assigns — through the workflow, the
HTML screens (CSRF on) and the REST API."""
import threading
from datetime import date, datetime
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import ServiceTicket, WorkflowEvent
from app.workflows import events as events_module
from app.workflows import service as wf
from app.workflows.actors import ADMIN, EXECUTIVE, MANAGER, SUPERVISOR, Actor
from app.workflows.errors import Conflict, Forbidden, ValidationError

from . import factories as f

ROLE_OF = {"admin": ADMIN, "exec": EXECUTIVE, "supervisor": SUPERVISOR,
           "manager1": MANAGER, "manager2": MANAGER}
FIELDS = {"id", "number", "service_type", "summary", "customer_id", "request", "status",
          "creator_id", "created_on", "assignee_id", "assigned_on", "handling", "handler_id",
          "handled_on", "result", "satisfaction", "priority",
          "response_due", "resolution_due", "first_response_on", "resolved_on", "overdue"}


# ---- builders ----------------------------------------------------------------------------

@pytest.fixture
def actor(user_id):
    return lambda username: Actor(id=user_id(username), roles=frozenset({ROLE_OF[username]}),
                                  name=username)


@pytest.fixture
def customer(dbs, user_id, uniq):
    """``customer(name=None)`` → (id, name, number) of a new customer of manager1."""
    def _make(name=None):
        with dbs() as s:
            c = f.customer(s, user_id("manager1"), name=name or uniq("服务测试客户"))
            s.commit()
            return c.id, c.name, c.number
    return _make


@pytest.fixture
def ticket(dbs, user_id, customer, uniq):
    """``ticket(status="created", assignee="manager2", creator="manager1", **kw)`` → id."""
    def _make(status="created", assignee="manager2", creator="manager1", customer_id=None,
              **kw):
        cid = customer_id or customer()[0]
        with dbs() as s:
            c = s.get(f.Customer, cid)
            values = dict(summary=uniq("概要"))
            if status != "created":
                values.update(assignee_id=user_id(assignee), assigned_on=datetime.now())
            if status in ("handled", "archived"):
                values.update(handling="已电话回复", handler_id=user_id(assignee),
                              handled_on=datetime.now())
            if status == "archived":
                values.update(result="客户满意", satisfaction=4)
            values.update(kw)
            t = f.service(s, c, user_id(creator), status=status, **values)
            s.commit()
            return t.id
    return _make


def snapshot(dbs, tid):
    """Every column of the ticket plus its number of WorkflowEvents."""
    with dbs() as s:
        t = s.get(ServiceTicket, tid)
        cols = {c.key: getattr(t, c.key) for c in ServiceTicket.__table__.columns}
        n = s.scalar(select(func.count()).select_from(WorkflowEvent).where(
            WorkflowEvent.entity == "service", WorkflowEvent.entity_id == tid))
        return cols, n


def history(dbs, tid):
    with dbs() as s:
        return [(e.action, e.from_status, e.to_status, e.note, e.created_by_fk)
                for e in wf.history(s, tid)]


# ---- the full loop ------------------------------------------------------------------------

def test_full_loop_api_with_a_second_round(api, customer, user_id, dbs, uniq):
    cid, _, _ = customer()
    summary = uniq("打印机报价")
    r = api("manager1").post("/api/v1/service/", json={
        "service_type": "咨询", "summary": summary, "customer_id": cid,
        "request": "客户询问激光打印机的批量价格"})
    assert r.status_code == 201, r.json
    tid, body = r.json["id"], r.json["result"]
    assert set(body) == FIELDS
    assert body["status"] == "created" and body["service_type"] == "咨询"
    assert body["number"].startswith("FW") and body["creator_id"] == user_id("manager1")
    assert body["created_on"] and body["assignee_id"] is None

    r = api("supervisor").post(f"/api/v1/service/{tid}/assign",
                               json={"assignee_id": user_id("manager2")})
    assert r.status_code == 200, r.json
    assert r.json["result"]["status"] == "assigned"
    assert r.json["result"]["assignee_id"] == user_id("manager2")
    assert r.json["result"]["assigned_on"]

    r = api("manager2").post(f"/api/v1/service/{tid}/handle", json={"handling": "第一次：邮件报价"})
    assert r.status_code == 200, r.json
    res = r.json["result"]
    assert res["status"] == "handled" and res["handler_id"] == user_id("manager2")
    assert res["handled_on"] and res["handling"] == "第一次：邮件报价"

    # the creator gives feedback: satisfaction 2 → back to the assignee
    r = api("manager1").post(f"/api/v1/service/{tid}/feedback",
                             json={"result": "价格偏高", "satisfaction": 2})
    assert r.status_code == 200, r.json
    assert r.json["result"]["status"] == "assigned"
    assert r.json["result"]["assignee_id"] == user_id("manager2")

    r = api("manager2").post(f"/api/v1/service/{tid}/handle", json={"handling": "第二次：申请折扣"})
    assert r.status_code == 200 and r.json["result"]["status"] == "handled"
    r = api("supervisor").post(f"/api/v1/service/{tid}/feedback",
                               json={"result": "客户接受折扣", "satisfaction": 4})
    assert r.status_code == 200 and r.json["result"]["status"] == "archived"

    one = api("exec").get(f"/api/v1/service/{tid}").json["result"]
    assert set(one) == FIELDS
    assert (one["handling"], one["result"], one["satisfaction"]) == ("第二次：申请折扣", "客户接受折扣", 4)
    q = f"(filters:!((col:summary,opr:eq,value:'{summary}')))"
    lst = api("manager2").get(f"/api/v1/service/?q={q}")
    assert lst.status_code == 200 and lst.json["count"] == 1
    assert lst.json["result"][0] == one

    # every round is in the history
    h = history(dbs, tid)
    assert [(a, fr, to) for a, fr, to, _, _ in h] == [
        ("create", None, "created"), ("assign", "created", "assigned"),
        ("handle", "assigned", "handled"), ("feedback", "handled", "assigned"),
        ("handle", "assigned", "handled"), ("feedback", "handled", "archived")]
    notes = [n for _, _, _, n, _ in h]
    assert notes[2] == "第一次：邮件报价" and notes[4] == "第二次：申请折扣"
    assert "价格偏高" in notes[3] and "2" in notes[3]
    assert "客户接受折扣" in notes[5] and "4" in notes[5]
    assert h[3][4] == user_id("manager1") and h[5][4] == user_id("supervisor")


def test_full_loop_html_with_csrf(web, customer, user_id, dbs, uniq, app):
    cid, cname, cnumber = customer()
    m1 = web("manager1")
    # the customer is found by a search, not picked from a list of every customer
    found = m1.get(f"/service/customers?q={cname[-8:]}")
    assert found.status_code == 200
    assert [r["id"] for r in found.json["results"]] == [cid]
    assert m1.get(f"/service/customers?q={cnumber}").json["results"][0]["id"] == cid
    page = m1.get("/service/create")
    assert page.status_code == 200 and "服务创建" in page.text and "select2" in page.text
    assert f'value="{cid}"' not in page.text     # no dropdown of customers

    summary = uniq("网络故障")
    r = m1.post_form("/service/create", {"service_type": "投诉", "customer_id": str(cid),
                                         "summary": summary, "request": "网络时断时续"})
    assert r.status_code == 302 and r.location.endswith("/service/create")
    again = m1.get("/service/create")
    assert "保存成功" in again.text and summary not in again.text   # an empty form
    with dbs() as s:
        t = s.scalar(select(ServiceTicket).where(ServiceTicket.summary == summary))
        tid = t.id
        assert (t.status, t.created_by_fk, t.customer_id, t.service_type.item) == (
            "created", user_id("manager1"), cid, "投诉")

    # without the CSRF token nothing happens
    sup = web("supervisor")
    r = sup.post(f"/service/assign/{tid}", data={"assignee_id": user_id("manager2")})
    assert r.status_code == 400
    assert snapshot(dbs, tid)[0]["status"] == "created"

    # the lists are oldest first and paged: earlier tests may have left more than a page,
    # so each list is searched for this ticket, as a user would (and on its 全部 tab)
    mine = f"tab=all&search={quote(summary)}"
    lst = sup.get(f"/service/assign/?search={quote(summary)}")
    row = f'href="/service/archive/{tid}"'       # the row (the search box echoes the summary)
    assert lst.status_code == 200 and row in lst.text and "新创建" in lst.text
    r = sup.post_form(f"/service/assign/{tid}", {"assignee_id": str(user_id("manager2"))},
                      form_url="/service/assign/")
    assert r.status_code == 302

    m2 = web("manager2")
    assert row in m2.get(f"/service/handle/?{mine}").text
    assert row not in web("manager1").get(f"/service/handle/?{mine}").text
    form = m2.get(f"/service/handle/{tid}")
    assert form.status_code == 200 and "已分配" in form.text
    r = m2.post_form(f"/service/handle/{tid}", {"handling": "远程排查，更换路由器"})
    assert r.status_code == 302
    assert "处理已保存" in m2.get(f"/service/handle/?{mine}").text

    assert row in m1.get(f"/service/feedback/?{mine}").text
    r = m1.post_form(f"/service/feedback/{tid}", {"result": "仍然掉线", "satisfaction": "1"})
    assert r.status_code == 302
    assert "退回" in m1.get(f"/service/feedback/?{mine}").text
    assert snapshot(dbs, tid)[0]["status"] == "assigned"

    r = m2.post_form(f"/service/handle/{tid}", {"handling": "上门更换交换机"})
    assert r.status_code == 302
    r = m1.post_form(f"/service/feedback/{tid}", {"result": "已恢复", "satisfaction": "5"})
    assert r.status_code == 302
    assert snapshot(dbs, tid)[0]["status"] == "archived"

    # archive search and the detail with the whole history, in Chinese
    page = web("exec").get(f"/service/archive/?summary={summary}")
    assert page.status_code == 200 and summary in page.text and "已归档" in page.text
    detail = web("exec").get(f"/service/archive/{tid}")
    assert detail.status_code == 200
    for text in ("远程排查，更换路由器", "上门更换交换机", "仍然掉线", "已恢复", "满意度：1",
                 "满意度：5", "新创建", "已分配", "已处理", "已归档", cname, "处理历史"):
        assert text in detail.text, text
    for english in ("created", "assigned", "handled", "archived"):
        assert f">{english}<" not in detail.text

    # the customer page section lists the ticket
    from app.models import Customer
    from app.views.service import service_section
    with app.test_request_context():
        html = service_section(db.session.get(Customer, cid), Actor(id=user_id("manager1"),
                                                                    roles=frozenset({MANAGER})))
        assert summary in html and "已归档" in html
        empty = f.customer(db.session, user_id("manager1"))
        assert service_section(empty, Actor(id=1, roles=frozenset({MANAGER}))) is None
        db.session.rollback()
        db.session.remove()


def test_create_form_keeps_input_on_error(web, customer):
    cid, cname, _ = customer()
    r = web("manager1").post_form("/service/create", {
        "service_type": "咨询", "customer_id": str(cid), "summary": "", "request": "请求内容保留"},
        form_url="/service/create")
    assert r.status_code == 400
    assert "概要不能为空" in r.text and "请求内容保留" in r.text and cname in r.text


# ---- forbidden paths: 403/409 and nothing changed ---------------------------------------------

def test_manager_cannot_assign(api, web, ticket, dbs, user_id):
    tid = ticket("created")
    before = snapshot(dbs, tid)
    r = api("manager1").post(f"/api/v1/service/{tid}/assign",
                             json={"assignee_id": user_id("manager1")})
    # refused by the permission of 服务分配 (can_assign · Service), as the page is
    assert r.status_code == 403 and "can_assign · Service" in r.json["message"], r.text
    # the HTML screen is not theirs at all
    m = web("manager1")
    assert m.get("/service/assign/").status_code == 403
    r = m.post_form(f"/service/assign/{tid}", {"assignee_id": str(user_id("manager1"))},
                    form_url="/service/create")
    assert r.status_code == 403
    assert snapshot(dbs, tid) == before


def test_only_the_assignee_handles(api, web, ticket, dbs):
    tid = ticket("assigned", assignee="manager2")
    before = snapshot(dbs, tid)
    for who in ("manager1", "supervisor", "admin"):
        r = api(who).post(f"/api/v1/service/{tid}/handle", json={"handling": "我来处理"})
        assert r.status_code == 403 and "被分配人" in r.json["message"], who
    m1 = web("manager1")
    assert m1.get(f"/service/handle/{tid}").status_code == 403
    r = m1.post_form(f"/service/handle/{tid}", {"handling": "我来处理"}, form_url="/service/create")
    assert r.status_code == 403 and "被分配人" in r.text
    assert snapshot(dbs, tid) == before


def test_handle_needs_assigned_state(api, ticket, dbs):
    tid = ticket("handled", assignee="manager2")
    before = snapshot(dbs, tid)
    r = api("manager2").post(f"/api/v1/service/{tid}/handle", json={"handling": "再处理一次"})
    assert r.status_code == 409 and "已处理" in r.json["message"]
    assert snapshot(dbs, tid) == before


def test_feedback_before_handling_is_refused(api, web, ticket, dbs):
    for status in ("created", "assigned"):
        tid = ticket(status)
        before = snapshot(dbs, tid)
        r = api("supervisor").post(f"/api/v1/service/{tid}/feedback",
                                   json={"result": "好", "satisfaction": 5})
        assert r.status_code == 409 and "已处理" in r.json["message"]
        s = web("supervisor")
        assert s.get(f"/service/feedback/{tid}").status_code == 409
        r = s.post_form(f"/service/feedback/{tid}", {"result": "好", "satisfaction": "5"},
                        form_url="/service/create")
        assert r.status_code == 409
        assert snapshot(dbs, tid) == before


def test_archive_twice_is_refused(api, ticket, dbs):
    tid = ticket("handled")
    r = api("manager1").post(f"/api/v1/service/{tid}/feedback",
                             json={"result": "满意", "satisfaction": 3})
    assert r.status_code == 200 and r.json["result"]["status"] == "archived"
    before = snapshot(dbs, tid)
    r = api("manager1").post(f"/api/v1/service/{tid}/feedback",
                             json={"result": "再来一次", "satisfaction": 1})
    assert r.status_code == 409 and "已归档" in r.json["message"]
    assert snapshot(dbs, tid) == before


def test_feedback_only_by_creator_assignee_supervisor_admin(api, ticket, dbs, user_id):
    # created by manager1, assigned to supervisor: manager2 is neither → 403
    tid = ticket("handled", assignee="supervisor", creator="manager1")
    before = snapshot(dbs, tid)
    r = api("manager2").post(f"/api/v1/service/{tid}/feedback",
                             json={"result": "x", "satisfaction": 5})
    assert r.status_code == 403 and "反馈" in r.json["message"]
    r = api("exec").post(f"/api/v1/service/{tid}/feedback", json={"result": "x", "satisfaction": 5})
    assert r.status_code == 403
    assert snapshot(dbs, tid) == before
    # ... and the handled list of manager2 does not offer it
    # the assignee may (DESIGN.md §3)
    r = api("supervisor").post(f"/api/v1/service/{tid}/feedback",
                               json={"result": "ok", "satisfaction": 3})
    assert r.status_code == 200


def test_feedback_list_shows_only_own_tickets_to_managers(web, ticket, dbs):
    tid = ticket("handled", assignee="supervisor", creator="supervisor")
    with dbs() as s:
        summary = s.get(ServiceTicket, tid).summary
    # searched for (the list is oldest first and paged; earlier tests may fill page 1)
    mine = f"/service/feedback/?tab=all&search={quote(summary)}"
    row = f'href="/service/archive/{tid}"'       # the row (the search box echoes the summary)
    assert row not in web("manager2").get(mine).text
    assert row in web("supervisor").get(mine).text
    assert web("manager2").get(f"/service/feedback/{tid}").status_code == 403


def test_executive_reads_but_does_not_write(api, web, customer, ticket, dbs):
    cid, _, _ = customer()
    r = api("exec").post("/api/v1/service/", json={"service_type": "咨询", "summary": "x",
                                                   "customer_id": cid, "request": "y"})
    assert r.status_code == 403
    tid = ticket("created")
    assert api("exec").get(f"/api/v1/service/{tid}").status_code == 200
    e = web("exec")
    assert e.get("/service/create").status_code == 403
    assert e.get("/service/customers?q=a").status_code == 403
    assert e.get(f"/service/archive/{tid}").status_code == 200


def test_tickets_are_not_edited_or_deleted_directly(api, ticket, dbs):
    tid = ticket("created")
    before = snapshot(dbs, tid)
    c = api("admin")
    assert c.put(f"/api/v1/service/{tid}", json={"status": "archived"}).status_code == 405
    assert c.delete(f"/api/v1/service/{tid}").status_code == 405
    assert snapshot(dbs, tid) == before


# ---- bad input → 400 naming the field, nothing written --------------------------------------

@pytest.mark.parametrize("value", [0, 6, -1, "7", "abc", 2.5, True, None, ""])
def test_satisfaction_outside_1_to_5(api, ticket, dbs, value):
    tid = ticket("handled")
    before = snapshot(dbs, tid)
    r = api("manager1").post(f"/api/v1/service/{tid}/feedback",
                             json={"result": "一般", "satisfaction": value})
    assert r.status_code == 400 and r.json["field"] == "satisfaction"
    assert "满意度" in r.json["message"]
    assert snapshot(dbs, tid) == before


def test_satisfaction_outside_1_to_5_html(web, ticket, dbs):
    tid = ticket("handled")
    before = snapshot(dbs, tid)
    r = web("manager1").post_form(f"/service/feedback/{tid}", {"result": "一般", "satisfaction": "9"})
    assert r.status_code == 400 and "1 到 5" in r.text
    assert snapshot(dbs, tid) == before


def _count(dbs, summary):
    with dbs() as s:
        return s.scalar(select(func.count()).select_from(ServiceTicket)
                        .where(ServiceTicket.summary == summary))


@pytest.mark.parametrize("change, field", [
    ({"service_type": "维修"}, "service_type"),        # not an item of 服务类型
    ({"service_type": "北京"}, "service_type"),        # an item of another category
    ({"service_type": ""}, "service_type"),
    ({"summary": "  "}, "summary"),
    ({"request": None}, "request"),
    ({"customer_id": 987654321}, "customer_id"),
    ({"customer_id": "abc"}, "customer_id"),
    ({"status": "archived"}, "status"),                # system fields are not taken from input
    ({"number": "FW1"}, "number"),
])
def test_create_refuses_bad_input(api, customer, dbs, uniq, change, field):
    cid, _, _ = customer()
    summary = uniq("坏输入")
    data = {"service_type": "建议", "summary": summary, "customer_id": cid, "request": "内容"}
    data.update(change)
    r = api("manager1").post("/api/v1/service/", json=data)
    assert r.status_code == 400 and r.json["field"] == field, r.json
    assert _count(dbs, summary) == 0


def test_unknown_service_type_html(web, customer, dbs, uniq):
    cid, _, _ = customer()
    summary = uniq("未知类型")
    r = web("manager1").post_form("/service/create", {
        "service_type": "维修", "customer_id": str(cid), "summary": summary, "request": "x"})
    assert r.status_code == 400 and "不是有效的服务类型" in r.text
    assert _count(dbs, summary) == 0


def test_assign_to_inactive_or_unknown_user(api, ticket, dbs, app):
    from app.cli import system_user_id
    with app.app_context():
        inactive = system_user_id()
        db.session.remove()
    tid = ticket("created")
    before = snapshot(dbs, tid)
    for value in (inactive, 987654, None, "x"):
        r = api("supervisor").post(f"/api/v1/service/{tid}/assign", json={"assignee_id": value})
        assert r.status_code == 400 and r.json["field"] == "assignee_id", value
    assert snapshot(dbs, tid) == before


def test_handle_needs_text(api, ticket, dbs):
    tid = ticket("assigned")
    before = snapshot(dbs, tid)
    r = api("manager2").post(f"/api/v1/service/{tid}/handle", json={"handling": " "})
    assert r.status_code == 400 and r.json["field"] == "handling"
    assert snapshot(dbs, tid) == before


def test_unknown_ticket_is_404(api):
    assert api("supervisor").post("/api/v1/service/987654321/assign",
                                  json={"assignee_id": 1}).status_code == 404


# ---- concurrency -----------------------------------------------------------------------------

def test_racing_assigns_one_wins(app, ticket, actor, user_id, dbs, monkeypatch):
    """Two supervisors assign the same ticket at the same instant: both pass the state
    check, then both compare-and-set; exactly one succeeds, the other gets a Conflict."""
    tid = ticket("created")
    barrier = threading.Barrier(2, timeout=30)
    real_cas = events_module.compare_and_set

    def cas_after_both_checked(*args, **kwargs):
        barrier.wait()
        return real_cas(*args, **kwargs)

    monkeypatch.setattr(events_module, "compare_and_set", cas_after_both_checked)
    outcomes = []
    sup, adm = actor("supervisor"), actor("admin")
    targets = [(sup, user_id("manager1")), (adm, user_id("manager2"))]

    def run(who, assignee):
        with app.app_context():
            try:
                wf.assign(db.session, who, tid, assignee)
                db.session.commit()
                outcomes.append(("ok", assignee))
            except Conflict:
                db.session.rollback()
                outcomes.append(("conflict", assignee))
            except Exception as e:  # pragma: no cover - reported below
                db.session.rollback()
                outcomes.append(("error", repr(e)))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(o[0] for o in outcomes) == ["conflict", "ok"], outcomes
    winner = next(a for o, a in outcomes if o == "ok")
    cols, n = snapshot(dbs, tid)
    assert cols["status"] == "assigned" and cols["assignee_id"] == winner
    assert [a for a, *_ in history(dbs, tid)].count("assign") == 1


def test_racing_assigns_over_http(app, ticket, user_id, dbs, api):
    tid = ticket("created")
    clients = [api("supervisor"), api("admin")]
    barrier = threading.Barrier(2, timeout=30)
    codes = []

    def run(c, assignee):
        barrier.wait()
        codes.append(c.post(f"/api/v1/service/{tid}/assign",
                            json={"assignee_id": assignee}).status_code)

    threads = [threading.Thread(target=run, args=(c, user_id(u)))
               for c, u in zip(clients, ("manager1", "manager2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(codes) == [200, 409]
    assert [a for a, *_ in history(dbs, tid)].count("assign") == 1


def test_numbers_are_unique(api, customer):
    cid, _, _ = customer()
    numbers = set()
    for i in range(3):
        r = api("manager2").post("/api/v1/service/", json={
            "service_type": "建议", "summary": f"建议{i}", "customer_id": cid, "request": "r"})
        numbers.add(r.json["result"]["number"])
    assert len(numbers) == 3


# ---- archive search ------------------------------------------------------------------------------

@pytest.fixture
def archive_data(ticket, customer, uniq):
    """Archived tickets with distinct customers, summaries, types and created dates."""
    c1 = customer(uniq("归档甲公司"))
    c2 = customer(uniq("归档乙公司"))
    token = uniq("归档令")
    ids = {
        "a": ticket("archived", customer_id=c1[0], summary=f"{token} 打印机卡纸",
                    service_type="投诉", created_on=datetime(2003, 5, 10, 9, 0)),
        "b": ticket("archived", customer_id=c1[0], summary=f"{token} 咨询价格",
                    service_type="咨询", created_on=datetime(2003, 5, 12, 23, 59)),
        "c": ticket("archived", customer_id=c2[0], summary=f"{token} 建议送货",
                    service_type="建议", created_on=datetime(2003, 5, 20, 8, 0)),
        # not archived: never in the archive
        "d": ticket("handled", customer_id=c1[0], summary=f"{token} 未归档",
                    service_type="投诉", created_on=datetime(2003, 5, 11, 8, 0)),
    }
    return {"ids": ids, "c1": c1, "c2": c2, "token": token}


def _search(dbs, **kw):
    with dbs() as s:
        count, rows = wf.search_archive(s, page_size=100, **kw)
        return count, {r.id for r in rows}, rows


def test_archive_search_by_each_criterion(dbs, archive_data):
    ids, token = archive_data["ids"], archive_data["token"]
    # 客户: part of the name, the exact number, or the id (from the customer page)
    assert _search(dbs, customer=archive_data["c1"][1][-10:])[1] == {ids["a"], ids["b"]}
    assert _search(dbs, customer=archive_data["c2"][2])[1] == {ids["c"]}
    assert _search(dbs, customer_id=str(archive_data["c2"][0]))[1] == {ids["c"]}
    # 概要
    assert _search(dbs, summary=token)[1] == {ids["a"], ids["b"], ids["c"]}
    assert _search(dbs, summary="打印机卡纸")[1] >= {ids["a"]}
    assert ids["b"] not in _search(dbs, summary="打印机卡纸")[1]
    # 服务类型 alone: every row has that type; ours are in, the others out
    _, found, rows = _search(dbs, service_type="投诉")
    assert ids["a"] in found and not found & {ids["b"], ids["c"], ids["d"]}
    assert {r.service_type.item for r in rows} == {"投诉"}
    # created-date range alone, both ends included
    _, found, rows = _search(dbs, date_from="2003-05-10", date_to="2003-05-12")
    assert {ids["a"], ids["b"]} <= found and ids["c"] not in found
    assert all(date(2003, 5, 10) <= r.created_on.date() <= date(2003, 5, 12) for r in rows)
    assert ids["c"] in _search(dbs, date_from="2003-05-13")[1]
    assert ids["a"] not in _search(dbs, date_from="2003-05-13")[1]
    assert ids["c"] not in _search(dbs, date_to="2003-05-12")[1]
    # combined
    assert _search(dbs, summary=token, service_type="咨询")[1] == {ids["b"]}
    # bad input
    with dbs() as s:
        with pytest.raises(ValidationError):
            wf.search_archive(s, date_from="2003-13-01")
        with pytest.raises(ValidationError):
            wf.search_archive(s, date_from="2003-05-12", date_to="2003-05-10")
        with pytest.raises(ValidationError):
            wf.search_archive(s, service_type="维修")


def test_archive_search_html(web, archive_data):
    ids, token = archive_data["ids"], archive_data["token"]
    c = web("manager2")
    page = c.get(f"/service/archive/?summary={token}&service_type=建议")
    assert page.status_code == 200 and "建议送货" in page.text and "打印机卡纸" not in page.text
    page = c.get(f"/service/archive/?customer={archive_data['c1'][1]}")
    assert "打印机卡纸" in page.text and "咨询价格" in page.text and "建议送货" not in page.text
    assert "未归档" not in page.text
    page = c.get(f"/service/archive/?summary={token}&date_from=2003-05-13&date_to=2003-05-31")
    assert "建议送货" in page.text and "咨询价格" not in page.text
    page = c.get("/service/archive/?date_from=2003-99-01")
    assert page.status_code == 400 and "YYYY-MM-DD" in page.text
    detail = c.get(f"/service/archive/{ids['a']}")
    assert detail.status_code == 200 and "打印机卡纸" in detail.text
    assert c.get("/service/archive/987654321").status_code == 404


# ---- workflow-level rules ---------------------------------------------------------------------

def test_workflow_rules_directly(dbs, actor, customer, user_id):
    cid, _, _ = customer()
    with dbs() as s:
        with pytest.raises(Forbidden):
            wf.create(s, actor("exec"), {"service_type": "咨询", "summary": "x",
                                         "customer_id": cid, "request": "y"})
        t = wf.create(s, actor("supervisor"), {"service_type": "建议", "summary": "x",
                                               "customer_id": str(cid), "request": "y"})
        assert t.status == "created" and t.created_by_fk == user_id("supervisor")
        with pytest.raises(Forbidden):
            wf.assign(s, actor("manager2"), t.id, user_id("manager2"))
        wf.assign(s, actor("admin"), t.id, user_id("supervisor"))
        with pytest.raises(Conflict):
            wf.assign(s, actor("admin"), t.id, user_id("manager2"))
        wf.handle(s, actor("supervisor"), t.id, "处理")
        assert (t.status, t.handler_id) == ("handled", user_id("supervisor"))
        assert t.handled_on is not None
        s.rollback()


def test_menu_and_labels_are_chinese(web):
    page = web("supervisor").get("/service/assign/").text
    for text in ("服务管理", "服务创建", "服务分配", "服务处理", "服务反馈", "服务归档"):
        assert text in page
    m = web("manager1").get("/service/create").text
    assert "服务分配" not in m and "服务创建" in m
    e = web("exec").get("/service/archive/").text
    assert "服务归档" in e and "服务创建" not in e


def test_customer_search_is_bounded(web, dbs, user_id, uniq):
    token = uniq("检索")
    with dbs() as s:
        for i in range(25):
            f.customer(s, user_id("manager1"), name=f"{token}{i:02d}有限公司")
        s.commit()
    r = web("manager2").get(f"/service/customers?q={token}")
    assert r.status_code == 200 and len(r.json["results"]) == 20
    assert r.json["results"][0]["text"].startswith(f"{token}00有限公司")
    assert web("manager2").get("/service/customers?q=").json["results"] == []
    # a (lower-case) customer number prefix finds the customer too
    with dbs() as s:
        c = f.customer(s, user_id("manager1"))
        s.commit()
        cid, number = c.id, c.number
    found = web("manager2").get(f"/service/customers?q={number.lower()}").json["results"]
    assert found[0]["id"] == cid


# ---- no stuck tickets: who may be an assignee, 重新分配 (issue 18 item 2) ------------------

@pytest.fixture
def handler_user(app, uniq):
    """``handler_user(role="客户经理")`` → id of a new active user with that role."""
    def _make(role=MANAGER):
        with app.app_context():
            sm = app.appbuilder.sm
            name = uniq("handler").lower()
            from .conftest import PASSWORD
            u = sm.add_user(name, "处", "理", f"{name}@example.com", [sm.find_role(role)],
                            password=PASSWORD)
            uid = u.id
            db.session.remove()
            return uid
    return _make


def _deactivate(app, uid):
    with app.app_context():
        u = db.session.get(wf.User, uid)
        u.active = False
        db.session.commit()
        db.session.remove()


def test_only_handlers_can_be_assignees(api, web, ticket, dbs, user_id, app):
    tid = ticket("created")
    before = snapshot(dbs, tid)
    for who in ("exec", "admin"):
        r = api("supervisor").post(f"/api/v1/service/{tid}/assign",
                                   json={"assignee_id": user_id(who)})
        assert r.status_code == 400 and r.json["field"] == "assignee_id", who
        assert "客户经理或销售主管" in r.json["message"]
        r = web("supervisor").post_form(f"/service/assign/{tid}",
                                        {"assignee_id": str(user_id(who))},
                                        form_url="/service/assign/")
        assert r.status_code == 400 and "客户经理或销售主管" in r.text
    assert snapshot(dbs, tid) == before
    with dbs() as s:
        ids = {u.id for u in wf.assignable_users(s)}
    assert user_id("manager1") in ids and user_id("supervisor") in ids
    assert user_id("exec") not in ids and user_id("admin") not in ids
    page = web("supervisor").get("/service/assign/").text
    assert f'<option value="{user_id("exec")}">' not in page


def test_reassign_by_supervisor_and_new_assignee_handles(api, web, ticket, dbs, user_id,
                                                         handler_user):
    new = handler_user()
    tid = ticket("assigned", assignee="manager2")
    r = api("supervisor").post(f"/api/v1/service/{tid}/reassign",
                               json={"assignee_id": new, "from_assignee_id": user_id("manager2")})
    assert r.status_code == 200, r.json
    assert r.json["result"]["assignee_id"] == new and r.json["result"]["status"] == "assigned"
    ev = history(dbs, tid)[-1]
    assert ev[:3] == ("reassign", "assigned", "assigned") and ev[4] == user_id("supervisor")
    # the old assignee can no longer handle it, the new one sees and handles it
    assert api("manager2").post(f"/api/v1/service/{tid}/handle",
                                json={"handling": "x"}).status_code == 403
    with dbs() as s:
        count, rows = wf.to_handle(s, Actor(id=new, roles=frozenset({MANAGER})))
        assert tid in [t.id for t in rows]
    with dbs() as s:
        wf.handle(s, Actor(id=new, roles=frozenset({MANAGER})), tid, "已上门处理")
        s.commit()
    assert snapshot(dbs, tid)[0]["status"] == "handled"
    # a handled ticket is no longer re-assigned
    r = api("supervisor").post(f"/api/v1/service/{tid}/reassign",
                               json={"assignee_id": user_id("manager1")})
    assert r.status_code == 409


def test_reassign_refusals_change_nothing(api, web, ticket, dbs, user_id):
    tid = ticket("assigned", assignee="manager2")
    before = snapshot(dbs, tid)
    url = f"/api/v1/service/{tid}/reassign"
    # wrong role → 403
    for who in ("manager1", "manager2", "exec"):
        r = api(who).post(url, json={"assignee_id": user_id("manager1")})
        assert r.status_code == 403 and r.json["message"], who
        # refused by the 服务分配 permission itself (can_assign · Service), in Chinese
        assert "无权" in r.json["message"] or "销售主管" in r.json["message"], r.json
    r = web("manager1").post_form(f"/service/assign/{tid}/reassign",
                                  {"assignee_id": str(user_id("manager1"))},
                                  form_url="/service/create")
    assert r.status_code == 403
    # bad assignee → 400, same assignee → 400, stale page → 409
    for value in (user_id("exec"), user_id("admin"), 987654, None, "x"):
        r = api("supervisor").post(url, json={"assignee_id": value})
        assert r.status_code == 400 and r.json["field"] == "assignee_id", value
    r = api("supervisor").post(url, json={"assignee_id": user_id("manager2")})
    assert r.status_code == 400 and "另一位" in r.json["message"]
    r = api("supervisor").post(url, json={"assignee_id": user_id("manager1"),
                                          "from_assignee_id": user_id("manager1")})
    assert r.status_code == 409
    assert snapshot(dbs, tid) == before
    # not assigned yet → 409 (use 分配)
    created = ticket("created")
    r = api("supervisor").post(f"/api/v1/service/{created}/reassign",
                               json={"assignee_id": user_id("manager1")})
    assert r.status_code == 409


def test_racing_reassigns_one_wins(app, ticket, actor, user_id, dbs, monkeypatch):
    tid = ticket("assigned", assignee="manager2")
    barrier = threading.Barrier(2, timeout=30)
    real = wf._move_assignee

    def move_after_both_checked(*args, **kwargs):
        barrier.wait()
        return real(*args, **kwargs)

    monkeypatch.setattr(wf, "_move_assignee", move_after_both_checked)
    outcomes = []

    def run(who, assignee):
        with app.app_context():
            try:
                wf.reassign(db.session, who, tid, assignee)
                db.session.commit()
                outcomes.append(("ok", assignee))
            except Conflict:
                db.session.rollback()
                outcomes.append(("conflict", assignee))
            except Exception as e:  # pragma: no cover - reported below
                db.session.rollback()
                outcomes.append(("error", repr(e)))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=t) for t in (
        (actor("supervisor"), user_id("manager1")), (actor("admin"), user_id("supervisor")))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(o[0] for o in outcomes) == ["conflict", "ok"], outcomes
    winner = next(a for o, a in outcomes if o == "ok")
    assert snapshot(dbs, tid)[0]["assignee_id"] == winner
    assert [a for a, *_ in history(dbs, tid)].count("reassign") == 1


def test_racing_reassigns_over_http(app, ticket, user_id, dbs, api):
    tid = ticket("assigned", assignee="manager2")
    clients = [api("supervisor"), api("admin")]
    barrier = threading.Barrier(2, timeout=30)
    codes = []

    def run(c, assignee):
        barrier.wait()
        codes.append(c.post(f"/api/v1/service/{tid}/reassign",
                            json={"assignee_id": assignee,
                                  "from_assignee_id": user_id("manager2")}).status_code)

    threads = [threading.Thread(target=run, args=(c, user_id(u)))
               for c, u in zip(clients, ("manager1", "supervisor"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(codes) == [200, 409]
    assert [a for a, *_ in history(dbs, tid)].count("reassign") == 1


def test_deactivated_assignee_tickets_need_reassignment(app, web, ticket, dbs, user_id,
                                                        handler_user):
    gone = handler_user()
    with dbs() as s:
        t = s.get(ServiceTicket, ticket("created"))
        tid, number = t.id, t.number
    with dbs() as s:
        wf.assign(s, Actor(id=user_id("supervisor"), roles=frozenset({SUPERVISOR})), tid, gone)
        s.commit()
    ok = ticket("assigned", assignee="manager2")
    with dbs() as s:
        ok_number = s.get(ServiceTicket, ok).number
    sup = web("supervisor")
    link = f'href="/service/archive/{tid}"'
    assert link not in sup.get("/service/assign/?tab=stuck").text
    _deactivate(app, gone)
    with dbs() as s:
        assert wf.needs_reassignment(s.get(ServiceTicket, tid))
        assert not wf.needs_reassignment(s.get(ServiceTicket, ok))
        assert wf.count_stuck(s) >= 1
        assert gone not in {u.id for u in wf.assignable_users(s)}
    page = sup.get("/service/assign/").text
    assert "crm-stuck-alert" in page and "需重新分配" in page
    stuck_page = sup.get("/service/assign/?tab=stuck").text
    assert link in stuck_page and ok_number not in stuck_page
    # marked in the list of all assigned tickets, and on the ticket page
    assert 'class="danger crm-stuck"><td><a ' + link in sup.get(
        "/service/assign/?tab=assigned").text
    page = sup.get(f"/service/archive/{tid}").text
    assert "crm-stuck-alert" in page and "crm-reassign" in page
    # re-assign from the ticket page (HTML, CSRF)
    r = sup.post_form(f"/service/assign/{tid}/reassign",
                      {"assignee_id": str(user_id("manager1")), "from_assignee_id": str(gone),
                       "back": "show"}, form_url=f"/service/archive/{tid}")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/service/archive/{tid}")
    assert snapshot(dbs, tid)[0]["assignee_id"] == user_id("manager1")
    assert link not in sup.get("/service/assign/?tab=stuck").text
    assert f'href="/service/archive/{tid}"' in web("manager1").get(
        f"/service/handle/?tab=all&search={number}").text
    # a 客户经理 sees no re-assign control on the ticket page
    assert "crm-reassign" not in web("manager1").get(f"/service/archive/{tid}").text
