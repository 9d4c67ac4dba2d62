"""工作台 and notifications (issue 20): counts per role that match the lists behind them,
own-only notifications, mail switches, the mailer's SMTP-down path, the digest's
once-a-day guarantee, deactivated users."""
import re
import uuid
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Notification
from app.scheduler import business_today, digest_job, notification_mail_job
from app.workflows import notifications as nwf
from tests import factories as f
from tests.conftest import PASSWORD, WebClient
from tests.test_mail import smtp, smtp_server  # noqa: F401  (fixtures)


def new_user(app, role, active=True):
    name = "u" + uuid.uuid4().hex[:8]
    with app.app_context():
        sm = app.appbuilder.sm
        u = sm.add_user(name, "测", name, f"{name}@demo.crm", sm.find_role(role), password=PASSWORD)
        u.active = active
        db.session.commit()
        uid = u.id
        db.session.remove()
    return name, uid


def api_client(app, username):
    c = app.test_client()
    r = c.post("/api/v1/security/login", json={"username": username, "password": PASSWORD,
                                               "provider": "db"})
    assert r.status_code == 200, r.text
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {r.json['access_token']}"
    return c


@pytest.fixture
def manager(app, dbs, user_id):
    """A fresh 客户经理 with one item of each kind on the 工作台."""
    name, uid = new_user(app, "客户经理")
    with app.app_context():
        today = business_today(app)
    with dbs() as s:
        sup = user_id("supervisor")
        cust = f.customer(s, uid, name=f"工作台客户{uuid.uuid4().hex[:6]}")
        opp = f.opportunity(s, sup, status="assigned", assignee_id=uid)
        for d, result in ((today, None), (today, None), (today - timedelta(days=3), None),
                          (today - timedelta(days=5), "已完成"), (today + timedelta(days=2), None),
                          (today + timedelta(days=9), None)):
            f.plan_item(s, opp, uid, date=d, result=result)
        f.opportunity(s, sup, status="assigned", assignee_id=uid)          # no plan yet
        f.service(s, cust, sup, status="assigned", assignee_id=uid, assigned_on=datetime.now() - timedelta(days=4))
        from app.models import ChurnWarning
        w = ChurnWarning(customer_id=cust.id, manager_id=uid, warned_on=datetime.now(), status="warning")
        f._audit(w, sup)
        s.add(w)
        s.commit()
    return name, uid


def test_manager_dashboard_counts_match_their_lists(app, manager):
    name, uid = manager
    c = api_client(app, name)
    data = c.get("/api/v1/dashboard/").json
    assert data["counts"] == {"plan_today": 2, "plan_overdue": 1, "plan_week": 1,
                              "opps_without_plan": 1, "tickets_mine": 1, "churn_mine": 1}
    assert data["oldest_ticket_days"] == 4
    assert "kpi" not in data and "manager_load" not in data and "system" not in data
    web = WebClient(app, name)
    page = web.get("/")
    assert page.status_code == 200 and "工作台" in page.text
    for key, n in data["counts"].items():
        assert f'data-key="{key}"' in page.text
        lst = web.get(f"/dashboard/list/{key}")
        assert lst.status_code == 200
        assert f"共 {n} 条" in lst.text, key
    assert "已逾期 3 天" in web.get("/dashboard/list/plan_overdue").text   # the red overdue mark


def test_tiles_of_other_roles_are_refused(app, manager):
    name, _ = manager
    web = WebClient(app, name)
    assert web.get("/dashboard/list/opps_unassigned").status_code == 403
    assert web.get("/dashboard/list/nosuch").status_code == 404
    assert web.get("/dashboard/list/plan_today?page=abc").status_code == 400
    anon = app.test_client()
    assert anon.get("/dashboard/list/plan_today").status_code in (302, 401)
    assert anon.get("/api/v1/dashboard/").status_code == 401


