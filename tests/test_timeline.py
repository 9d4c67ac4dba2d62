"""客户动态 (app/workflows/timeline.py): one feed, newest first, over every kind; paged,
filtered by kind, only what the caller may read; the page section and the API."""
import hashlib
from datetime import date, datetime, time, timedelta

import pytest

from app.models import (ChurnMeasure, ChurnWarning, Customer, Document, DocumentBlob,
                        MailMessage)
from tests import factories as f

KIND_ORDER = ["change", "document", "mail", "ticket", "activity", "measure", "churn",
              "opportunity"]


def _at(day0, days, hour):
    return datetime.combine(day0 + timedelta(days=days), time(hour, 0))


def _blob(s, content):
    sha = hashlib.sha256(content).hexdigest()
    if s.get(DocumentBlob, sha) is None:
        s.add(DocumentBlob(sha256=sha, size=len(content), mime="application/pdf",
                           created_on=datetime.now()))
        s.flush()
    return sha


def document(s, customer, uploader_id, name, when):
    sha = _blob(s, name.encode())
    d = Document(customer_id=customer.id, name=name, version=1, sha256=sha, size=10,
                 mime="application/pdf", created_by_fk=uploader_id, changed_by_fk=uploader_id,
                 created_on=when, changed_on=when)
    s.add(d)
    s.flush()
    return d


@pytest.fixture
def story(app, dbs, user_id, uniq):
    """A customer of manager1 with one record of every kind, each on its own day
    (day0 = 20 days ago): opportunity < churn < measure < activity < ticket < mail <
    document < the customer's own insert record (now)."""
    m1 = user_id("manager1")
    day0 = date.today() - timedelta(days=20)
    with dbs() as s:
        c = f.customer(s, m1, name=f"动态测试{uniq()}有限公司")
        opp = f.opportunity(s, m1, status="succeeded", assignee_id=m1, customer_id=c.id,
                            summary="采购一批打印机", changed_on=_at(day0, 0, 9))
        w = ChurnWarning(customer_id=c.id, manager_id=m1, warned_on=_at(day0, 1, 8),
                         status="delaying", reason=None, last_order_date=day0,
                         created_by_fk=m1, changed_by_fk=m1)
        s.add(w)
        s.flush()
        m = ChurnMeasure(warning_id=w.id, text="上门拜访，送优惠券", created_by_fk=m1,
                         changed_by_fk=m1, created_on=_at(day0, 1, 12))
        s.add(m)
        a = f.activity(s, c, m1, date=day0 + timedelta(days=2), summary="上门拜访",
                       place="客户公司")
        t = f.service(s, c, m1, summary="打印机卡纸", created_on=_at(day0, 3, 10))
        mail = MailMessage(owner_id=m1, status="sent", subject="报价单", body="您好",
                           sender="manager1@example.com", recipients="li@example.com",
                           customer_id=c.id, sent_on=_at(day0, 4, 10),
                           created_by_fk=m1, changed_by_fk=m1)
        s.add(mail)
        d = document(s, c, m1, f"合同{uniq()}.pdf", _at(day0, 5, 10))
        s.commit()
        return {"customer": c.id, "opportunity": opp.id, "warning": w.id, "measure": m.id,
                "activity": a.id, "ticket": t.id, "mail": mail.id, "document": d.id,
                "number": c.number}


def _all(client, cid, **args):
    r = client.get(f"/api/v1/customer/{cid}/timeline", query_string=args)
    assert r.status_code == 200, r.text
    return r.json


def test_feed_is_newest_first_across_kinds_with_links(api, story):
    body = _all(api("admin"), story["customer"])
    kinds = [e["kind"] for e in body["result"]]
    assert kinds == KIND_ORDER, kinds
    assert body["count"] == 8 and body["page"] == 0 and body["page_size"] == 20
    assert body["counts"] == {k: 1 for k in KIND_ORDER}
    by_kind = {e["kind"]: e for e in body["result"]}
    assert by_kind["ticket"]["url"] == f"/service/archive/{story['ticket']}"
    assert by_kind["mail"]["url"] == f"/mail/show/{story['mail']}"
    assert by_kind["document"]["url"] == f"/documents/download/{story['document']}"
    assert by_kind["churn"]["url"] == f"/churn/show/{story['warning']}"
    assert by_kind["measure"]["url"] == f"/churn/show/{story['warning']}"
    assert by_kind["activity"]["url"].endswith(f"#activity-{story['activity']}")
    assert by_kind["activity"]["all_day"] is True and by_kind["mail"]["all_day"] is False
    assert by_kind["opportunity"]["url"].endswith(f"/{story['opportunity']}")
    assert by_kind["change"]["title"] == "新建客户"
    assert by_kind["measure"]["text"] == "上门拜访，送优惠券"
    assert by_kind["activity"]["user_name"] and by_kind["ticket"]["title"].endswith("打印机卡纸")


