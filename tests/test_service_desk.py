"""服务管理 as a service desk (issue 22, the rest; issue 21.5 bulk assign; issue 19):

* one ``can_<step>`` / ``require_<step>`` pair per step, the same answer for the
  pages (``may``) and the steps;
* the 服务分配 list: search box (编号, 概要, customer name), priority and overdue
  filters, a bad filter is a Chinese 400;
* 批量分配 (HTML and ``POST /api/v1/service/bulk_assign``): each row through ``assign``
  with its own compare-and-set and a per-row result; a wrong role 403 and garbage 400
  change nothing; a racing row is refused and the others proceed;
* the 服务归档 export carries priority, deadlines, first response, resolution, 是否逾期;
* the API filters ``overdue`` through ``q`` on either deadline column;
* the admin's 工作台 lists the 服务类型 × 优先级 pairs without a 服务时限 item.
"""
import io
import re
from datetime import datetime, timedelta
from urllib.parse import quote

import pandas as pd
import pytest
from sqlalchemy import func, select

from app.models import DictItem, Notification, ServiceTicket, WorkflowEvent
from app.workflows import events as events_module
from app.workflows import service as wf
from app.workflows import sla
from app.workflows.actors import ADMIN, EXECUTIVE, MANAGER, SUPERVISOR, Actor
from app.workflows.errors import Conflict, Forbidden

from . import factories as f
from .test_service import actor, customer, snapshot, ticket  # noqa: F401 (fixtures)

BOM = b"\xef\xbb\xbf"


@pytest.fixture(autouse=True)
def _forget_my_tickets(dbs):
    """The tickets made here are ``created`` ones that would fill other tests' 服务分配
    lists: remove them (with their history and notices) afterwards."""
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


def _events(dbs, tid):
    with dbs() as s:
        return [e.action for e in s.scalars(select(WorkflowEvent).where(
            WorkflowEvent.entity == "service", WorkflowEvent.entity_id == tid)
            .order_by(WorkflowEvent.id))]


def _status(dbs, tid):
    with dbs() as s:
        t = s.get(ServiceTicket, tid)
        return t.status, t.assignee_id


# ---- can_ / require_ ----------------------------------------------------------------------

def _who(role, uid=10**6):
    return Actor(id=uid, roles=frozenset({role}), name=role)


class _T:
    def __init__(self, status, assignee_id=None, created_by_fk=None, number="FW1"):
        self.status, self.assignee_id, self.created_by_fk = status, assignee_id, created_by_fk
        self.number = number


@pytest.mark.parametrize("step,role,status,ok", [
    ("assign", SUPERVISOR, "created", True), ("assign", ADMIN, "created", True),
    ("assign", MANAGER, "created", False), ("assign", EXECUTIVE, "created", False),
    ("assign", SUPERVISOR, "assigned", False),
    ("reassign", SUPERVISOR, "assigned", True), ("reassign", SUPERVISOR, "handled", False),
    ("reassign", MANAGER, "assigned", False),
    ("priority", SUPERVISOR, "created", True), ("priority", SUPERVISOR, "assigned", True),
    ("priority", SUPERVISOR, "handled", False), ("priority", MANAGER, "created", False),
    ("view", EXECUTIVE, "archived", True), ("view", MANAGER, "created", True),
    ("create", MANAGER, None, True), ("create", EXECUTIVE, None, False),
])
def test_can_and_require_agree(step, role, status, ok):
    who = _who(role)
    t = _T(status) if status else None
    can, require = getattr(wf, f"can_{step}"), getattr(wf, f"require_{step}")
    assert can(who, t) is ok
    if ok:
        require(who, t)
    else:
        with pytest.raises((Forbidden, Conflict)):
            require(who, t)
    # the template's may dict says the same
    assert wf.may(who, t)[step] is ok


