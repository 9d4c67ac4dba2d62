"""客户流失管理: detection job, 暂缓流失 measures, 确认流失, rights, REST, schedule and lock.

Tests share one database per backend, so every check_churn call here is scoped
to the customers the test created (``customer_ids``).
"""
import threading
from datetime import date, datetime, time, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import ChurnMeasure, ChurnWarning, Customer, WorkflowEvent
from app.workflows import churn as wf
from app.workflows import rollup
from app.workflows.actors import Actor
from app.workflows.errors import Conflict, Forbidden, ValidationError

from . import factories as f

AS_OF = date(2030, 8, 31)          # cutoff = 2030-02-28 (calendar months, clamped)
CUTOFF = date(2030, 2, 28)


# ---- helpers ------------------------------------------------------------------------

def run_check(app, ids, as_of=AS_OF, progress=None, refresh=True):
    """The check as the job runs it: the order rollup refreshed first, then read."""
    with app.app_context():
        try:
            if refresh:
                rollup.refresh(db.session)
            summary = wf.check_churn(db.session, db.engines["sales"], as_of=as_of,
                                     actor_id=_system_id(app), progress=progress,
                                     customer_ids=ids)
            db.session.commit()
            return summary
        finally:
            db.session.remove()


def _system_id(app):
    from app.cli import system_user_id
    return system_user_id()


def make_customer(s, manager_id, created_on=None, **kw):
    return f.customer(s, manager_id, created_on=created_on or datetime(2020, 1, 1, 9), **kw)


def add_order(s, number, day, status=6):
    prod = f.product(s, price="10.00")
    return f.order(s, number, [(prod, 1, "10.00")], status=status, day=day)


def warnings_of(s, cid):
    return s.scalars(select(ChurnWarning).where(ChurnWarning.customer_id == cid)
                     .order_by(ChurnWarning.id)).all()


def events_of(s, wid, entity="churn"):
    return s.scalars(select(WorkflowEvent).where(WorkflowEvent.entity == entity,
                                                 WorkflowEvent.entity_id == wid)
                     .order_by(WorkflowEvent.id)).all()


def actor(app, username):
    with app.app_context():
        a = Actor.of(app.appbuilder.sm.find_user(username=username))
        db.session.remove()
        return a


@pytest.fixture
def warned(app, dbs, user_id):
    """→ make(manager="manager1"): a customer silent for over a year with an open
    warning opened today; returns (customer_id, warning_id)."""
    def make(manager="manager1"):
        with dbs() as s:
            c = make_customer(s, user_id(manager), created_on=datetime.now() - timedelta(days=400))
            add_order(s, c.number, date.today() - timedelta(days=300))
            s.commit()
            cid = c.id
        summary = run_check(app, [cid], as_of=date.today())
        assert len(summary["opened"]) == 1
        return cid, summary["opened"][0][0]
    return make


# ---- dates -----------------------------------------------------------------------------

def test_months_before_uses_calendar_months():
    assert wf.months_before(date(2026, 8, 31), 6) == date(2026, 2, 28)
    assert wf.months_before(date(2028, 8, 31), 6) == date(2028, 2, 29)
    assert wf.months_before(date(2026, 3, 15), 6) == date(2025, 9, 15)
    assert wf.months_before(date(2026, 1, 1), 6) == date(2025, 7, 1)
    assert wf.cutoff_for(AS_OF) == CUTOFF


# ---- detection -------------------------------------------------------------------------

def test_detection_boundaries(app, dbs, user_id):
    m1 = user_id("manager1")
    with dbs() as s:
        on_cutoff = make_customer(s, m1)
        add_order(s, on_cutoff.number, CUTOFF, status=6)            # exactly 6 months: not yet
        day_before = make_customer(s, m1)
        add_order(s, day_before.number, CUTOFF - timedelta(days=1), status=5)
        other_statuses = make_customer(s, user_id("manager2"))
        add_order(s, other_statuses.number, CUTOFF - timedelta(days=1), status=6)
        for st in (1, 2, 3, 4):                                      # recent, but not counted
            add_order(s, other_statuses.number, AS_OF - timedelta(days=3), status=st)
        never_old = make_customer(s, m1, created_on=datetime.combine(CUTOFF, time()) - timedelta(minutes=1))
        never_new = make_customer(s, m1, created_on=datetime.combine(CUTOFF, time(10)))
        lost = make_customer(s, m1, status="lost")
        future_only = make_customer(s, m1)                           # ordered only after as_of
        add_order(s, future_only.number, AS_OF + timedelta(days=1))
        recent = make_customer(s, m1)
        add_order(s, recent.number, AS_OF)
        s.commit()
        ids = {k: c.id for k, c in dict(
            on_cutoff=on_cutoff, day_before=day_before, other_statuses=other_statuses,
            never_old=never_old, never_new=never_new, lost=lost, future_only=future_only,
            recent=recent).items()}

    summary = run_check(app, list(ids.values()))
    opened = {cid for _, cid in summary["opened"]}
    assert opened == {ids["day_before"], ids["other_statuses"], ids["never_old"],
                      ids["future_only"]}
    assert summary["recovered"] == [] and summary["cutoff"] == CUTOFF
    with dbs() as s:
        w = warnings_of(s, ids["day_before"])[0]
        assert (w.status, w.manager_id, w.last_order_date) == ("warning", m1, CUTOFF - timedelta(days=1))
        assert w.warned_on == datetime.combine(AS_OF, time())
        w2 = warnings_of(s, ids["other_statuses"])[0]
        assert w2.last_order_date == CUTOFF - timedelta(days=1)
        assert w2.manager_id == user_id("manager2")
        assert warnings_of(s, ids["never_old"])[0].last_order_date is None
        for key in ("on_cutoff", "never_new", "lost", "recent"):
            assert warnings_of(s, ids[key]) == []
        ev = events_of(s, w.id)
        assert [(e.action, e.from_status, e.to_status) for e in ev] == [("open", None, "warning")]


