"""服务管理 as a service desk (issue 22): priority on every ticket.

Priority: chosen at creation (form + API), default 普通, changed by 销售主管/admin
until the ticket is handled (compare-and-set, a WorkflowEvent), shown as a badge,
filterable and sortable through ``q``; unknown → 400, 客户经理 → 403, nothing changed."""
from datetime import datetime

import pytest
from sqlalchemy import func, select

from app.models import DictItem, ServiceTicket
from app.workflows import service as wf
from app.workflows.actors import SUPERVISOR, Actor
from app.workflows.errors import Conflict

from .test_service import actor, customer, history, snapshot, ticket  # noqa: F401 (fixtures)


@pytest.fixture(autouse=True)
def _forget_my_tickets(dbs):
    """Tickets made here have creation times in 1999 or early 2026 and would sit at the
    top of other tests' oldest-first lists: remove them (with their history and
    notices) afterwards."""
    from app.models import Notification, WorkflowEvent

    with dbs() as s:
        start = s.scalar(select(func.max(ServiceTicket.id))) or 0
    yield
    with dbs() as s:
        ids = s.scalars(select(ServiceTicket.id).where(ServiceTicket.id > start)).all()
        if ids:
            s.query(Notification).filter(Notification.link.in_(
                [f"/service/{p}/{i}" for i in ids for p in ("archive", "handle")])).delete(
                synchronize_session=False)
            s.query(WorkflowEvent).filter(WorkflowEvent.entity == "service",
                                          WorkflowEvent.entity_id.in_(ids)).delete(
                synchronize_session=False)
            s.query(ServiceTicket).filter(ServiceTicket.id.in_(ids)).delete(
                synchronize_session=False)
            s.commit()


def _create(api, cid, who="manager1", **kw):
    body = dict(service_type="咨询", summary="优先级测试", customer_id=cid, request="请回电", **kw)
    return api(who).post("/api/v1/service/", json=body)


# ---- priority ---------------------------------------------------------------------------

def test_priority_dictionary_is_seeded(dbs):
    with dbs() as s:
        items = s.scalars(select(DictItem).where(DictItem.type == "服务优先级")
                          .order_by(DictItem.id)).all()
        assert [(i.item, i.value) for i in items][:3] == [("普通", "1"), ("紧急", "2"), ("特急", "3")]


def test_priority_at_creation_api_default_and_chosen(api, customer, dbs):
    cid = customer()[0]
    r = _create(api, cid)
    assert r.status_code == 201, r.json
    assert r.json["result"]["priority"] == "普通"
    r = _create(api, cid, priority="特急")
    assert r.status_code == 201 and r.json["result"]["priority"] == "特急"
    with dbs() as s:
        t = s.get(ServiceTicket, r.json["id"])
        assert (t.priority, t.priority_rank) == ("特急", 3)


@pytest.mark.parametrize("value", ["很急", "URGENT", 3, ["紧急"], True])
def test_unknown_priority_at_creation_is_400(api, customer, dbs, value):
    cid = customer()[0]
    with dbs() as s:
        before = s.query(ServiceTicket).filter_by(customer_id=cid).count()
    r = _create(api, cid, priority=value)
    assert r.status_code == 400 and r.json["field"] == "priority", r.json
    assert "优先级" in r.json["message"]
    with dbs() as s:
        assert s.query(ServiceTicket).filter_by(customer_id=cid).count() == before


def test_priority_at_creation_html(web, customer, dbs, uniq):
    cid = customer()[0]
    page = web("manager1").get("/service/create").text
    assert 'name="priority"' in page and "特急" in page
    summary = uniq("网页优先级")
    r = web("manager1").post_form("/service/create", {
        "service_type": "投诉", "summary": summary, "customer_id": str(cid),
        "request": "打印机坏了", "priority": "紧急"})
    assert r.status_code == 302, r.text
    with dbs() as s:
        t = s.scalar(select(ServiceTicket).where(ServiceTicket.summary == summary))
        assert t.priority == "紧急"
    r = web("manager1").post_form("/service/create", {
        "service_type": "投诉", "summary": uniq("坏优先级"), "customer_id": str(cid),
        "request": "x", "priority": "随便"})
    assert r.status_code == 400 and "不是有效的优先级" in r.text and "随便" in r.text