def test_handle_and_feedback_pairs_and_may():
    me, other = _who(MANAGER, 1), _who(MANAGER, 2)
    t = _T("assigned", assignee_id=1, created_by_fk=2)
    assert wf.can_handle(me, t) and not wf.can_handle(other, t)
    wf.require_handle(me, t)
    with pytest.raises(Forbidden):
        wf.require_handle(other, t)
    assert wf.may(me, t)["handle"] and not wf.may(other, t)["handle"]
    t.status = "handled"
    assert wf.can_feedback(other, t)            # the creator
    with pytest.raises(Conflict):
        wf.require_handle(me, t)
    assert not wf.can_feedback(_who(MANAGER, 3), t)
    with pytest.raises(Forbidden):
        wf.require_feedback(_who(EXECUTIVE, 3), t)


# ---- the 服务分配 list: search and filters ---------------------------------------------------

@pytest.fixture
def desk(ticket, customer, uniq):
    """Four created tickets: two of one customer, one 特急, one overdue."""
    tag = uniq("分配搜索")
    c1 = customer(uniq(f"{tag}甲公司"))
    c2 = customer(uniq("乙公司"))
    past = datetime.now() - timedelta(hours=3)
    ids = {
        "a": ticket("created", customer_id=c1[0], summary=f"{tag} 打印机卡纸"),
        "b": ticket("created", customer_id=c1[0], summary="硒鼓报价", priority="特急",
                    priority_rank=3),
        "c": ticket("created", customer_id=c2[0], summary=f"{tag} 网络故障",
                    response_due=past, resolution_due=past + timedelta(hours=1)),
        "d": ticket("created", customer_id=c2[0], summary="其他"),
    }
    return tag, ids, c1, c2


def _numbers(dbs, ids):
    with dbs() as s:
        return {k: s.get(ServiceTicket, v).number for k, v in ids.items()}


def _shown(html, numbers):
    return {k for k, n in numbers.items() if n in html}


def test_assign_list_search_by_summary_customer_and_number(web, desk, dbs):
    tag, ids, c1, c2 = desk
    nums = _numbers(dbs, ids)
    c = web("supervisor")
    r = c.get(f"/service/assign/?search={quote(tag)}")
    assert r.status_code == 200
    # the tag is in a and c's 概要 and in c1's name (a, b)
    assert _shown(r.text, nums) == {"a", "b", "c"}
    r = c.get(f"/service/assign/?search={quote(c2[1])}")
    assert _shown(r.text, nums) == {"c", "d"}
    r = c.get(f"/service/assign/?search={nums['d'].lower()}")  # 编号, any case
    assert _shown(r.text, nums) == {"d"}
    r = c.get(f"/service/assign/?search={quote(tag)}&priority={quote('特急')}")
    assert _shown(r.text, nums) == {"b"}
    r = c.get(f"/service/assign/?search={quote(tag)}&overdue=1")
    assert _shown(r.text, nums) == {"c"}
    r = c.get(f"/service/assign/?search={quote(tag)}&overdue=0")
    assert _shown(r.text, nums) == {"a", "b"}
    # the filters stay in the pager and the search form
    assert f'value="{tag}"' in r.text
    r = c.get(f"/service/assign/?search={quote('没有这种服务' + tag)}")
    assert r.status_code == 200 and "没有符合条件的服务" in r.text


@pytest.mark.parametrize("args,word", [
    ("priority=%E5%BE%88%E6%80%A5", "优先级"),      # 很急
    ("overdue=maybe", "是否超时"),
    ("search=" + "x" * 101, "太长"),
])
def test_assign_list_bad_filter_is_a_chinese_400(web, args, word):
    r = web("supervisor").get(f"/service/assign/?{args}")
    assert r.status_code == 400 and word in r.text


def test_assign_list_is_the_supervisors(web):
    assert web("manager1").get("/service/assign/").status_code in (302, 403)


# ---- 批量分配 over REST ------------------------------------------------------------------------