def test_rerun_changes_nothing(app, dbs, user_id):
    with dbs() as s:
        a = make_customer(s, user_id("manager1"))
        b = make_customer(s, user_id("manager2"))
        add_order(s, b.number, CUTOFF - timedelta(days=40))
        s.commit()
        ids = [a.id, b.id]
    first = run_check(app, ids)
    assert len(first["opened"]) == 2

    def snapshot():
        with dbs() as s:
            rows = s.execute(select(ChurnWarning.id, ChurnWarning.status, ChurnWarning.changed_on)
                             .where(ChurnWarning.customer_id.in_(ids))).all()
            n_ev = s.scalar(select(func.count()).select_from(WorkflowEvent).where(
                WorkflowEvent.entity == "churn",
                WorkflowEvent.entity_id.in_([r[0] for r in rows])))
            return sorted(rows), n_ev
    before = snapshot()
    again = run_check(app, ids)
    assert again["opened"] == [] and again["recovered"] == []
    assert snapshot() == before


def test_open_warning_is_unique_in_database(app, dbs, user_id):
    with dbs() as s:
        c = make_customer(s, user_id("manager1"))
        s.commit()
        cid = c.id
    run_check(app, [cid])
    with dbs() as s:
        s.add(ChurnWarning(customer_id=cid, manager_id=user_id("manager1"), warned_on=datetime.now(),
                           status="delaying", created_by_fk=user_id("admin"),
                           changed_by_fk=user_id("admin")))
        with pytest.raises(IntegrityError):
            s.flush()
        s.rollback()
        assert len(warnings_of(s, cid)) == 1


def test_concurrent_runs_open_no_duplicate(app, dbs, user_id, backend):
    if backend != "postgresql":
        pytest.skip("SQLite serializes writers; concurrent runs are kept apart by run_lock")
    with dbs() as s:
        custs = [make_customer(s, user_id("manager1")) for _ in range(30)]
        s.commit()
        ids = [c.id for c in custs]
    with app.app_context():
        rollup.refresh(db.session)
        db.session.remove()
    barrier = threading.Barrier(2, timeout=30)
    results, errors = [], []

    def progress(stage, n):
        if stage == "recovered":      # both runs reach the INSERT together
            barrier.wait()

    def worker():
        try:
            results.append(run_check(app, ids, progress=progress, refresh=False))
        except Exception as e:       # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(len(r["opened"]) for r in results) == [0, 30]
    with dbs() as s:
        n = s.scalar(select(func.count()).select_from(ChurnWarning)
                     .where(ChurnWarning.customer_id.in_(ids)))
        assert n == 30
        n_ev = s.scalar(select(func.count()).select_from(WorkflowEvent).where(
            WorkflowEvent.entity == "churn", WorkflowEvent.action == "open",
            WorkflowEvent.entity_id.in_(select(ChurnWarning.id).where(
                ChurnWarning.customer_id.in_(ids)))))
        assert n_ev == 30