def test_supervisor_executive_and_admin_dashboards(app, api):
    sup = api("supervisor").get("/api/v1/dashboard/").json
    assert {"opps_unassigned", "tickets_unassigned", "tickets_returned", "tickets_orphaned"} <= set(sup["counts"])
    assert isinstance(sup["manager_load"], list) and sup["manager_load"]
    assert {"orders_by_month", "new_customers_by_month", "churn_by_quarter", "open_tickets_by_age"} <= set(sup["kpi"])
    assert len(sup["kpi"]["orders_by_month"]["this_year"]) == 12
    ex = api("exec").get("/api/v1/dashboard/").json
    assert ex["counts"] == {} and "kpi" in ex
    adm = api("admin").get("/api/v1/dashboard/").json
    assert {"churn", "mail_fetch", "backup", "digest"} <= set(adm["system"]["jobs"])
    assert "failed_mails" in adm["system"] and "locked_accounts" in adm["system"]


def test_tickets_of_deactivated_users_show_for_the_supervisor(app, api, dbs, user_id):
    name, uid = new_user(app, "客户经理")
    before = api("supervisor").get("/api/v1/dashboard/").json["counts"]["tickets_orphaned"]
    with dbs() as s:
        cust = f.customer(s, user_id("manager1"))
        f.service(s, cust, user_id("supervisor"), status="assigned", assignee_id=uid)
        s.commit()
    with app.app_context():
        u = app.appbuilder.sm.get_user_by_id(uid)
        u.active = False
        db.session.commit()
        db.session.remove()
    assert api("supervisor").get("/api/v1/dashboard/").json["counts"]["tickets_orphaned"] == before + 1


# ---- notifications --------------------------------------------------------------------
def _notify(app, uid, kind="opportunity_assigned", title="测试通知", link="/opportunity/list/", **kw):
    with app.app_context():
        n = nwf.notify(db.session, uid, kind, title, link=link, **kw)
        db.session.commit()
        nid = n.id if n else None
        db.session.remove()
    return nid


def test_notifications_are_own_only_html_and_api(app):
    a, a_id = new_user(app, "客户经理")
    b, _ = new_user(app, "客户经理")
    nid = _notify(app, a_id, title="机会 XS1 指派给您")
    ca, cb = api_client(app, a), api_client(app, b)
    r = ca.get("/api/v1/notification/")
    assert r.status_code == 200 and r.json["unread"] == 1 and r.json["result"][0]["title"] == "机会 XS1 指派给您"
    assert cb.get("/api/v1/notification/").json["count"] == 0
    assert cb.post(f"/api/v1/notification/{nid}/read").status_code == 403
    assert cb.post("/api/v1/notification/999999999/read").status_code == 404
    wb = WebClient(app, b)
    assert wb.post_form(f"/notifications/{nid}/read", {}, form_url="/notifications/").status_code == 403
    assert ca.get("/api/v1/notification/").json["unread"] == 1          # nothing changed
    # the bell shows the count; opening the notice marks it read and lands on its link
    wa = WebClient(app, a)
    page = wa.get("/notifications/")
    assert 'id="crm-bell"' in page.text and re.search(r'crm-bell-count">1<', page.text)
    r = wa.post_form(f"/notifications/{nid}/read", {"go": "1"}, form_url="/notifications/")
    assert r.status_code == 302 and r.headers["Location"].endswith("/opportunity/list/")
    assert ca.get("/api/v1/notification/").json["unread"] == 0
    _notify(app, a_id)
    _notify(app, a_id)
    assert ca.post("/api/v1/notification/read_all").json["marked"] == 2
    assert ca.get("/api/v1/notification/?unread=1").json["count"] == 0


def test_deactivated_users_get_nothing(app):
    _, uid = new_user(app, "客户经理", active=False)
    assert _notify(app, uid) is None


def test_mail_settings_per_kind(app):
    name, uid = new_user(app, "客户经理")
    c = api_client(app, name)
    assert all(c.get("/api/v1/notification/settings").json["result"].values())
    r = c.put("/api/v1/notification/settings", json={"ticket_assigned": False})
    assert r.status_code == 200 and r.json["result"]["ticket_assigned"] is False
    for bad in ({"nosuch": True}, {"ticket_assigned": "yes"}, ["x"]):
        r = c.put("/api/v1/notification/settings", json=bad)
        assert r.status_code == 400 and re.search(r"[\u4e00-\u9fff]", r.json["message"])
    with app.app_context():
        n1 = nwf.notify(db.session, uid, "ticket_assigned", "服务分配")
        n2 = nwf.notify(db.session, uid, "opportunity_assigned", "机会指派")
        assert (n1.mail_status, n2.mail_status) == ("none", "pending")
        db.session.rollback()
        db.session.remove()
    web = WebClient(app, name)
    r = web.post_form("/notifications/settings", {"mail_ticket_assigned": "1"})
    assert r.status_code == 302
    assert c.get("/api/v1/notification/settings").json["result"]["opportunity_assigned"] is False