def test_supervisor_changes_priority_api_recorded(api, ticket, dbs, user_id):
    for status in ("created", "assigned"):
        tid = ticket(status)
        r = api("supervisor").post(f"/api/v1/service/{tid}/priority",
                                   json={"priority": "紧急", "from_priority": "普通"})
        assert r.status_code == 200, r.json
        assert r.json["result"]["priority"] == "紧急" and r.json["result"]["status"] == status
        ev = history(dbs, tid)[-1]
        assert ev[:3] == ("priority", status, status) and "普通" in ev[3] and "紧急" in ev[3]
        assert ev[4] == user_id("supervisor")
        r = api("admin").post(f"/api/v1/service/{tid}/priority", json={"priority": "特急"})
        assert r.status_code == 200 and r.json["result"]["priority"] == "特急"
        with dbs() as s:
            assert s.get(ServiceTicket, tid).priority_rank == 3


def test_priority_change_refusals_change_nothing(api, web, ticket, dbs):
    tid = ticket("assigned")
    before = snapshot(dbs, tid)
    url = f"/api/v1/service/{tid}/priority"
    for who in ("manager1", "manager2", "exec"):      # the assignee too: 403
        r = api(who).post(url, json={"priority": "紧急"})
        assert r.status_code == 403 and r.json["message"], who
    r = web("manager2").post_form(f"/service/assign/{tid}/priority", {"priority": "紧急"},
                                  form_url="/service/create")
    assert r.status_code == 403
    for value in ("很急", "", None, 2, {"a": 1}):
        r = api("supervisor").post(url, json={"priority": value})
        assert r.status_code == 400 and r.json["field"] == "priority", value
        assert "优先级" in r.json["message"]
    r = api("supervisor").post(url, json={"priority": "普通"})          # already 普通
    assert r.status_code == 400 and "已经是" in r.json["message"]
    r = api("supervisor").post(url, json={"priority": "紧急", "from_priority": "特急"})
    assert r.status_code == 409                                        # stale page
    assert api("supervisor").post("/api/v1/service/987654/priority",
                                  json={"priority": "紧急"}).status_code == 404
    assert snapshot(dbs, tid) == before
    for status in ("handled", "archived"):
        done = ticket(status)
        before = snapshot(dbs, done)
        r = api("supervisor").post(f"/api/v1/service/{done}/priority", json={"priority": "特急"})
        assert r.status_code == 409 and "不能再调整优先级" in r.json["message"]
        assert snapshot(dbs, done) == before


def test_priority_control_on_the_ticket_page(web, ticket, dbs):
    tid = ticket("created")
    page = web("supervisor").get(f"/service/archive/{tid}").text
    assert f"/service/assign/{tid}/priority" in page and "crm-priority" in page
    assert f"/service/assign/{tid}/priority" not in web("manager1").get(
        f"/service/archive/{tid}").text
    r = web("supervisor").post_form(f"/service/assign/{tid}/priority",
                                    {"priority": "特急", "from_priority": "普通"},
                                    form_url=f"/service/archive/{tid}")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/service/archive/{tid}")
    assert snapshot(dbs, tid)[0]["priority"] == "特急"
    page = web("supervisor").get(f"/service/archive/{tid}").text
    assert "label-danger crm-priority" in page and "调整优先级" in page
    # handled: no control any more
    done = ticket("handled")
    assert f"/service/assign/{done}/priority" not in web("supervisor").get(
        f"/service/archive/{done}").text