def test_recovery_when_customer_orders_again(app, dbs, user_id):
    m1 = user_id("manager1")
    with dbs() as s:
        back = make_customer(s, m1)
        delaying = make_customer(s, m1)
        still = make_customer(s, m1)
        s.commit()
        ids = {"back": back.id, "delaying": delaying.id, "still": still.id}
        numbers = {"back": back.number, "delaying": delaying.number, "still": still.number}
    opened = dict((cid, wid) for wid, cid in run_check(app, list(ids.values()))["opened"])
    with dbs() as s:
        wf.add_measure(s, actor(app, "manager1"), opened[ids["delaying"]], "电话回访")
        s.commit()
    later = AS_OF + timedelta(days=14)
    with dbs() as s:
        add_order(s, numbers["back"], AS_OF + timedelta(days=3), status=5)
        add_order(s, numbers["delaying"], AS_OF + timedelta(days=5), status=6)
        add_order(s, numbers["still"], AS_OF + timedelta(days=5), status=2)   # not counted
        s.commit()
    summary = run_check(app, list(ids.values()), as_of=later)
    assert sorted(cid for _, cid in summary["recovered"]) == sorted([ids["back"], ids["delaying"]])
    assert summary["opened"] == []
    with dbs() as s:
        w = warnings_of(s, ids["back"])[0]
        assert w.status == "recovered" and w.recovered_on == datetime.combine(later, time())
        assert [(e.action, e.from_status, e.to_status) for e in events_of(s, w.id)][-1] == \
            ("recover", "warning", "recovered")
        wd = warnings_of(s, ids["delaying"])[0]
        assert wd.status == "recovered"
        assert events_of(s, wd.id)[-1].from_status == "delaying"
        assert warnings_of(s, ids["still"])[0].status == "warning"
    again = run_check(app, list(ids.values()), as_of=later)
    assert again["opened"] == [] and again["recovered"] == []


# ---- measures and confirmation (workflow) -----------------------------------------------

def test_measures_are_appended_in_order(app, dbs, warned, user_id):
    cid, wid = warned()
    m1, sup = actor(app, "manager1"), actor(app, "supervisor")
    with dbs() as s:
        wf.add_measure(s, m1, wid, "第一次：电话回访")
        s.commit()
        assert s.get(ChurnWarning, wid).status == "delaying"
        wf.add_measure(s, sup, wid, "  第二次：主管上门拜访  ")
        s.commit()
        wf.add_measure(s, m1, wid, "第三次：提供九折报价")
        s.commit()
    with dbs() as s:
        ms = s.scalars(select(ChurnMeasure).where(ChurnMeasure.warning_id == wid)
                       .order_by(ChurnMeasure.id)).all()
        assert [m.text for m in ms] == ["第一次：电话回访", "第二次：主管上门拜访", "第三次：提供九折报价"]
        assert [m.created_by_fk for m in ms] == [m1.id, sup.id, m1.id]
        assert all(m.created_on for m in ms)
        assert s.get(ChurnWarning, wid).status == "delaying"
        delays = [e for e in events_of(s, wid) if e.action == "delay"]
        assert len(delays) == 1 and (delays[0].from_status, delays[0].to_status) == ("warning", "delaying")


def test_measure_requires_text_and_own_customer(app, dbs, warned):
    cid, wid = warned()
    with dbs() as s:
        with pytest.raises(ValidationError) as e:
            wf.add_measure(s, actor(app, "manager1"), wid, "   ")
        assert e.value.field == "measure"
        s.rollback()
        for who in ("manager2", "exec"):
            with pytest.raises(Forbidden):
                wf.add_measure(s, actor(app, who), wid, "不该成功")
            s.rollback()
        assert s.get(ChurnWarning, wid).status == "warning"
        assert s.scalar(select(func.count()).select_from(ChurnMeasure)
                        .where(ChurnMeasure.warning_id == wid)) == 0


def test_confirm_needs_measure_and_reason(app, dbs, warned):
    cid, wid = warned()
    m1 = actor(app, "manager1")

    def unchanged(status="warning"):
        with dbs() as s:
            w = s.get(ChurnWarning, wid)
            assert (w.status, w.reason, w.confirmed_on) == (status, None, None)
            assert s.get(Customer, cid).status == "normal"

    with dbs() as s:
        with pytest.raises(Conflict) as e:
            wf.confirm(s, m1, wid, "客户转向竞争对手")
        assert "暂缓措施" in str(e.value.message)
        s.rollback()
    unchanged()
    with dbs() as s:
        wf.add_measure(s, m1, wid, "电话回访")
        s.commit()
    for bad in ("", "   ", None):
        with dbs() as s:
            with pytest.raises(ValidationError) as e:
                wf.confirm(s, m1, wid, bad)
            assert e.value.field == "reason"
            s.rollback()
    unchanged("delaying")
    with dbs() as s:
        with pytest.raises(Forbidden):
            wf.confirm(s, actor(app, "manager2"), wid, "别人的客户")
        s.rollback()
    unchanged("delaying")
    with dbs() as s:
        wf.confirm(s, m1, wid, "客户转向竞争对手")
        s.commit()
    with dbs() as s:
        w = s.get(ChurnWarning, wid)
        assert (w.status, w.reason) == ("lost", "客户转向竞争对手") and w.confirmed_on
        assert s.get(Customer, cid).status == "lost"
        assert events_of(s, wid)[-1].action == "confirm"
        assert [(e.from_status, e.to_status) for e in events_of(s, cid, "customer")] == [("normal", "lost")]
        # a lost warning accepts nothing more
        with pytest.raises(Conflict):
            wf.add_measure(s, m1, wid, "再试一次")
        s.rollback()
        with pytest.raises(Conflict):
            wf.confirm(s, m1, wid, "再确认一次")
        s.rollback()
    # a lost customer is never warned again
    assert run_check(app, [cid], as_of=date.today() + timedelta(days=400))["opened"] == []