def test_bulk_assign_api_assigns_each_and_reports_refusals(api, ticket, user_id, dbs):
    a, b = ticket("created"), ticket("created")
    done = ticket("assigned", assignee="manager2")
    r = api("supervisor").post("/api/v1/service/bulk_assign", json={
        "ids": [a, done, b, a, 987654321], "assignee_id": user_id("manager1")})
    assert r.status_code == 200, r.json
    res = r.json["results"]
    assert [x["id"] for x in res] == [a, done, b, 987654321]     # repeated ids once
    assert [x["ok"] for x in res] == [True, False, True, False]
    assert "已分配给" in res[0]["message"]
    assert "当前状态为“已分配”" in res[1]["message"] and res[1]["number"]
    assert res[3]["message"] == "服务不存在。" and res[3]["number"] is None
    for tid in (a, b):
        assert _status(dbs, tid) == ("assigned", user_id("manager1"))
        assert _events(dbs, tid).count("assign") == 1
    assert _status(dbs, done) == ("assigned", user_id("manager2"))
    # each assigned row notified its handler, as a single assign does
    with dbs() as s:
        assert s.scalar(select(func.count()).select_from(Notification).where(
            Notification.link.in_([f"/service/handle/{a}", f"/service/handle/{b}"]))) == 2


@pytest.mark.parametrize("who", ["manager1", "exec"])
def test_bulk_assign_wrong_role_is_403_nothing_changed(api, ticket, user_id, dbs, who):
    a, b = ticket("created"), ticket("created")
    before = [snapshot(dbs, t) for t in (a, b)]
    r = api(who).post("/api/v1/service/bulk_assign",
                      json={"ids": [a, b], "assignee_id": user_id("manager1")})
    assert r.status_code == 403 and r.json["message"]
    assert [snapshot(dbs, t) for t in (a, b)] == before


def test_bulk_assign_workflow_refuses_a_manager_first(app, ticket, actor, user_id):
    from app.extensions import db

    a = ticket("created")
    with app.app_context():
        with pytest.raises(Forbidden):
            wf.bulk_assign(db.session, actor("manager1"), "garbage", None)
        with pytest.raises(Forbidden):
            wf.bulk_assign(db.session, actor("manager1"), [a], user_id("manager1"))
        db.session.rollback()


@pytest.mark.parametrize("body,field", [
    ({"ids": "1,2", "assignee_id": "M"}, "ids"),
    ({"ids": [], "assignee_id": "M"}, "ids"),
    ({"ids": ["x"], "assignee_id": "M"}, "ids"),
    ({"ids": [True], "assignee_id": "M"}, "ids"),
    ({"ids": [None], "assignee_id": "M"}, "ids"),
    ({"ids": [{"id": 1}], "assignee_id": "M"}, "ids"),
    ({"ids": list(range(1, 202)), "assignee_id": "M"}, "ids"),
    ({"ids": "T", "assignee_id": None}, "assignee_id"),
    ({"ids": "T"}, "assignee_id"),
    ({"ids": "T", "assignee_id": "abc"}, "assignee_id"),
    ({"ids": "T", "assignee_id": 987654321}, "assignee_id"),
    ({"ids": "T", "assignee_id": "EXEC"}, "assignee_id"),     # may not handle tickets
    ([1, 2], None),
    ("not json", None),
])
def test_bulk_assign_garbage_is_400_nothing_changed(api, ticket, user_id, dbs, body, field):
    a = ticket("created")
    before = snapshot(dbs, a)

    def fill(v):
        return {"M": user_id("manager1"), "EXEC": user_id("exec"), "T": [a]}.get(v, v) \
            if isinstance(v, str) else v
    c = api("supervisor")
    if body == "not json":
        r = c.post("/api/v1/service/bulk_assign", data="ids=1",
                   headers={"Content-Type": "application/json"})
    elif isinstance(body, dict):
        r = c.post("/api/v1/service/bulk_assign", json={k: fill(v) for k, v in body.items()})
    else:
        r = c.post("/api/v1/service/bulk_assign", json=body)
    assert r.status_code == 400, r.json
    assert re.search(r"[\u4e00-\u9fff]", r.json["message"])
    if field:
        assert r.json["field"] == field
    assert snapshot(dbs, a) == before