def test_priority_badge_in_lists(web, ticket):
    # the oldest first: on page 1 of the oldest-first lists whatever else the database holds
    old = datetime(1999, 1, 1, 9, 0)
    ticket("created", priority="特急", priority_rank=3, created_on=old)
    page = web("supervisor").get("/service/assign/").text
    assert "label-danger crm-priority" in page
    ticket("assigned", assignee="manager2", priority="紧急", priority_rank=2, created_on=old,
           assigned_on=old)
    assert "label-warning crm-priority" in web("manager2").get("/service/handle/").text


def test_priority_filter_and_sort_in_api(api, ticket):
    ids = {p: ticket("created", priority=p, priority_rank=r)
           for p, r in (("普通", 1), ("特急", 3), ("紧急", 2))}
    c = api("supervisor")
    r = c.get("/api/v1/service/?q=(filters:!((col:priority,opr:eq,value:特急)),page_size:100)")
    assert r.status_code == 200, r.json
    rows = r.json["result"]
    assert ids["特急"] in [t["id"] for t in rows] and {t["priority"] for t in rows} == {"特急"}
    r = c.get("/api/v1/service/?q=(order_column:priority_rank,order_direction:desc,"
              "page_size:100)")
    assert r.status_code == 200, r.json
    ranks = [{"普通": 1, "紧急": 2, "特急": 3}[t["priority"]] for t in r.json["result"]]
    assert ranks == sorted(ranks, reverse=True)


def test_racing_priority_changes_one_wins(dbs, ticket, user_id):
    tid = ticket("created")
    sup = Actor(id=user_id("supervisor"), roles=frozenset({SUPERVISOR}), name="supervisor")
    with dbs() as s1, dbs() as s2:
        wf.get(s1, tid), wf.get(s2, tid)           # both read 普通
        wf.change_priority(s1, sup, tid, "紧急")
        s1.commit()
        with pytest.raises(Conflict):
            wf.change_priority(s2, sup, tid, "特急", from_priority="普通")
        s2.rollback()
    assert snapshot(dbs, tid)[0]["priority"] == "紧急"
    assert [e[0] for e in history(dbs, tid)].count("priority") == 1