# ---- REST API ------------------------------------------------------------------------------

def test_api_read_shape_and_scope(api, warned):
    cid1, wid1 = warned("manager1")
    cid2, wid2 = warned("manager2")
    c = api("manager1")
    assert c.post(f"/api/v1/churn/{wid1}/measures", json={"measure": "回访"}).status_code == 201
    r = c.get(f"/api/v1/churn/{wid1}")
    assert r.status_code == 200
    row = r.json["result"]
    assert set(row) == {"id", "customer_id", "manager_id", "last_order_date", "warned_on",
                        "measures", "reason", "confirmed_on", "status"}
    assert row["status"] == "delaying" and row["customer_id"] == cid1
    assert row["measures"][0]["text"] == "回访" and set(row["measures"][0]) == {"text", "author_id", "created_on"}
    assert len(row["last_order_date"]) == 10
    # a 客户经理 sees only the warnings of own customers
    assert c.get(f"/api/v1/churn/{wid2}").status_code == 404
    q = f"(filters:!((col:customer_id,opr:eq,value:{cid2})))"
    assert c.get(f"/api/v1/churn/?q={q}").json["count"] == 0
    listed = c.get(f"/api/v1/churn/?q=(filters:!((col:customer_id,opr:eq,value:{cid1})))").json
    assert listed["count"] == 1 and listed["result"][0]["measures"][0]["text"] == "回访"
    for who in ("exec", "supervisor", "admin"):
        assert api(who).get(f"/api/v1/churn/{wid2}").status_code == 200
    assert api().get("/api/v1/churn/").status_code == 401


def test_api_has_no_generic_writes(api, warned):
    _, wid = warned()
    c = api("admin")
    assert c.post("/api/v1/churn/", json={"customer_id": 1}).status_code == 405
    assert c.put(f"/api/v1/churn/{wid}", json={"status": "lost"}).status_code == 405
    assert c.delete(f"/api/v1/churn/{wid}").status_code == 405


@pytest.mark.parametrize("username,allowed", [
    ("manager1", True), ("supervisor", True), ("admin", True), ("manager2", False), ("exec", False)])
def test_api_rights_of_each_role(api, dbs, warned, username, allowed):
    cid, wid = warned("manager1")
    c = api(username)
    r = c.post(f"/api/v1/churn/{wid}/measures", json={"measure": f"{username} 的措施"})
    if not allowed:
        assert r.status_code == 403 and r.json["message"]
        r = c.post(f"/api/v1/churn/{wid}/confirm", json={"reason": "不该成功"})
        assert r.status_code == 403
        with dbs() as s:
            assert s.get(ChurnWarning, wid).status == "warning"
            assert s.get(Customer, cid).status == "normal"
            assert s.scalar(select(func.count()).select_from(ChurnMeasure)
                            .where(ChurnMeasure.warning_id == wid)) == 0
        return
    assert r.status_code == 201, r.json
    assert r.json["result"]["status"] == "delaying"
    r = c.post(f"/api/v1/churn/{wid}/confirm", json={"reason": "经营不善，已停止采购"})
    assert r.status_code == 200, r.json
    assert r.json["result"]["status"] == "lost" and r.json["result"]["confirmed_on"]
    with dbs() as s:
        assert s.get(Customer, cid).status == "lost"


def test_api_errors_are_chinese_and_change_nothing(api, dbs, warned):
    cid, wid = warned()
    c = api("manager1")
    r = c.post(f"/api/v1/churn/{wid}/confirm", json={"reason": "没有措施"})
    assert r.status_code == 409 and "暂缓措施" in r.json["message"]
    r = c.post(f"/api/v1/churn/{wid}/measures", json={"measure": ""})
    assert r.status_code == 400 and r.json["field"] == "measure"
    r = c.post(f"/api/v1/churn/{wid}/measures", data="x", content_type="text/plain")
    assert r.status_code == 400
    assert c.post("/api/v1/churn/99999999/measures", json={"measure": "x"}).status_code == 404
    assert c.post(f"/api/v1/churn/{wid}/measures", json={"measure": "措施一"}).status_code == 201
    r = c.post(f"/api/v1/churn/{wid}/confirm", json={"reason": " "})
    assert r.status_code == 400 and r.json["field"] == "reason" and "原因" in r.json["message"]
    with dbs() as s:
        assert s.get(ChurnWarning, wid).status == "delaying"
        assert s.get(Customer, cid).status == "normal"


# ---- HTML -----------------------------------------------------------------------------------