def test_mailer_sends_and_survives_smtp_down(app, smtp, monkeypatch):  # noqa: F811
    name, uid = new_user(app, "客户经理")
    nid = _notify(app, uid, title="服务 FW1 分配给您", link="/service/handle/")
    good_port = app.config["MAIL_PORT"]
    monkeypatch.setitem(app.config, "MAIL_PORT", 9)          # nothing listens: SMTP down
    sent, failed = notification_mail_job(app)
    assert failed >= 1
    with app.app_context():
        n = db.session.get(Notification, nid)
        assert n.mail_status == "failed" and n.mail_attempts == 1 and n.mail_error
        assert n.read_on is None                       # the in-app notice is there regardless
        n.mail_next_try = datetime.now() - timedelta(seconds=1)   # its retry is due
        db.session.commit()
        db.session.remove()
    monkeypatch.setitem(app.config, "MAIL_PORT", good_port)
    notification_mail_job(app)
    with app.app_context():
        n = db.session.get(Notification, nid)
        assert n.mail_status == "sent" and n.mail_attempts == 2
        db.session.remove()
    import email
    from email import policy
    got = [email.message_from_bytes(content, policy=policy.default)
           for _f, rcpts, content in smtp.messages if f"{name}@demo.crm" in rcpts]
    assert len(got) == 1 and "服务 FW1 分配给您" in str(got[0]["Subject"])


def test_digest_once_a_day_even_when_run_twice_or_after_a_kill(app, manager, smtp):  # noqa: F811
    name, uid = manager
    with app.app_context():
        today = business_today(app)
    digest_job(app, day=today, send=lambda *a: None)
    digest_job(app, day=today, send=lambda *a: None)
    with app.app_context():
        rows = db.session.scalars(select(Notification).where(
            Notification.user_id == uid, Notification.kind == "digest")).all()
        assert len(rows) == 1 and "今天到期 2 项，已逾期 1 项" in rows[0].title
        assert rows[0].mail_status in ("sent", "none")
        # a run killed after the notices were made but before mailing: the rerun mails
        # each pending digest once and makes no second notice
        db.session.execute(Notification.__table__.update().where(Notification.id == rows[0].id)
                           .values(mail_status="pending", mail_attempts=0))
        db.session.commit()
        db.session.remove()
    calls = []
    digest_job(app, day=today, send=lambda to, subj, body: calls.append(to))
    digest_job(app, day=today, send=lambda to, subj, body: calls.append(to))
    assert calls.count(f"{name}@demo.crm") == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Notification).where(
            Notification.user_id == uid, Notification.kind == "digest")) == 1
        db.session.remove()


# ---- every notice kind, raised by the workflow step in its transaction -----------------
def _notices(app, uid, kind):
    with app.app_context():
        rows = db.session.scalars(select(Notification).where(
            Notification.user_id == uid, Notification.kind == kind).order_by(Notification.id)).all()
        out = [(n.title, n.link) for n in rows]
        db.session.remove()
    return out


def test_opportunity_assigned_notice(app, api, dbs, user_id):
    name, uid = new_user(app, "客户经理")
    with dbs() as s:
        opp = f.opportunity(s, user_id("manager1"))
        s.commit()
        oid, number = opp.id, opp.number
    r = api("supervisor").post(f"/api/v1/opportunity/{oid}/assign", json={"assignee_id": uid})
    assert r.status_code == 200, r.json
    assert _notices(app, uid, "opportunity_assigned") == [
        (f"销售机会 {number}（{opp.customer_name}）指派给您开发", f"/opportunity/plan/{oid}")]
    # a refused step raises nothing: the second assign is a 409 and no second notice
    assert api("supervisor").post(f"/api/v1/opportunity/{oid}/assign",
                                  json={"assignee_id": uid}).status_code == 409
    assert len(_notices(app, uid, "opportunity_assigned")) == 1
    c = api_client(app, name)
    assert c.get("/api/v1/notification/").json["result"][0]["link"] == f"/opportunity/plan/{oid}"