def test_field_changes_come_from_the_audit_log(api, story):
    mgr = api("manager1")
    r = mgr.put(f"/api/v1/customer/{story['customer']}", json={"phone": "010-87654321"})
    assert r.status_code == 200, r.text
    first = _all(mgr, story["customer"])["result"][0]
    assert first["kind"] == "change" and first["title"] == "修改客户信息"
    assert "电话" in first["text"] and "010-87654321" in first["text"]


def test_paging_cuts_the_merged_feed_without_gaps_or_repeats(api, story):
    client = api("admin")
    whole = [(e["kind"], e["id"]) for e in _all(client, story["customer"])["result"]]
    pages = [_all(client, story["customer"], page=p, page_size=3) for p in range(4)]
    got = [(e["kind"], e["id"]) for p in pages for e in p["result"]]
    assert got == whole
    assert [len(p["result"]) for p in pages] == [3, 3, 2, 0]
    assert all(p["count"] == 8 for p in pages)


def test_kind_filter(api, story):
    client = api("admin")
    body = _all(client, story["customer"], kind="mail")
    assert [e["kind"] for e in body["result"]] == ["mail"] and body["kind"] == "mail"
    assert body["count"] == 1 and body["counts"]["document"] == 1   # the other kinds' counts stay
    assert _all(client, story["customer"], kind="all")["count"] == 8


@pytest.mark.parametrize("args, field", [
    ({"kind": "nope"}, "kind"), ({"kind": "<script>"}, "kind"),
    ({"page": "abc"}, "page"), ({"page": "-1"}, "page"), ({"page": "99999999"}, "page"),
    ({"page": "1e3"}, "page"), ({"page_size": "0"}, "page_size"),
    ({"page_size": "100000"}, "page_size"), ({"page_size": "x"}, "page_size"),
])
def test_bad_input_is_a_400_in_chinese(api, story, args, field):
    r = api("manager1").get(f"/api/v1/customer/{story['customer']}/timeline", query_string=args)
    assert r.status_code == 400, r.text
    assert r.json["field"] == field
    assert any("\u4e00" <= ch <= "\u9fff" for ch in r.json["message"])


def test_unknown_customer_404_anonymous_401(api, story):
    assert api("manager1").get("/api/v1/customer/2147483000/timeline").status_code == 404
    assert api().get(f"/api/v1/customer/{story['customer']}/timeline").status_code == 401


def test_another_manager_sees_no_restricted_document_and_no_churn(api, story, dbs, user_id,
                                                                  uniq):
    """manager2 reads manager1's customer, but not its documents (DOCUMENT_READ_SCOPE
    restricted) nor its churn warnings and measures (a 客户经理: own customers only)."""
    m2 = user_id("manager2")
    body = _all(api("manager2"), story["customer"])
    kinds = {e["kind"] for e in body["result"]}
    assert kinds == {"change", "mail", "ticket", "activity", "opportunity"}, kinds
    assert "document" not in body["counts"] or body["counts"]["document"] == 0
    assert body["counts"].get("churn", 0) == 0 and body["counts"].get("measure", 0) == 0
    # even filtered on the kind
    assert _all(api("manager2"), story["customer"], kind="document")["result"] == []
    # a document manager2 uploaded himself is his to see
    with dbs() as s:
        c = s.get(Customer, story["customer"])
        own = document(s, c, m2, f"自己的{uniq()}.pdf", datetime.now())
        s.commit()
        own_id = own.id
    docs = _all(api("manager2"), story["customer"], kind="document")["result"]
    assert [d["id"] for d in docs] == [own_id]
    # the owner sees both
    assert _all(api("manager1"), story["customer"], kind="document")["count"] == 2