def test_html_list_scope_and_chinese(web, warned, dbs):
    cid1, wid1 = warned("manager1")
    cid2, wid2 = warned("manager2")
    with dbs() as s:
        name1, name2 = s.get(Customer, cid1).name, s.get(Customer, cid2).name
    m = web("manager1")
    page = m.get(f"/churn/list/?status=all&customer={name1}")
    assert page.status_code == 200
    assert "客户流失管理" in page.text and name1 in page.text
    other = m.get(f"/churn/list/?status=all&customer={name2}").text
    assert f">{name2}</a>" not in other and "没有符合条件的流失预警" in other
    assert f"/customer/show/{cid1}" in page.text and "预警" in page.text and "距今天数" in page.text
    for english in (">List", ">Search<", ">warning<", ">delaying<", ">Status<"):
        assert english not in page.text
    for who in ("supervisor", "exec", "admin"):
        text = web(who).get(f"/churn/list/?customer={name2}").text
        assert name2 in text
    # another manager's warning page is refused
    assert web("manager1").get(f"/churn/show/{wid2}").status_code == 403


def test_html_measure_and_confirm_with_csrf(web, warned, dbs):
    cid, wid = warned("manager1")
    m = web("manager1")
    show = f"/churn/show/{wid}"
    page = m.get(show)
    assert page.status_code == 200 and "暂缓流失" in page.text and "确认流失" in page.text
    # without a CSRF token: refused, nothing stored
    assert m.post(f"/churn/measure/{wid}", data={"measure": "无令牌"}).status_code == 400
    # confirm before any measure: 409 page
    r = m.post_form(f"/churn/confirm/{wid}", {"reason": "原因"}, form_url=show)
    assert r.status_code == 409 and "暂缓措施" in r.text
    r = m.post_form(f"/churn/measure/{wid}", {"measure": "上门拜访，送新品样机"}, form_url=show)
    assert r.status_code == 302
    page = m.get(show)
    assert "上门拜访，送新品样机" in page.text and "暂缓流失" in page.text and "张伟" in page.text
    r = m.post_form(f"/churn/confirm/{wid}", {"reason": ""}, form_url=show)
    assert r.status_code == 400 and "流失原因" in r.text
    r = m.post_form(f"/churn/confirm/{wid}", {"reason": "客户已倒闭"}, form_url=show)
    assert r.status_code == 302
    page = m.get(show)
    assert "已流失" in page.text and "客户已倒闭" in page.text
    with dbs() as s:
        assert s.get(Customer, cid).status == "lost"
        assert [x.text for x in s.get(ChurnWarning, wid).measures] == ["上门拜访，送新品样机"]


@pytest.mark.parametrize("username", ["exec", "manager2"])
def test_html_forbidden_writes_change_nothing(web, warned, dbs, username):
    cid, wid = warned("manager1")
    c = web(username)
    token_page = "/dictitem/list/"   # any page carrying the session CSRF token
    if username == "exec":
        page = c.get(f"/churn/show/{wid}")
        assert page.status_code == 200 and 'name="measure"' not in page.text
    r = c.post_form(f"/churn/measure/{wid}", {"measure": "越权措施"}, form_url=token_page)
    assert r.status_code in (302, 403)
    r = c.post_form(f"/churn/confirm/{wid}", {"reason": "越权"}, form_url=token_page)
    assert r.status_code in (302, 403)
    with dbs() as s:
        assert s.get(ChurnWarning, wid).status == "warning" and not s.get(ChurnWarning, wid).measures
        assert s.get(Customer, cid).status == "normal"


def test_customer_section(app, dbs, warned, user_id):
    from app.views.churn import churn_section

    cid, wid = warned()
    with dbs() as s:
        plain = make_customer(s, user_id("manager1"))
        s.commit()
        pid = plain.id
    with app.test_request_context():
        a = actor(app, "manager1")
        assert churn_section(db.session.get(Customer, pid), a) is None
        html = churn_section(db.session.get(Customer, cid), a)
        assert "预警" in html and f"/churn/show/{wid}" in html
        # another 客户经理 reads the customer page, not its churn warnings (as /churn/show)
        assert churn_section(db.session.get(Customer, cid), actor(app, "manager2")) is None
        assert f"/churn/show/{wid}" in churn_section(db.session.get(Customer, cid),
                                                     actor(app, "supervisor"))
        db.session.remove()


# ---- triggers: CLI, schedule, lock -------------------------------------------------------------

def test_cli_churn_check(app, dbs, user_id):
    with dbs() as s:
        c = make_customer(s, user_id("manager2"), created_on=datetime(1999, 1, 1))
        s.commit()
        cid, number = c.id, c.number
    runner = app.test_cli_runner()
    r = runner.invoke(args=["crm", "churn-check", "--as-of", "2000-01-01", "--write"])
    assert r.exit_code == 0, r.output
    assert "新开流失预警" in r.output and number in r.output and "1999-07-01" in r.output
    with dbs() as s:
        assert warnings_of(s, cid)[0].status == "warning"
    r = runner.invoke(args=["crm", "churn-check", "--as-of", "2000-01-01", "--write"])
    assert "新开流失预警: 0 条" in r.output
    r = runner.invoke(args=["crm", "churn-check", "--as-of", "2000/01/01"])
    assert r.exit_code != 0 and "YYYY-MM-DD" in r.output