def test_migration_gives_existing_tickets_normal_priority(tmp_path):
    """0006 on a database with tickets: they all get 普通 (rank 1); downgrade works."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text

    from app.extensions import db

    from .conftest import build_app, dispose_app

    app = build_app(tmp_path, "sqlite")
    try:
        with app.app_context():
            downgrade(revision="0005")
            with db.engine.begin() as conn:
                uid = conn.scalar(text("SELECT id FROM ab_user WHERE username = 'manager1'"))
                tid = conn.scalar(text("SELECT id FROM crm_dict_item WHERE type = '服务类型'"))
                conn.execute(text(
                    "INSERT INTO crm_customer (number, name, manager_id, status, created_on, "
                    "changed_on, created_by_fk, changed_by_fk) VALUES ('KH-MIG', '迁移客户', :u, "
                    "'normal', :t, :t, :u, :u)"), {"u": uid, "t": datetime.now()})
                cid = conn.scalar(text("SELECT id FROM crm_customer WHERE number = 'KH-MIG'"))
                conn.execute(text(
                    "INSERT INTO crm_service (number, service_type_id, summary, customer_id, "
                    "request, status, created_on, changed_on, created_by_fk, changed_by_fk) "
                    "VALUES ('FW-MIG', :st, '旧服务', :c, '旧请求', 'created', :t, :t, :u, :u)"),
                    {"st": tid, "c": cid, "u": uid, "t": datetime.now()})
            upgrade()
            with db.engine.connect() as conn:
                row = conn.execute(text("SELECT priority, priority_rank FROM crm_service "
                                        "WHERE number = 'FW-MIG'")).one()
            assert tuple(row) == ("普通", 1)
    finally:
        dispose_app(app)


# ---- deadlines (服务时限) -------------------------------------------------------------------

from datetime import timedelta  # noqa: E402

from app.workflows import sla  # noqa: E402
from app.workflows.actors import MANAGER  # noqa: E402

T0 = datetime(2026, 3, 1, 23, 0, 0)   # an hour before midnight


@pytest.fixture
def clock(monkeypatch):
    """``clock.now`` is what the service workflow (and the API/pages) take as now."""
    class Clock:
        now = T0

        def set(self, when):
            self.now = when
    c = Clock()
    monkeypatch.setattr(wf, "_now", lambda: c.now)
    return c


@pytest.fixture
def service_type(api, uniq):
    """A new 服务类型 (so the 服务时限 items made here touch no other test)."""
    def _make(limits=None):
        name = uniq("时限类型")
        assert api("admin").post("/api/v1/dict_item/", json={
            "type": "服务类型", "item": name, "value": "9"}).status_code == 201
        for prio, value in (limits or {}).items():
            r = api("admin").post("/api/v1/dict_item/", json={
                "type": "服务时限", "item": f"{name}/{prio}", "value": value})
            assert r.status_code == 201, r.json
        return name
    return _make


def _new(dbs, user_id, cid, service_type="咨询", priority=None):
    with dbs() as s:
        data = dict(service_type=service_type, summary="时限", customer_id=cid, request="x")
        if priority:
            data["priority"] = priority
        t = wf.create(s, Actor(id=user_id("manager1"), roles=frozenset({MANAGER})), data)
        s.commit()
        return t.id, t.response_due, t.resolution_due


def test_default_deadlines_per_priority_across_midnight(clock, dbs, user_id, customer):
    cid = customer()[0]
    for prio, hours in (("普通", 72), ("紧急", 24), ("特急", 8)):
        tid, response, resolution = _new(dbs, user_id, cid, priority=prio)
        assert response == T0 + timedelta(hours=hours), prio
        assert resolution == T0 + timedelta(hours=2 * hours), prio
    # 特急 created at 23:00: respond by 07:00 and resolve by 15:00 the next day
    assert response == datetime(2026, 3, 2, 7, 0) and resolution == datetime(2026, 3, 2, 15, 0)


def test_deadlines_from_the_dictionary(clock, dbs, user_id, customer, service_type):
    name = service_type({"紧急": "4", "特急": "0.5/6"})
    cid = customer()[0]
    _, response, resolution = _new(dbs, user_id, cid, name, "紧急")
    assert (response, resolution) == (T0 + timedelta(hours=4), T0 + timedelta(hours=8))
    _, response, resolution = _new(dbs, user_id, cid, name, "特急")
    assert (response, resolution) == (T0 + timedelta(minutes=30), T0 + timedelta(hours=6))
    # not configured for this type: the default
    _, response, resolution = _new(dbs, user_id, cid, name, "普通")
    assert (response, resolution) == (T0 + timedelta(hours=72), T0 + timedelta(hours=144))


@pytest.mark.parametrize("item,value,field", [
    ("咨询/紧急", "0", "value"), ("咨询/紧急", "-4", "value"), ("咨询/紧急", "四小时", "value"),
    ("咨询/紧急", "4/2", "value"), ("咨询/紧急", "4/0", "value"), ("咨询/紧急", "nan", "value"),
    ("咨询/紧急", "1/2/3", "value"), ("咨询/紧急", "99999", "value"), ("咨询", "4", "item"),
    ("/紧急", "4", "item")])
def test_dictionary_refuses_bad_limits(api, dbs, item, value, field):
    with dbs() as s:
        before = s.query(DictItem).filter_by(type="服务时限").count()
    r = api("admin").post("/api/v1/dict_item/", json={"type": "服务时限", "item": item,
                                                       "value": value})
    assert r.status_code == 400 and r.json.get("field") == field, r.json
    assert "服务时限" in r.json["message"]
    with dbs() as s:
        assert s.query(DictItem).filter_by(type="服务时限").count() == before


def test_dictionary_refuses_bad_limit_on_edit(api, dbs, service_type):
    name = service_type({"紧急": "4"})
    with dbs() as s:
        iid = s.scalar(select(DictItem.id).where(DictItem.item == f"{name}/紧急"))
    for value in ("0", "-1", "abc"):
        r = api("admin").put(f"/api/v1/dict_item/{iid}", json={"value": value})
        assert r.status_code == 400 and "服务时限" in r.json["message"], r.json
    r = api("admin").put(f"/api/v1/dict_item/{iid}", json={"item": "没有斜杠"})
    assert r.status_code == 400 and r.json["field"] == "item"
    with dbs() as s:
        it = s.get(DictItem, iid)
        assert (it.item, it.value) == (f"{name}/紧急", "4")
    assert api("admin").put(f"/api/v1/dict_item/{iid}", json={"value": "2/3"}).status_code == 200


def test_overdue_exactly_at_and_one_second_after(clock, api, dbs, user_id, customer):
    cid = customer()[0]
    tid, response, resolution = _new(dbs, user_id, cid, priority="特急")
    c = api("supervisor")
    clock.set(response)                                  # exactly at: not overdue
    body = c.get(f"/api/v1/service/{tid}").json["result"]
    assert body["overdue"] is False and body["priority"] == "特急"
    assert body["response_due"] == "2026-03-02T07:00:00"
    assert body["resolution_due"] == "2026-03-02T15:00:00"
    clock.set(response + timedelta(seconds=1))           # one second after: overdue
    assert c.get(f"/api/v1/service/{tid}").json["result"]["overdue"] is True
    with dbs() as s:
        t = s.get(ServiceTicket, tid)
        assert not sla.is_overdue(t, response) and sla.is_overdue(t, response + timedelta(seconds=1))
        assert sla.response_overdue(t, response + timedelta(seconds=1))
        assert not sla.resolution_overdue(t, resolution)
        assert sla.resolution_overdue(t, resolution + timedelta(seconds=1))


def test_overdue_filter_and_deadline_filters_in_api(clock, api, dbs, user_id, customer):
    cid = customer()[0]
    late, response, _ = _new(dbs, user_id, cid, priority="特急")
    fresh, _, _ = _new(dbs, user_id, cid, priority="普通")
    clock.set(response + timedelta(seconds=1))
    c = api("supervisor")
    q = "(filters:!((col:resolution_due,opr:overdue,value:!t),(col:customer_id,opr:eq,value:%d)))"
    r = c.get("/api/v1/service/?q=" + q % cid)
    assert r.status_code == 200, r.json
    assert [t["id"] for t in r.json["result"]] == [late]
    r = c.get("/api/v1/service/?q=" + (q % cid).replace("!t", "!f"))
    assert [t["id"] for t in r.json["result"]] == [fresh]
    r = c.get("/api/v1/service/?q=(filters:!((col:response_due,opr:lt,value:'2026-03-02 08:00:00'),"
              f"(col:customer_id,opr:eq,value:{cid})),order_column:response_due)")
    assert r.status_code == 200 and [t["id"] for t in r.json["result"]] == [late]


def test_handle_responds_archive_resolves_second_round_new_deadline(clock, api, dbs, user_id,
                                                                   customer):
    cid = customer()[0]
    tid, response, resolution = _new(dbs, user_id, cid, priority="紧急")    # 24 h / 48 h
    sup, m2 = api("supervisor"), api("manager2")
    clock.set(T0 + timedelta(hours=30))              # response missed
    assert sup.post(f"/api/v1/service/{tid}/assign",
                    json={"assignee_id": user_id("manager2")}).status_code == 200
    assert sup.get(f"/api/v1/service/{tid}").json["result"]["overdue"] is True
    r = m2.post(f"/api/v1/service/{tid}/handle", json={"handling": "已回电"})
    assert r.status_code == 200
    body = r.json["result"]
    assert body["first_response_on"] == (T0 + timedelta(hours=30)).isoformat()
    assert body["overdue"] is False                  # responded (late); resolution still open
    clock.set(T0 + timedelta(hours=40))
    r = sup.post(f"/api/v1/service/{tid}/feedback", json={"result": "不满意", "satisfaction": 2})
    body = r.json["result"]
    assert body["status"] == "assigned" and body["resolution_due"] == (
        T0 + timedelta(hours=40 + 48)).isoformat()          # a new resolution deadline
    assert body["first_response_on"] == (T0 + timedelta(hours=30)).isoformat()
    with dbs() as s:
        assert s.get(ServiceTicket, tid).sla_round == 2
    clock.set(T0 + timedelta(hours=50))
    m2.post(f"/api/v1/service/{tid}/handle", json={"handling": "已上门"})
    r = sup.post(f"/api/v1/service/{tid}/feedback", json={"result": "满意", "satisfaction": 4})
    body = r.json["result"]
    assert body["status"] == "archived" and body["resolved_on"] == (
        T0 + timedelta(hours=50)).isoformat()
    assert body["first_response_on"] == (T0 + timedelta(hours=30)).isoformat()  # the first
    clock.set(T0 + timedelta(days=30))
    assert sup.get(f"/api/v1/service/{tid}").json["result"]["overdue"] is False
    assert [e[0] for e in history(dbs, tid)] == ["create", "assign", "handle", "feedback",
                                                 "handle", "feedback"]


def test_priority_change_moves_the_deadlines(clock, api, dbs, user_id, customer):
    cid = customer()[0]
    tid, _, _ = _new(dbs, user_id, cid)                       # 普通: 72 h / 144 h
    clock.set(T0 + timedelta(hours=2))
    r = api("supervisor").post(f"/api/v1/service/{tid}/priority", json={"priority": "特急"})
    body = r.json["result"]
    assert body["response_due"] == (T0 + timedelta(hours=8)).isoformat()    # from creation
    assert body["resolution_due"] == (T0 + timedelta(hours=16)).isoformat()


def test_pages_show_time_left_and_overdue(clock, web, dbs, user_id, customer):
    cid = customer()[0]
    tid, response, _ = _new(dbs, user_id, cid, priority="特急")
    clock.set(T0 + timedelta(hours=5, minutes=30))
    page = web("supervisor").get(f"/service/archive/{tid}").text
    assert "响应剩余 2 小时 30 分钟" in page and "2026-03-02 07:00" in page
    assert "响应剩余 2 小时 30 分钟" in web("supervisor").get("/service/assign/").text
    clock.set(response + timedelta(days=1, hours=2))
    page = web("supervisor").get(f"/service/archive/{tid}").text
    assert "响应已超时 1 天 2 小时" in page and "crm-overdue" in page


# ---- escalation (服务超时升级) ---------------------------------------------------------------

from app.models import Notification, WorkflowEvent  # noqa: E402
from app.scheduler import run_lock, sla_escalation_job, start_scheduler  # noqa: E402

E0 = datetime(1999, 12, 31, 10, 0, 0)   # before every other test's deadlines


def _notices(dbs, tid):
    with dbs() as s:
        return sorted((n.user_id, n.dedupe_key) for n in s.scalars(select(Notification).where(
            Notification.kind == "ticket_overdue",
            Notification.link == f"/service/archive/{tid}")))


def _supervisors(dbs):
    with dbs() as s:
        return sla._supervisor_ids(s)


def _assigned(clock, dbs, user_id, cid, priority="特急"):
    clock.set(E0)
    tid, response, resolution = _new(dbs, user_id, cid, priority=priority)
    with dbs() as s:
        wf.assign(s, Actor(id=user_id("supervisor"), roles=frozenset({SUPERVISOR})), tid,
                  user_id("manager2"))
        s.commit()
    return tid, response, resolution


def test_escalation_notifies_once_per_deadline(app, clock, dbs, user_id, customer):
    cid = customer()[0]
    tid, response, resolution = _assigned(clock, dbs, user_id, cid)   # 18:00 / 02:00
    sups = _supervisors(dbs)
    assert user_id("supervisor") in sups
    expected = {user_id("manager2"), *sups}
    # exactly at the response deadline: nothing yet
    sla_escalation_job(app, now=response)
    assert _notices(dbs, tid) == []
    for _ in range(2):                       # run twice: each notice once
        sla_escalation_job(app, now=response + timedelta(seconds=1))
        got = _notices(dbs, tid)
        assert {u for u, _ in got} == expected and len(got) == len(expected)
        assert {k for _, k in got} == {f"sla:{tid}:response:1:{u}" for u in expected}
    with dbs() as s:
        t = s.get(ServiceTicket, tid)
        assert t.escalated_response_on == response + timedelta(seconds=1)
        assert t.escalated_resolution_on is None
    # the resolution deadline (after midnight) passes: one more notice each, once
    for _ in range(2):
        sla_escalation_job(app, now=resolution + timedelta(minutes=10))
    got = _notices(dbs, tid)
    assert len(got) == 2 * len(expected)
    assert {k for _, k in got if ":resolution:" in k} == {
        f"sla:{tid}:resolution:1:{u}" for u in expected}
    assert [e[0] for e in history(dbs, tid)].count("escalate") == 2
    with dbs() as s:
        n = s.scalar(select(Notification).where(
            Notification.user_id == user_id("manager2"),
            Notification.dedupe_key == f"sla:{tid}:response:1:{user_id('manager2')}"))
        assert "已超过响应时限" in n.title and "特急" in n.title


def test_met_deadlines_are_not_escalated_and_new_round_escalates_again(
        app, clock, api, dbs, user_id, customer):
    cid = customer()[0]
    tid, response, resolution = _assigned(clock, dbs, user_id, cid)
    clock.set(response)                                     # handled exactly at the deadline
    assert api("manager2").post(f"/api/v1/service/{tid}/handle",
                                json={"handling": "已处理"}).status_code == 200
    sla_escalation_job(app, now=response + timedelta(hours=1))
    assert _notices(dbs, tid) == []
    clock.set(resolution + timedelta(hours=1))               # resolution missed, then sent back
    sla_escalation_job(app, now=resolution + timedelta(hours=1))
    first = _notices(dbs, tid)
    assert first and all(":resolution:1:" in k for _, k in first)
    r = api("supervisor").post(f"/api/v1/service/{tid}/feedback",
                               json={"result": "不满意", "satisfaction": 1})
    new_due = datetime.fromisoformat(r.json["result"]["resolution_due"])
    assert new_due == resolution + timedelta(hours=1 + 16)
    sla_escalation_job(app, now=new_due)                      # at the new deadline: nothing
    assert _notices(dbs, tid) == first
    for _ in range(2):
        sla_escalation_job(app, now=new_due + timedelta(seconds=1))
    second = [k for _, k in _notices(dbs, tid) if ":resolution:2:" in k]
    assert len(second) == len(first)


def test_escalation_killed_mid_run_and_rerun_notifies_once(app, clock, dbs, user_id, customer,
                                                           monkeypatch):
    cid = customer()[0]
    tids = [_assigned(clock, dbs, user_id, cid)[0] for _ in range(3)]
    now = E0 + timedelta(hours=9)                           # all three missed their response
    expected = len({user_id("manager2"), *_supervisors(dbs)})

    # killed before the second ticket: the first is done, the others untouched
    def die_on_second(kind, tid):
        if tid == tids[1]:
            raise KeyboardInterrupt("killed")
    with pytest.raises(KeyboardInterrupt):
        sla_escalation_job(app, now=now, on_ticket=die_on_second)
    assert len(_notices(dbs, tids[0])) == expected
    assert _notices(dbs, tids[1]) == [] and _notices(dbs, tids[2]) == []

    # killed halfway through the second ticket's notices: that ticket rolls back whole
    from app.workflows import notifications as nwf
    real, calls = nwf.notify, []

    def dying_notify(session, user_id_, *a, **kw):
        calls.append(user_id_)
        if len(calls) == 2:
            raise RuntimeError("killed while notifying")
        return real(session, user_id_, *a, **kw)
    monkeypatch.setattr(nwf, "notify", dying_notify)
    assert sla_escalation_job(app, now=now) is None
    monkeypatch.setattr(nwf, "notify", real)
    assert _notices(dbs, tids[1]) == []
    with dbs() as s:
        assert s.get(ServiceTicket, tids[1]).escalated_response_on is None

    # rerun twice: every ticket's notices exactly once
    sla_escalation_job(app, now=now)
    sla_escalation_job(app, now=now)
    for tid in tids:
        got = _notices(dbs, tid)
        assert len(got) == expected and len({k for _, k in got}) == expected, tid
    with dbs() as s:
        assert s.scalar(select(func.count()).select_from(WorkflowEvent).where(
            WorkflowEvent.entity == "service", WorkflowEvent.entity_id.in_(tids),
            WorkflowEvent.action == "escalate")) == 3


def test_escalation_skips_while_another_run_holds_the_lock(app, clock, dbs, user_id, customer):
    cid = customer()[0]
    tid, response, _ = _assigned(clock, dbs, user_id, cid)
    with app.app_context():
        with run_lock(job="sla") as acquired:
            assert acquired
            assert sla_escalation_job(app, now=response + timedelta(seconds=1)) is None
    assert _notices(dbs, tid) == []
    assert sla_escalation_job(app, now=response + timedelta(seconds=1))["response"] >= 1
    assert _notices(dbs, tid)


def test_escalation_job_is_scheduled_every_ten_minutes(app):
    sched = start_scheduler(app, start=False)
    job = sched.get_job("sla-escalation")
    assert job is not None and job.max_instances == 1 and job.coalesce
    assert job.trigger.interval == timedelta(minutes=10)


# ---- 客户服务分析 ---------------------------------------------------------------------------

def test_service_report_counts_missed_deadlines(api, web, dbs, user_id, customer,
                                                service_type):
    """Per 服务类型: 服务数量, 超时数量 (late or still open past a deadline), 按时率."""
    from . import factories as f

    name = service_type()
    cid = customer()[0]
    due = datetime(1998, 6, 1, 12, 0)
    with dbs() as s:
        c = s.get(f.Customer, cid)
        m1 = user_id("manager1")
        common = dict(service_type=name, created_on=datetime(1998, 6, 1, 8, 0),
                      changed_on=datetime(1998, 6, 1, 8, 0), response_due=due,
                      resolution_due=due + timedelta(hours=24))
        # on time; responded one second late; resolved late; open past its deadline;
        # and one from before the deadlines existed
        f.service(s, c, m1, status="archived", first_response_on=due, resolved_on=due, **common)
        f.service(s, c, m1, status="handled", first_response_on=due + timedelta(seconds=1),
                  **dict(common, resolution_due=datetime(2999, 1, 1)))
        f.service(s, c, m1, status="archived", first_response_on=due,
                  resolved_on=due + timedelta(hours=25), **common)
        f.service(s, c, m1, status="created", **common)
        f.service(s, c, m1, status="archived", service_type=name,
                  created_on=datetime(1998, 6, 1, 8, 0), changed_on=datetime(1998, 6, 1, 8, 0))
        s.commit()
    r = api("supervisor").get("/api/v1/report/service?year=1998")
    assert r.status_code == 200, r.json
    row = next(x for x in r.json["rows"] if x["service_type"] == name)
    assert (row["count"], row["overdue"], row["on_time_percent"]) == (5, 3, 25.0)
    assert r.json["total"]["overdue"] >= 3
    empty = next(x for x in api("supervisor").get("/api/v1/report/service?year=1901")
                 .json["rows"] if x["service_type"] == name)
    assert (empty["count"], empty["overdue"], empty["on_time_percent"]) == (0, 0, None)
    page = web("supervisor").get("/reports/service/?year=1998").text
    assert "超时数量" in page and "按时率（%）" in page and "25.0%" in page