def test_bulk_assign_racing_row_refused_others_proceed(api, ticket, user_id, dbs, monkeypatch):
    """Another 销售主管 assigns one of the rows between our state check and our
    compare-and-set: that row is refused (its own CAS finds no 新创建 row), the others
    are assigned, and the winner's assignment stands."""
    racing, b, c = ticket("created"), ticket("created"), ticket("created")
    real_cas = events_module.compare_and_set

    def cas(session, model, pk, expected, values, message):
        if pk == racing:
            with dbs() as other:       # the competitor commits first
                other.query(ServiceTicket).filter(ServiceTicket.id == racing).update(
                    {"status": "assigned", "assignee_id": user_id("manager2"),
                     "assigned_on": datetime.now(), "changed_on": datetime.now(),
                     "changed_by_fk": user_id("admin")}, synchronize_session=False)
                other.commit()
        return real_cas(session, model, pk, expected, values, message)

    monkeypatch.setattr(events_module, "compare_and_set", cas)
    # the racing row first: on SQLite our transaction has written nothing yet
    r = api("supervisor").post("/api/v1/service/bulk_assign",
                               json={"ids": [racing, b, c], "assignee_id": user_id("manager1")})
    assert r.status_code == 200, r.json
    res = {x["id"]: x for x in r.json["results"]}
    assert not res[racing]["ok"] and "已被他人分配" in res[racing]["message"]
    assert res[b]["ok"] and res[c]["ok"]
    assert _status(dbs, racing) == ("assigned", user_id("manager2"))
    assert "assign" not in _events(dbs, racing)
    for tid in (b, c):
        assert _status(dbs, tid) == ("assigned", user_id("manager1"))


# ---- 批量分配 on the page ---------------------------------------------------------------------

def test_bulk_assign_page(web, ticket, user_id, dbs, uniq):
    tag = uniq("批量")
    a = ticket("created", summary=f"{tag}一")
    b = ticket("created", summary=f"{tag}二")
    done = ticket("assigned", summary=f"{tag}三", assignee="manager2")
    c = web("supervisor")
    page = c.get(f"/service/assign/?search={quote(tag)}")
    assert page.status_code == 200
    assert 'id="bulk-assign"' in page.text and f'name="ids" value="{a}" form="bulk-assign"' in page.text
    r = c.post_form("/service/assign/bulk", {"ids": [str(a), str(b), str(done)],
                                             "assignee_id": str(user_id("manager1")),
                                             "search": tag},
                    form_url="/service/assign/")
    assert r.status_code == 200, r.text[:500]
    assert "批量分配结果：2 张已分配，1 张未分配" in r.text
    assert "当前状态为“已分配”" in r.text
    for tid in (a, b):
        assert _status(dbs, tid) == ("assigned", user_id("manager1"))
    assert _status(dbs, done) == ("assigned", user_id("manager2"))
    # the list under the results keeps the search: the two are no longer 新创建
    with dbs() as s:
        na = s.get(ServiceTicket, a).number
    assert f'value="{tag}"' in r.text and f'name="ids" value="{a}"' not in r.text and na in r.text


def test_bulk_assign_page_nothing_ticked_is_400_and_keeps_the_list(web, ticket, user_id, dbs,
                                                                   uniq):
    tag = uniq("批量")
    a = ticket("created", summary=tag)
    before = snapshot(dbs, a)
    c = web("supervisor")
    r = c.post_form("/service/assign/bulk", {"assignee_id": str(user_id("manager1"))},
                    form_url="/service/assign/")
    assert r.status_code == 400 and "请至少选择一张服务" in r.text and 'id="assign-search"' in r.text
    # the list is oldest first and paged: the ticket is found by the search the form keeps
    # (earlier tests may have left more than a page of 新创建 tickets)
    r = c.post_form("/service/assign/bulk", {"ids": [str(a)], "assignee_id": "", "search": tag},
                    form_url=f"/service/assign/?search={quote(tag)}")
    assert r.status_code == 400 and "请选择要分配的用户" in r.text
    # the ticked row stays ticked
    assert f'name="ids" value="{a}" form="bulk-assign" class="crm-bulk-id"' in r.text
    assert snapshot(dbs, a) == before