def test_schedule_is_saturday_0200(app):
    from app.scheduler import JOB_ID, churn_trigger, start_scheduler
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    trigger = churn_trigger(timezone=tz)
    fields = {fl.name: str(fl) for fl in trigger.fields}
    assert (fields["day_of_week"], fields["hour"], fields["minute"]) == ("sat", "2", "0")
    wednesday = datetime(2026, 4, 29, 12, 0, tzinfo=tz)
    nxt = trigger.get_next_fire_time(None, wednesday)
    assert nxt == datetime(2026, 5, 2, 2, 0, tzinfo=tz) and nxt.weekday() == 5
    after = trigger.get_next_fire_time(nxt, nxt + timedelta(seconds=1))
    assert after == datetime(2026, 5, 9, 2, 0, tzinfo=tz)
    sched = start_scheduler(app, start=False)
    job = sched.get_job(JOB_ID)
    assert job is not None and job.max_instances == 1 and job.coalesce
    job_fields = {fl.name: str(fl) for fl in job.trigger.fields}
    assert (job_fields["day_of_week"], job_fields["hour"], job_fields["minute"]) == ("sat", "2", "0")


def test_scheduled_run_happens_once_per_day(app):
    from app.scheduler import scheduled_churn_job

    day = date(2101, 1, 1)
    calls = []
    barrier = threading.Barrier(4, timeout=30)

    def runner():
        calls.append(1)
        return {"opened": [], "recovered": []}

    def worker():
        barrier.wait()
        scheduled_churn_job(app, day=day, runner=runner)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(calls) == 1
    # a process starting later the same day does not run it again; next Saturday runs
    assert scheduled_churn_job(app, day=day, runner=runner) is None
    assert scheduled_churn_job(app, day=day + timedelta(days=7), runner=runner) is not None
    assert len(calls) == 2


def test_failed_scheduled_run_can_be_retried(app):
    from app.scheduler import scheduled_churn_job

    day = date(2102, 1, 1)

    def boom():
        raise RuntimeError("sales database down")

    assert scheduled_churn_job(app, day=day, runner=boom) is None
    assert scheduled_churn_job(app, day=day, runner=lambda: {"opened": []}) == {"opened": []}


def test_run_lock_never_waits(app):
    from app.scheduler import run_lock

    with app.app_context():
        with run_lock() as first:
            assert first
            with run_lock() as second:
                assert not second
        with run_lock() as again:
            assert again
        db.session.remove()


# ---- history runs never destroy work (issue 18 item 1) ---------------------------------------

def _table_state(s):
    """Row counts and max ids of everything a churn check could write."""
    out = []
    for model in (ChurnWarning, ChurnMeasure, WorkflowEvent, Customer):
        out.append(s.execute(select(func.count(), func.max(model.id))).one())
    out.append(s.execute(select(ChurnWarning.status, func.count()).group_by(ChurnWarning.status)
                         .order_by(ChurnWarning.status)).all())
    return out


def _delaying_with_measure(app, dbs, warned):
    cid, wid = warned()
    with dbs() as s:
        wf.add_measure(s, actor(app, "manager1"), wid, "上门拜访，提供九折报价")
        s.commit()
    return cid, wid


def test_past_as_of_is_a_preview_that_writes_nothing(app, dbs, warned):
    cid, wid = _delaying_with_measure(app, dbs, warned)
    past = date.today() - timedelta(days=200)     # the old rule "recovered" the warning here
    with dbs() as s:
        before = _table_state(s)
    r = app.test_cli_runner().invoke(args=["crm", "churn-check", "--as-of", past.isoformat()])
    assert r.exit_code == 0, r.output
    assert "预览" in r.output and "--write" in r.output and "数据库未改变" in r.output
    with dbs() as s:
        assert _table_state(s) == before
        assert warnings_of(s, cid)[0].status == "delaying"
    # --preview also previews a check as of today
    r = app.test_cli_runner().invoke(args=["crm", "churn-check", "--preview"])
    assert r.exit_code == 0 and "预览" in r.output, r.output
    with dbs() as s:
        assert _table_state(s) == before
    r = app.test_cli_runner().invoke(args=["crm", "churn-check", "--preview", "--write"])
    assert r.exit_code != 0