def test_mail_of_nobody_elses_mailbox_stays_private(api, story, dbs, user_id):
    """Mail not linked to the customer never shows; the feed shows the customer's mail
    to whoever the mail module lets read it (all staff: it belongs to a customer)."""
    with dbs() as s:
        s.add(MailMessage(owner_id=user_id("manager1"), status="sent", subject="私人邮件",
                          sender="manager1@example.com", recipients="x@example.com",
                          customer_id=None, sent_on=datetime.now(),
                          created_by_fk=user_id("manager1"), changed_by_fk=user_id("manager1")))
        s.commit()
    titles = [e["title"] for e in _all(api("manager2"), story["customer"], kind="mail")["result"]]
    assert titles == ["报价单"]


def test_customer_page_shows_the_feed_filter_and_paging(web, story):
    page = web("manager1").get(f"/customer/show/{story['customer']}")
    assert page.status_code == 200
    html = page.text
    assert 'id="timeline"' in html and "客户动态" in html
    assert html.count("crm-tl-entry") == 8
    assert f'href="/mail/show/{story["mail"]}"' in html
    assert "?tl_kind=mail#timeline" in html
    only = web("manager1").get(f"/customer/show/{story['customer']}?tl_kind=ticket").text
    assert only.count("crm-tl-entry") == 1
    # the origin opportunity is linked from the customer page
    assert f"/opportunity/show/{story['opportunity']}" in html or \
        f"/{story['opportunity']}\"" in html


def test_customer_page_with_bad_feed_arguments_is_a_400_page_not_5xx(web, story):
    for q in ("tl_kind=nope", "tl_page=abc", "tl_page=-3", "tl_page=9999999"):
        r = web("manager1").get(f"/customer/show/{story['customer']}?{q}")
        assert r.status_code == 400, q
        assert "客户动态" in r.text and "基本信息" in r.text, q   # the page is still there
    # beyond any INTEGER: refused before the page (app/views/request_args.py), in Chinese
    r = web("manager1").get(f"/customer/show/{story['customer']}?tl_page=999999999999")
    assert r.status_code == 400 and "太大" in r.text


def test_another_manager_page_has_no_restricted_entries(web, story):
    html = web("manager2").get(f"/customer/show/{story['customer']}").text
    feed = html.split('id="timeline"', 1)[1].split("crm-section", 1)[0]
    assert feed.count("crm-tl-entry") == 5
    assert f"/documents/download/{story['document']}" not in feed
    assert f"/churn/show/{story['warning']}" not in feed


def test_customer_link_helper_for_the_opportunity_page(app, story):
    with app.test_request_context():
        link = app.jinja_env.globals["customer_link"]
        html = str(link(story["customer"]))
        assert f'href="/customer/show/{story["customer"]}"' in html and story["number"] in html
        assert link(None) == ""


def test_queries_are_limited_and_do_not_grow_with_the_history(app, api, story, dbs, user_id):
    """Every source query carries a LIMIT; 30 more records change no statement count."""
    from tests.test_customers import count_statements

    client = api("admin")
    url = f"/api/v1/customer/{story['customer']}/timeline"
    seen = []

    def capture():
        from sqlalchemy import event

        from app.extensions import db

        def listener(conn, cursor, statement, params, context, executemany):
            seen.append(statement)
        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", listener)
        try:
            assert client.get(url, query_string={"page_size": 5}).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", listener)

    def call():
        assert client.get(url, query_string={"page_size": 5}).status_code == 200

    before = count_statements(app, call)
    with dbs() as s:
        c = s.get(Customer, story["customer"])
        for i in range(15):
            f.activity(s, c, user_id("manager1"), summary=f"第{i}次拜访")
            f.service(s, c, user_id("manager1"), summary=f"第{i}个问题")
        s.commit()
    assert count_statements(app, call) == before
    capture()
    feed_selects = [q for q in seen if "ORDER BY" in q and ("crm_activity" in q or "crm_service" in q)]
    assert feed_selects and all("LIMIT" in q for q in feed_selects)