def test_ticket_assigned_reassigned_returned_archived_notices(app, api, dbs, user_id):
    a, a_id = new_user(app, "客户经理")
    b, b_id = new_user(app, "客户经理")
    with dbs() as s:
        cust = f.customer(s, user_id("manager1"))
        s.commit()
        cid = cust.id
    r = api("manager1").post("/api/v1/service/", json={
        "service_type": "投诉", "summary": "打印机卡纸", "customer_id": cid, "request": "卡纸三次"})
    tid = r.json["id"]
    assert api("supervisor").post(f"/api/v1/service/{tid}/assign", json={"assignee_id": a_id}).status_code == 200
    assert [t for t, _ in _notices(app, a_id, "ticket_assigned")] == [
        f"服务 {r.json['result']['number']}（打印机卡纸）分配给您处理"]
    assert api("supervisor").post(f"/api/v1/service/{tid}/reassign", json={"assignee_id": b_id}).status_code == 200
    assert len(_notices(app, b_id, "ticket_assigned")) == 1
    cb = api_client(app, b)
    assert cb.post(f"/api/v1/service/{tid}/handle", json={"handling": "上门清理"}).status_code == 200
    assert api("manager1").post(f"/api/v1/service/{tid}/feedback",
                                json={"result": "还是卡", "satisfaction": 2}).status_code == 200
    assert [l for _, l in _notices(app, b_id, "ticket_returned")] == [f"/service/handle/{tid}"]
    assert cb.post(f"/api/v1/service/{tid}/handle", json={"handling": "更换搓纸轮"}).status_code == 200
    assert api("manager1").post(f"/api/v1/service/{tid}/feedback",
                                json={"result": "好了", "satisfaction": 5}).status_code == 200
    archived = _notices(app, user_id("manager1"), "ticket_archived")
    assert archived and archived[-1][1] == f"/service/archive/{tid}"


def test_churn_run_gives_each_manager_one_notice(app, dbs, user_id):
    from tests.test_churn import run_check

    name, uid = new_user(app, "客户经理")
    with dbs() as s:
        prod = f.product(s)
        ids = []
        for i in range(3):
            c = f.customer(s, uid)
            f.order(s, c.number, [(prod, 1, 100)], day=date(2029, 1, 10 + i))
            ids.append(c.id)
        s.commit()
    run_check(app, ids)
    notes = _notices(app, uid, "churn_warnings")
    assert notes == [("流失检查：您有 3 个客户出现流失预警", "/churn/list/")]
    run_check(app, ids)                     # nothing new: no second notice
    assert len(_notices(app, uid, "churn_warnings")) == 1


def test_overdue_marks_on_plan_pages_and_ticket_list(app, manager):
    from app.models import Opportunity, PlanItem

    name, uid = manager
    with app.app_context():
        opp_id = db.session.scalar(select(Opportunity.id).join(PlanItem).where(
            Opportunity.assignee_id == uid).limit(1))
        db.session.remove()
    web = WebClient(app, name)
    for url in (f"/opportunity/execute/{opp_id}", f"/opportunity/plan/{opp_id}",
                f"/opportunity/show/{opp_id}"):
        page = web.get(url).text
        assert "已逾期 3 天" in page and "crm-overdue" in page, url
        assert "已逾期 5 天" not in page      # an item with 执行效果 is done, not overdue
    assert "已等 4 天" in web.get("/service/handle/").text


def test_notification_mail_subject_cannot_carry_a_header(app, smtp):  # noqa: F811
    """A legacy customer name with CR/LF in a notice title stays one subject line."""
    import email
    from email import policy

    name, uid = new_user(app, "客户经理")
    _notify(app, uid, title="服务 FW9 分配给您\r\nBcc: spy@evil.example")
    sent, failed = notification_mail_job(app)
    assert failed == 0
    got = [email.message_from_bytes(content, policy=policy.default)
           for _f, rcpts, content in smtp.messages if f"{name}@demo.crm" in rcpts]
    assert len(got) == 1 and got[0]["Bcc"] is None
    assert "\n" not in str(got[0]["Subject"]) and "服务 FW9 分配给您" in str(got[0]["Subject"])