def test_bulk_assign_page_needs_csrf_and_the_role(web, ticket, user_id, dbs):
    a = ticket("created")
    before = snapshot(dbs, a)
    r = web("supervisor").post("/service/assign/bulk", data={
        "ids": [str(a)], "assignee_id": str(user_id("manager1"))})
    assert r.status_code == 400
    r = web("manager1").post_form("/service/assign/bulk", {
        "ids": [str(a)], "assignee_id": str(user_id("manager1"))}, form_url="/service/create")
    assert r.status_code in (302, 403)
    assert snapshot(dbs, a) == before


# ---- API: priority, deadlines and overdue through q -----------------------------------------

def test_api_overdue_filter_on_either_deadline_and_priority(api, desk, dbs):
    tag, ids, c1, c2 = desk
    c = api("exec")
    for col in ("resolution_due", "response_due"):
        q = (f"(filters:!((col:summary,opr:ct,value:'{tag}'),"
             f"(col:{col},opr:overdue,value:!t)),page_size:100)")
        r = c.get("/api/v1/service/", query_string={"q": q})
        assert r.status_code == 200, r.json
        assert r.json["ids"] == [ids["c"]] and r.json["result"][0]["overdue"] is True
        q = q.replace("value:!t", "value:!f")
        r = c.get("/api/v1/service/", query_string={"q": q})
        assert sorted(r.json["ids"]) == sorted([ids["a"]])
    one = c.get(f"/api/v1/service/{ids['c']}").json["result"]
    assert {"priority", "response_due", "resolution_due", "overdue"} <= set(one)
    q = f"(filters:!((col:priority,opr:eq,value:特急),(col:customer_id,opr:eq,value:{c1[0]})))"
    assert c.get("/api/v1/service/", query_string={"q": q}).json["ids"] == [ids["b"]]


# ---- export -----------------------------------------------------------------------------