def test_history_run_then_normal_run_keeps_delaying_and_measures(app, dbs, warned):
    """The reported scenario: 暂缓 with measures → check as of a past day (even written)
    → the normal check: still the same 暂缓 warning with its measures, no fresh 预警."""
    cid, wid = _delaying_with_measure(app, dbs, warned)
    past = date.today() - timedelta(days=200)
    r = app.test_cli_runner().invoke(args=["crm", "churn-check", "--as-of", past.isoformat()])
    assert r.exit_code == 0, r.output
    written = run_check(app, [cid], as_of=past)          # explicit write of the past day
    assert written["recovered"] == [] and written["opened"] == []
    normal = run_check(app, [cid], as_of=date.today())
    assert normal["opened"] == [] and normal["recovered"] == [] and normal["reopened"] == []
    with dbs() as s:
        ws = warnings_of(s, cid)
        assert [(w.id, w.status) for w in ws] == [(wid, "delaying")]
        assert [m.text for m in ws[0].measures] == ["上门拜访，提供九折报价"]
    with dbs() as s:           # and it can still be confirmed, measures and all
        wf.confirm(s, actor(app, "manager1"), wid, "客户转向竞争对手")
        s.commit()


def test_write_flag_applies_a_past_as_of(app, dbs, user_id):
    with dbs() as s:
        c = make_customer(s, user_id("manager2"), created_on=datetime(1998, 1, 1))
        s.commit()
        cid, number = c.id, c.number
    runner = app.test_cli_runner()
    r = runner.invoke(args=["crm", "churn-check", "--as-of", "1999-01-01"])
    assert r.exit_code == 0 and number in r.output and "将新开流失预警" in r.output, r.output
    with dbs() as s:
        assert warnings_of(s, cid) == []
    r = runner.invoke(args=["crm", "churn-check", "--as-of", "1999-01-01", "--write"])
    assert r.exit_code == 0 and "预览" not in r.output, r.output
    with dbs() as s:
        ws = warnings_of(s, cid)
        assert [w.status for w in ws] == ["warning"]
        assert ws[0].warned_on == datetime(1999, 1, 1)


def test_recovery_needs_an_order_newer_than_the_warnings(app, dbs, user_id):
    """An order before the warning's last order never recovers it, whatever the as-of."""
    with dbs() as s:
        c = make_customer(s, user_id("manager1"))
        add_order(s, c.number, CUTOFF - timedelta(days=30))
        s.commit()
        cid = c.id
    (wid, _), = run_check(app, [cid])["opened"]
    for as_of in (CUTOFF, CUTOFF - timedelta(days=10), AS_OF - timedelta(days=90)):
        assert run_check(app, [cid], as_of=as_of)["recovered"] == []
    with dbs() as s:
        assert warnings_of(s, cid)[0].status == "warning"


def test_mistaken_recovery_is_reopened_with_its_measures(app, dbs, warned, user_id):
    """A warning recovered by the old rule (past as-of) comes back as the same 暂缓
    warning with its measures, instead of a fresh 预警 without them."""
    cid, wid = _delaying_with_measure(app, dbs, warned)
    past = datetime.combine(date.today() - timedelta(days=200), time())
    with dbs() as s:             # what the old code did on a past --as-of
        s.execute(ChurnWarning.__table__.update().where(ChurnWarning.id == wid)
                  .values(status="recovered", recovered_on=past, changed_by_fk=user_id("admin")))
        s.commit()
    summary = run_check(app, [cid], as_of=date.today())
    assert summary["reopened"] == [(wid, cid)] and summary["opened"] == []
    with dbs() as s:
        ws = warnings_of(s, cid)
        assert [(w.id, w.status, w.recovered_on) for w in ws] == [(wid, "delaying", None)]
        assert len(ws[0].measures) == 1
        assert (events_of(s, wid)[-1].action, events_of(s, wid)[-1].to_status) == \
            ("reopen", "delaying")
    again = run_check(app, [cid], as_of=date.today())
    assert again["reopened"] == [] and again["opened"] == []


def test_genuine_recovery_then_new_warning_shows_earlier_measures(app, dbs, web, warned):
    cid, wid = _delaying_with_measure(app, dbs, warned)
    with dbs() as s:
        number = s.get(Customer, cid).number
        add_order(s, number, date.today() - timedelta(days=1))
        s.commit()
    assert run_check(app, [cid], as_of=date.today())["recovered"] == [(wid, cid)]
    later = date.today() + timedelta(days=200)      # silent again for > 6 months
    summary = run_check(app, [cid], as_of=later)
    assert summary["reopened"] == [] and len(summary["opened"]) == 1
    new_id = summary["opened"][0][0]
    with dbs() as s:
        assert s.get(ChurnWarning, wid).status == "recovered"
        assert len(s.get(ChurnWarning, wid).measures) == 1
    page = web("manager1").get(f"/churn/show/{new_id}").get_data(as_text=True)
    assert "该客户以前的预警及暂缓措施" in page and "上门拜访，提供九折报价" in page


# ---- the rollup is refreshed first only when it is not fresh (issue 23) -----------------

def _preview(app, cid, **kw):
    from app.scheduler import run_churn_check
    with app.app_context():
        try:
            return run_churn_check(customer_ids=[cid], dry_run=True, **kw)
        finally:
            db.session.remove()