def test_archive_export_carries_priority_deadlines_and_overdue(web, dbs, user_id, uniq):
    tag = uniq("时限导出")
    due = datetime(2024, 2, 1, 12, 0)
    with dbs() as s:
        cust = f.customer(s, user_id("manager1"), name=uniq("导出客户"))
        done = dict(status="archived", assignee_id=user_id("manager1"),
                    assigned_on=datetime(2024, 2, 1, 9), handling="已上门",
                    handler_id=user_id("manager1"), handled_on=datetime(2024, 2, 2, 9),
                    result="满意", satisfaction=5, priority="紧急", priority_rank=2,
                    response_due=due, resolution_due=due + timedelta(hours=24),
                    first_response_on=datetime(2024, 2, 2, 9),
                    resolved_on=datetime(2024, 2, 2, 10))
        f.service(s, cust, user_id("manager1"), summary=f"{tag}一", **done)
        s.commit()
    r = web("exec").get(f"/service/archive/export/csv/?summary={quote(tag)}")
    assert r.status_code == 200 and r.data.startswith(BOM)
    df = pd.read_csv(io.BytesIO(r.data), encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert list(df.columns)[-6:] == ["优先级", "响应期限", "解决期限", "首次响应时间", "解决时间",
                                     "是否逾期"]
    row = df.iloc[0]
    assert row["优先级"] == "紧急" and row["响应期限"] == "2024-02-01 12:00:00"
    assert row["解决期限"] == "2024-02-02 12:00:00" and row["首次响应时间"] == "2024-02-02 09:00:00"
    assert row["解决时间"] == "2024-02-02 10:00:00" and row["是否逾期"] == "否"


def test_export_row_overdue_is_yes_for_a_missed_open_deadline():
    from types import SimpleNamespace as NS

    t = NS(number="FW1", service_type=NS(item="咨询"), summary="s", request="r",
           customer=NS(number="KH1", name="客户"), created_by=None, created_on=None,
           assignee=None, assigned_on=None, handling=None, handler=None, handled_on=None,
           result=None, satisfaction=None, status="assigned", priority="特急",
           response_due=datetime(2024, 1, 1, 8), resolution_due=datetime(2024, 1, 1, 16),
           first_response_on=None, resolved_on=None)
    row = wf.export_row(t, datetime(2024, 1, 1, 9))
    assert len(row) == len(wf.export_headers())
    assert row[-6] == "特急" and row[-1] == "是"
    assert wf.export_row(t, datetime(2024, 1, 1, 8))[-1] == "否"   # exactly at the deadline


# ---- the admin's 工作台: unconfigured 服务时限 ----------------------------------------------------

@pytest.fixture
def new_type(dbs, user_id, uniq):
    """A new 服务类型 (removed afterwards with its 服务时限 items and tickets)."""
    name = uniq("缺时限类型")
    with dbs() as s:
        uid = user_id("admin")
        s.add(DictItem(type="服务类型", item=name, value="9", editable=True,
                       created_by_fk=uid, changed_by_fk=uid))
        s.commit()
    yield name
    with dbs() as s:
        item = s.scalar(select(DictItem).where(DictItem.type == "服务类型", DictItem.item == name))
        ids = s.scalars(select(ServiceTicket.id).where(ServiceTicket.service_type_id == item.id)).all()
        if ids:
            s.query(WorkflowEvent).filter(WorkflowEvent.entity == "service",
                                          WorkflowEvent.entity_id.in_(ids)).delete(
                synchronize_session=False)
            s.query(ServiceTicket).filter(ServiceTicket.id.in_(ids)).delete(
                synchronize_session=False)
        s.query(DictItem).filter(DictItem.type == "服务时限",
                                 DictItem.item.startswith(f"{name}/")).delete(
            synchronize_session=False)
        s.delete(item)
        s.commit()


def test_unconfigured_pairs_get_the_default_and_show_on_the_admin_dashboard(
        api, web, dbs, new_type, customer):
    name = new_type
    with dbs() as s:
        gaps = {p["item"]: p for p in sla.unconfigured(s)}
    assert {f"{name}/普通", f"{name}/紧急", f"{name}/特急"} <= set(gaps)
    assert (gaps[f"{name}/紧急"]["response_hours"], gaps[f"{name}/紧急"]["resolution_hours"]) == (24, 48)
    # a ticket of an unconfigured pair gets the documented default (普通: 72 h / 144 h)
    cid = customer()[0]
    r = api("manager1").post("/api/v1/service/", json={
        "service_type": name, "summary": "缺时限", "customer_id": cid, "request": "x"})
    assert r.status_code == 201, r.json
    t = r.json["result"]
    created = datetime.fromisoformat(t["created_on"])
    assert datetime.fromisoformat(t["response_due"]) == created + timedelta(hours=72)
    assert datetime.fromisoformat(t["resolution_due"]) == created + timedelta(hours=144)

    page = web("admin").get("/")
    assert page.status_code == 200 and "服务时限未配置" in page.text
    assert f"{name}/特急" in page.text
    link = re.search(r'<a href="(/dictitem/list/[^"]*)">去数据字典配置</a>', page.text)
    dict_link = link.group(1).replace("&amp;", "&")
    data = api("admin").get("/api/v1/dashboard/").json
    assert f"{name}/普通" in {p["item"] for p in data["sla_gaps"]["pairs"]}
    assert data["sla_gaps"]["count"] == len(data["sla_gaps"]["pairs"])
    # other roles do not get the card
    assert "服务时限未配置" not in web("supervisor").get("/").text
    assert "sla_gaps" not in api("supervisor").get("/api/v1/dashboard/").json

    # configure one pair: it leaves the card, the others stay
    r = api("admin").post("/api/v1/dict_item/", json={
        "type": "服务时限", "item": f"{name}/紧急", "value": "4"})
    assert r.status_code == 201, r.json
    page = web("admin").get("/").text
    assert f"{name}/紧急" not in page and f"{name}/特急" in page
    # the card's link opens the dictionary filtered on 服务时限: the new item is there
    listing = web("admin").get(f"{dict_link}&_flt_0_item={quote(name)}")  # one page
    assert listing.status_code == 200 and f"{name}/紧急" in listing.text
    with dbs() as s:
        assert f"{name}/紧急" not in {p["item"] for p in sla.unconfigured(s)}


def test_gap_card_is_absent_when_every_pair_is_configured(app, monkeypatch, web):
    from app.workflows import dashboard as dwf

    monkeypatch.setattr(dwf.sla, "unconfigured", lambda session: [])
    page = web("admin").get("/").text
    assert "服务时限未配置" not in page