def _age_rollup(app, minutes):
    from app.models.rollup import RollupState
    with app.app_context():
        state = db.session.get(RollupState, 1)
        state.refreshed_at = datetime.now() - timedelta(minutes=minutes)
        db.session.commit()
        db.session.remove()


def test_churn_check_refreshes_the_rollup_only_when_not_fresh(app, dbs, user_id):
    """Fresh = refreshed no more than CHURN_ROLLUP_MAX_AGE (60) minutes ago: the check then
    reads it as it is (an order the sales system got since is not seen until the next
    refresh); older, missing, ``refresh=True`` or ``max_age=0`` → rebuilt first."""
    with dbs() as s:
        c = make_customer(s, user_id("manager1"))
        add_order(s, c.number, date.today() - timedelta(days=400))
        s.commit()
        cid, number = c.id, c.number
    assert app.config["CHURN_ROLLUP_MAX_AGE"] == 60
    first = _preview(app, cid)                        # no rollup yet: built first
    assert first["rollup"]["refreshed"] and (None, cid) in first["opened"]
    with dbs() as s:      # the customer ordered again, 40 days ago (not in this month, which
        add_order(s, number, date.today() - timedelta(days=40))   # a check may read raw)
        s.commit()
    fresh = _preview(app, cid)                        # fresh rollup: read as it is
    assert not fresh["rollup"]["refreshed"]
    assert fresh["rollup"]["refreshed_at"] == first["rollup"]["refreshed_at"]
    assert (None, cid) in fresh["opened"]             # that order is not in it yet
    forced = _preview(app, cid, refresh=True)
    assert forced["rollup"]["refreshed"] and forced["opened"] == []
    with dbs() as s:                                  # a later order, then the rollup ages
        add_order(s, number, date.today(), status=2)  # (not counted: changes nothing)
        s.commit()
    _age_rollup(app, 59)
    assert not _preview(app, cid)["rollup"]["refreshed"]
    _age_rollup(app, 61)
    stale = _preview(app, cid)
    assert stale["rollup"]["refreshed"] and stale["opened"] == []
    assert not _preview(app, cid, max_age=120)["rollup"]["refreshed"]
    assert _preview(app, cid, max_age=0)["rollup"]["refreshed"]


def test_cli_churn_check_refresh_options(app):
    runner = app.test_cli_runner()
    r = runner.invoke(args=["crm", "churn-check", "--preview", "--refresh"])
    assert r.exit_code == 0, r.output
    assert "本次检查前已重建" in r.output
    r = runner.invoke(args=["crm", "churn-check", "--preview"])
    assert r.exit_code == 0 and "足够新，未重建" in r.output, r.output
    r = runner.invoke(args=["crm", "churn-check", "--preview", "--max-age", "0"])
    assert r.exit_code == 0 and "本次检查前已重建" in r.output, r.output
    r = runner.invoke(args=["crm", "churn-check", "--preview", "--max-age", "-1"])
    assert r.exit_code != 0


@pytest.mark.parametrize("argv, views", [
    (["/srv/crm/.venv/bin/flask", "--app", "run", "crm", "churn-check"], False),
    (["flask", "--app", "run", "crm", "churn-check", "--as-of", "2026-01-01", "--write"], False),
    (["flask", "--app", "run", "crm", "rollup", "status"], False),
    (["flask", "--app", "run", "crm", "churn-check", "--help"], True),
    (["flask", "--app", "run", "crm", "--help"], True),
    (["flask", "--app", "run", "crm", "init"], True),
    (["flask", "--app", "run", "crm", "seed-demo", "--scale", "10"], True),
    (["flask", "--app", "run", "run"], True),
    (["/srv/crm/.venv/bin/gunicorn", "run:app"], True),
    ([], True),
])
def test_cli_commands_that_start_without_views(argv, views):
    from app import cli_needs_views
    assert cli_needs_views(argv) is views


def test_an_app_without_views_runs_the_churn_check(app, tmp_path):
    """What ``flask --app run crm churn-check`` builds: no pages or APIs, the command works."""
    from app import create_app
    light = create_app({**{k: app.config[k] for k in (
        "SQLALCHEMY_DATABASE_URI", "SALES_DATABASE_URI", "SECRET_KEY")},
        "INSTANCE_DIR": str(tmp_path), "SCHEDULER_ENABLED": False, "TESTING": True}, views=False)
    rules = {r.rule for r in light.url_map.iter_rules()}
    assert "/customer/list/" not in rules and not any(r.startswith("/api/v1/customer") for r in rules)
    r = light.test_cli_runner().invoke(args=["crm", "churn-check", "--preview", "--refresh"])
    assert r.exit_code == 0, r.output
    assert "预览结束，数据库未改变" in r.output
    with light.app_context():
        for engine in db.engines.values():
            engine.dispose()
