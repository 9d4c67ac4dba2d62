"""The custom (non-FAB) lists work like the FAB lists (issue 21, docs/modules/lists.md
"其他列表"): 服务处理 / 服务反馈 / 服务归档, 文档管理, 我的邮箱 and a customer's contacts have
the 快速搜索 (escaped substring of their key columns, shared with their REST lists) and,
where they have tabs, the tab is remembered per user; paging keeps search and tab;
bad input is a clear page or a Chinese 400, never a 5xx; rights are unchanged."""
import io
import re
from datetime import datetime, timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import delete, func, select

from app.models import MailMessage, Notification, ServiceTicket, WorkflowEvent
from app.models.list_prefs import ListPreference
from app.workflows import quick_search

from . import factories as f
from .test_documents import pdf_bytes, upload
from .test_service import actor, customer, ticket  # noqa: F401 (fixtures)

NASTY = ["%", "_", "'", "\\", "\\%", "%_'\"", "a" * 500, "<script>", "' OR 1=1 --", "　",
         "🙂", "\x00", "a\x00b", "\x07\x1b", "\r\n"]
LIST_KEYS = ("ServiceHandleView", "ServiceFeedbackView", "ServiceArchiveView", "DocumentView",
             "MailView")


@pytest.fixture(autouse=True)
def _clean(dbs, user_id):
    """Forget the tabs chosen here (other tests open these lists without ``?tab=``) and
    remove the tickets made here (they would fill other tests' lists)."""
    with dbs() as s:
        start = s.scalar(select(func.max(ServiceTicket.id))) or 0
    yield
    with dbs() as s:
        s.execute(delete(ListPreference).where(ListPreference.list_key.in_(LIST_KEYS)))
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


def _remembered(dbs, uid, key):
    with dbs() as s:
        return s.scalar(select(ListPreference.tab).where(
            ListPreference.user_id == uid, ListPreference.list_key == key))


def _shown(html, names):
    return {k for k, n in names.items() if n in html}


def _numbers(dbs, ids):
    with dbs() as s:
        return {k: s.get(ServiceTicket, v).number for k, v in ids.items()}


# ---- the shared match --------------------------------------------------------------------

def test_quick_search_words_and_control_characters():
    assert quick_search.terms("  北京\x00科技\t公司 ") == ["北京", "科技", "公司"]
    assert quick_search.terms("\x00\x1b") == []
    assert quick_search.terms("a b c d e f g") == ["a", "b", "c", "d", "e"]
    assert quick_search.parse("x" * 100) == "x" * 100
    with pytest.raises(quick_search.ValidationError) as e:
        quick_search.parse("x" * 101)
    assert "太长" in str(e.value.message)


# ---- 服务处理 / 服务反馈 / 服务归档 ---------------------------------------------------------------

@pytest.fixture
def tickets(ticket, customer, uniq):
    """Tickets of every list, all tagged: the handle list (manager2's), the feedback
    list (handled, by manager2, created by manager1 / supervisor) and the archive."""
    tag = uniq("列表搜")
    c1 = customer(uniq(f"{tag}甲公司"))
    c2 = customer(uniq("乙公司"))
    past = datetime.now() - timedelta(hours=5)
    ids = {
        # 服务处理 (assigned to manager2)
        "h_pct": ticket("assigned", customer_id=c2[0], summary=f"{tag} 100%_卡纸"),
        "h_x": ticket("assigned", customer_id=c2[0], summary=f"{tag} 100x卡纸"),
        "h_cust": ticket("assigned", customer_id=c1[0], summary="硒鼓"),
        "h_late": ticket("assigned", customer_id=c2[0], summary=f"{tag} 超时",
                         response_due=past, resolution_due=past + timedelta(hours=1)),
        "h_back": ticket("assigned", customer_id=c2[0], summary=f"{tag} 退回", sla_round=2),
        "h_other": ticket("assigned", assignee="manager1", customer_id=c2[0],
                          summary=f"{tag} 别人的"),
        # 服务反馈 (handled by manager2)
        "f_m1": ticket("handled", customer_id=c2[0], summary=f"{tag} 反馈甲"),
        "f_sup": ticket("handled", creator="supervisor", customer_id=c2[0],
                        summary=f"{tag} 反馈乙"),
        # 服务归档
        "a_done": ticket("archived", customer_id=c2[0], summary=f"{tag} 已归档的"),
        "a_new": ticket("created", customer_id=c2[0], summary=f"{tag} 新建的"),
        "a_late": ticket("created", customer_id=c2[0], summary=f"{tag} 逾期的",
                         response_due=past),
    }
    return tag, ids, c1, c2


def test_handle_list_search_escaping_filters_and_tabs(web, tickets, dbs, user_id):
    tag, ids, c1, c2 = tickets
    nums = _numbers(dbs, ids)
    handle = {k: v for k, v in nums.items() if k.startswith("h_")}
    w = web("manager2")
    r = w.get(f"/service/handle/?search={quote(tag)}")
    assert r.status_code == 200
    # 概要 or the customer's name (c1 carries the tag); never another user's ticket
    assert _shown(r.text, handle) == {"h_pct", "h_x", "h_cust", "h_late", "h_back"}
    # % and _ are literal
    assert _shown(w.get(f"/service/handle/?search={quote(tag + ' 100%_')}").text,
                  handle) == {"h_pct"}
    assert _shown(w.get(f"/service/handle/?search={quote(tag + ' 100_')}").text,
                  handle) == set()
    # 编号 in any case; the customer's name alone
    assert _shown(w.get(f"/service/handle/?search={nums['h_x'].lower()}").text,
                  handle) == {"h_x"}
    assert _shown(w.get(f"/service/handle/?search={quote(c1[1])}").text, handle) == {"h_cust"}
    # the filters of the service lists
    assert _shown(w.get(f"/service/handle/?search={quote(tag)}&overdue=1").text,
                  handle) == {"h_late"}
    # tabs, remembered for this user only
    uid = user_id("manager2")
    assert _shown(w.get(f"/service/handle/?search={quote(tag)}&tab=returned").text,
                  handle) == {"h_back"}
    assert _remembered(dbs, uid, "ServiceHandleView") == "returned"
    page = w.get(f"/service/handle/?search={quote(tag)}")
    assert _shown(page.text, handle) == {"h_back"}
    assert re.search(r'<li role="presentation" class="active"><a href="[^"]*tab=returned',
                     page.text)
    # the tab links keep the search
    assert re.search(r'href="[^"]*search=[^"]*tab=overdue|href="[^"]*tab=overdue[^"]*search=',
                     page.text)
    assert _shown(w.get(f"/service/handle/?search={quote(tag)}&tab=overdue").text,
                  handle) == {"h_late"}
    assert _remembered(dbs, user_id("manager1"), "ServiceHandleView") is None
    # an unknown tab is ignored (the remembered one applies)
    r = w.get(f"/service/handle/?search={quote(tag)}&tab=nope")
    assert r.status_code == 200 and _shown(r.text, handle) == {"h_late"}
    # manager1 sees only his own ticket
    r = web("manager1").get(f"/service/handle/?search={quote(tag)}&tab=all")
    assert _shown(r.text, handle) == {"h_other"}


def test_feedback_list_search_and_tabs(web, tickets, dbs):
    tag, ids, c1, c2 = tickets
    nums = {k: v for k, v in _numbers(dbs, ids).items() if k.startswith("f_")}
    sup = web("supervisor")
    assert _shown(sup.get(f"/service/feedback/?search={quote(tag)}&tab=all").text,
                  nums) == {"f_m1", "f_sup"}
    assert _shown(sup.get(f"/service/feedback/?search={quote(tag)}&tab=created").text,
                  nums) == {"f_sup"}
    # remembered: 我创建的 again without ?tab=
    assert _shown(sup.get(f"/service/feedback/?search={quote(tag)}").text, nums) == {"f_sup"}
    assert _shown(sup.get(f"/service/feedback/?search={quote(tag + ' 反馈甲')}&tab=all").text,
                  nums) == {"f_m1"}
    # manager1 created f_m1 only; manager2 handled both
    m1 = web("manager1")
    assert _shown(m1.get(f"/service/feedback/?search={quote(tag)}").text, nums) == {"f_m1"}
    m2 = web("manager2")
    assert _shown(m2.get(f"/service/feedback/?search={quote(tag)}&tab=handled").text,
                  nums) == {"f_m1", "f_sup"}


def test_archive_list_search_tabs_drilldown_and_export(web, tickets, dbs, user_id):
    tag, ids, c1, c2 = tickets
    nums = {k: v for k, v in _numbers(dbs, ids).items() if k.startswith(("a_", "f_", "h_"))}
    w = web("exec")
    q = f"search={quote(tag)}"
    # default 已归档
    assert _shown(w.get(f"/service/archive/?{q}").text, nums) == {"a_done"}
    r = w.get(f"/service/archive/?{q}&tab=open")
    opened = {k for k in nums if k != "a_done"}
    assert _shown(r.text, nums) == opened
    assert _remembered(dbs, user_id("exec"), "ServiceArchiveView") == "open"
    assert _shown(w.get(f"/service/archive/?{q}").text, nums) == opened
    assert _shown(w.get(f"/service/archive/?{q}&tab=overdue").text, nums) == {"h_late", "a_late"}
    assert _shown(w.get(f"/service/archive/?{q}&tab=all").text, nums) == set(nums)
    # the old filters still work with the search and a tab
    r = w.get(f"/service/archive/?{q}&tab=all&summary={quote('逾期')}")
    assert _shown(r.text, nums) == {"a_late"}
    # the 客户服务分析 drill-down (status=all) shows every status, not remembered
    w.get(f"/service/archive/?{q}&tab=archived")
    r = w.get(f"/service/archive/?{q}&status=all")
    assert _shown(r.text, nums) == set(nums)
    assert _remembered(dbs, user_id("exec"), "ServiceArchiveView") == "archived"
    # the export follows the search and the tab
    csv = w.get(f"/service/archive/export/csv/?{q}&tab=overdue").data.decode("utf-8-sig")
    assert nums["a_late"] in csv and nums["h_late"] in csv and nums["a_done"] not in csv


def test_service_lists_page_keeps_search_and_tab(web, ticket, customer, uniq, dbs):
    tag = uniq("翻页")
    cid = customer()[0]
    ids = [ticket("assigned", customer_id=cid, summary=f"{tag} 第{i}张") for i in range(22)]
    ticket("assigned", customer_id=cid, summary="不相关")
    w = web("manager2")
    first = w.get(f"/service/handle/?search={quote(tag)}&tab=all")
    assert "共 22 条" in first.text
    link = re.search(r'href="(/service/handle/\?[^"]*page=1[^"]*)"', first.text).group(1)
    link = link.replace("&amp;", "&")
    assert "search=" in link and "tab=all" in link
    second = w.get(link)
    assert second.status_code == 200 and "第 2 / 2 页" in second.text
    with dbs() as s:
        nums = [s.get(ServiceTicket, i).number for i in ids]
    assert sum(n in first.text for n in nums) == 20 and sum(n in second.text for n in nums) == 2
    # the archive's pager too
    arch = w.get(f"/service/archive/?search={quote(tag)}&tab=open")
    assert "共 22 条" in arch.text
    link = re.search(r'href="(/service/archive/\?[^"]*page=1[^"]*)"', arch.text).group(1)
    assert "search=" in link and "tab=open" in link


@pytest.mark.parametrize("url", ["/service/handle/", "/service/feedback/", "/service/archive/"])
def test_service_lists_nasty_input(web, url):
    w = web("supervisor")
    for text in NASTY:
        r = w.get(f"{url}?search={quote(text)}")
        if len(text) > 100:
            assert r.status_code == 400 and "搜索内容太长" in r.text, text
        else:
            assert r.status_code == 200, (text, r.status_code, r.text[:300])
    for arg in ("tab=%27", "tab=" + "x" * 500, "priority=%25", "overdue=maybe"):
        assert web("supervisor").get(f"{url}?{arg}").status_code in (200, 400), arg


def test_service_api_quick_search(api, tickets, dbs):
    tag, ids, c1, c2 = tickets
    nums = _numbers(dbs, ids)
    c = api("supervisor")

    def found(value, extra=""):
        r = c.get(f"/api/v1/service/?q=(filters:!((col:number,opr:search,value:'{value}')"
                  f"{extra}),page_size:100)")
        assert r.status_code == 200, r.json
        return {k for k, n in nums.items() if n in {t["number"] for t in r.json["result"]}}

    assert found(quote(tag + " 100%_")) == {"h_pct"}
    assert found(quote(c1[1])) == {"h_cust"}
    assert found(quote(tag), ",(col:status,opr:eq,value:archived)") == {"a_done"}
    for text in ("%", "_", "!'", "\\", "a" * 500):
        r = c.get(f"/api/v1/service/?q=(filters:!((col:number,opr:search,value:'{quote(text)}')))")
        assert r.status_code in (200, 400), (text, r.status_code)


# ---- 文档管理 ------------------------------------------------------------------------------

@pytest.fixture
def docs(api, dbs, user_id, uniq):
    """Three documents: manager1's customer (two, one named with % and _) and a
    manager2 customer's document only manager2 (and the supervisor) may read."""
    tag = uniq("文档搜")
    with dbs() as s:
        c1 = f.customer(s, user_id("manager1"), name=f"{tag}甲客户")
        c2 = f.customer(s, user_id("manager2"), name=uniq("乙客户"))
        s.commit()
        c1_id, c2_id = c1.id, c2.id
    names = {"pct": f"{tag}报价100%_.pdf", "x": f"{tag}报价100x.pdf",
             "plain": "合同.pdf", "other": f"{tag}别人的.pdf"}
    for key, cid, who in (("pct", c1_id, "manager1"), ("x", c1_id, "manager1"),
                          ("plain", c1_id, "manager1"), ("other", c2_id, "manager2")):
        r = upload(api(who), cid, [(names[key], pdf_bytes())])
        assert r.status_code == 201, r.text
    return tag, names, c1_id


def test_document_list_search_rights_tabs_and_paging(web, docs, dbs, user_id):
    tag, names, c1_id = docs
    m1 = web("manager1")
    r = m1.get(f"/documents/list/?q={quote(tag)}")
    assert r.status_code == 200
    # the file name, or the customer name (合同.pdf's customer carries the tag); never
    # the other manager's restricted document
    assert _shown(r.text, names) == {"pct", "x", "plain"}
    assert _shown(m1.get(f"/documents/list/?q={quote(tag + ' 100%_')}").text, names) == {"pct"}
    assert _shown(m1.get(f"/documents/list/?q={quote(tag + ' 100_')}").text, names) == set()
    assert _shown(m1.get(f"/documents/list/?q={quote('别人的 ' + tag)}").text, names) == set()
    sup = web("supervisor")
    assert _shown(sup.get(f"/documents/list/?q={quote(tag)}").text, names) == set(names)
    # tabs: 我上传的 / 我的客户, remembered per user
    assert _shown(sup.get(f"/documents/list/?q={quote(tag)}&tab=mine").text, names) == set()
    assert _remembered(dbs, user_id("supervisor"), "DocumentView") == "mine"
    assert _shown(sup.get(f"/documents/list/?q={quote(tag)}").text, names) == set()
    assert _shown(m1.get(f"/documents/list/?q={quote(tag)}").text, names) == {"pct", "x", "plain"}
    m2 = web("manager2")
    assert _shown(m2.get(f"/documents/list/?q={quote(tag)}&tab=my_customers").text,
                  names) == {"other"}
    # the quick search keeps the detailed filters, and they combine
    r = m1.get(f"/documents/list/?q={quote(tag)}&name={quote('100x')}")
    assert _shown(r.text, names) == {"x"}
    assert 'name="q"' in r.text and 'name="name" value="100x"' in r.text
    # the pager keeps search and tab (PAGE_SIZE 50: the links, built from the args)
    from app.views import documents as views
    assert views.PAGE_SIZE == 50


def test_document_list_pages_keep_search(web, api, dbs, user_id, uniq, monkeypatch):
    from app.views import documents as views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    tag = uniq("文档页")
    with dbs() as s:
        cid = f.customer(s, user_id("manager1"), name=uniq("翻页客户")).id
        s.commit()
    for i in range(3):
        assert upload(api("manager1"), cid, [(f"{tag}-{i}.pdf", pdf_bytes())]).status_code == 201
    w = web("manager1")
    first = w.get(f"/documents/list/?q={quote(tag)}&tab=mine")
    link = re.search(r'href="(/documents/list/\?[^"]*page=1[^"]*)"', first.text).group(1)
    link = link.replace("&amp;", "&")
    assert "q=" in link and "tab=mine" in link
    second = w.get(link)
    assert "第 2 / 2 页" in second.text
    shown = sum(f"{tag}-{i}.pdf" in first.text + second.text for i in range(3))
    assert shown == 3


def test_document_list_and_api_nasty_input(web, api):
    w, c = web("manager1"), api("manager1")
    for text in NASTY:
        r = w.get(f"/documents/list/?q={quote(text)}")
        ra = c.get(f"/api/v1/document/?search={quote(text)}")
        if len(text) > 100:
            assert r.status_code == 400 and "搜索内容太长" in r.text
            assert ra.status_code == 400 and "搜索内容太长" in ra.json["message"]
        else:
            assert r.status_code == 200, (text, r.status_code)
            assert ra.status_code == 200, (text, ra.status_code)
    r = c.get("/api/v1/document/?tab=nope")
    assert r.status_code == 400 and "tab" in r.json["message"]


def test_document_api_search_and_tab(api, docs):
    tag, names, c1_id = docs

    def found(who, args):
        r = api(who).get(f"/api/v1/document/?{args}")
        assert r.status_code == 200, r.json
        got = {d["name"] for d in r.json["result"]}
        return {k for k, n in names.items() if n in got}

    assert found("manager1", f"search={quote(tag)}") == {"pct", "x", "plain"}
    assert found("manager1", f"search={quote(tag + ' 100%_')}") == {"pct"}
    assert found("supervisor", f"search={quote(tag)}") == set(names)
    assert found("manager2", f"search={quote(tag)}&tab=mine") == {"other"}


# ---- 我的邮箱 --------------------------------------------------------------------------------

@pytest.fixture
def mails(dbs, user_id, uniq):
    tag = uniq("邮件搜")
    m1, m2 = user_id("manager1"), user_id("manager2")
    rows = {
        "subj": dict(owner_id=m1, status="sent", subject=f"{tag} 报价100%_",
                     recipients="wang@kehu.cn"),
        "x": dict(owner_id=m1, status="sent", subject=f"{tag} 报价100x",
                  recipients="zhao@kehu.cn"),
        "to": dict(owner_id=m1, status="sent", subject="合同",
                   recipients=f"{tag}@kehu.cn"),
        "from": dict(owner_id=m1, status="received", subject="回复", sender=f"li@{tag}.cn",
                     received_on=datetime.now()),
        "other": dict(owner_id=m2, status="sent", subject=f"{tag} 别人的私信",
                      recipients="x@y.cn"),
    }
    with dbs() as s:
        for key, values in rows.items():
            values.setdefault("sender", "crm@kehu.cn")
            values.setdefault("sent_on", datetime.now() if values["status"] == "sent" else None)
            m = f._audit(MailMessage(body="正文", **values), values["owner_id"])
            s.add(m)
        s.commit()
    return tag, {k: v["subject"] for k, v in rows.items()}


def test_mail_box_search_rights_tabs(web, mails, dbs, user_id):
    tag, subjects = mails
    w = web("manager1")
    r = w.get(f"/mail/box?tab=all&q={quote(tag)}")
    assert r.status_code == 200
    # subject, recipients, sender; never manager2's own mail
    assert _shown(r.text, subjects) == {"subj", "x", "to", "from"}
    assert _shown(w.get(f"/mail/box?tab=all&q={quote(tag + ' 100%_')}").text,
                  subjects) == {"subj"}
    assert _shown(w.get(f"/mail/box?tab=all&q={quote(tag + ' 100_')}").text, subjects) == set()
    assert _shown(w.get(f"/mail/box?tab=all&q={quote('私信 ' + tag)}").text, subjects) == set()
    # the old filters are literal too
    assert _shown(w.get(f"/mail/box?tab=all&subject={quote(tag + ' 报价100%_')}").text,
                  subjects) == {"subj"}
    assert _shown(w.get(f"/mail/box?tab=all&subject={quote('100_')}&q={quote(tag)}").text,
                  subjects) == set()
    # the tab is remembered per user; the tab links keep the search
    page = w.get(f"/mail/box?tab=sent&q={quote(tag)}")
    assert _shown(page.text, subjects) == {"subj", "x", "to"}
    assert _remembered(dbs, user_id("manager1"), "MailView") == "sent"
    page = w.get(f"/mail/box?q={quote(tag)}")
    assert _shown(page.text, subjects) == {"subj", "x", "to"}
    assert re.search(r'href="/mail/box\?[^"]*tab=inbox', page.text)
    assert "q=" in re.search(r'href="(/mail/box\?[^"]*tab=inbox[^"]*)"', page.text).group(1)
    assert _shown(web("manager2").get(f"/mail/box?q={quote(tag)}").text, subjects) == set()
    assert _shown(web("manager2").get(f"/mail/box?tab=sent&q={quote(tag)}").text,
                  subjects) == {"other"}


def test_mail_box_paging_keeps_search(web, dbs, user_id, uniq, monkeypatch):
    from app.views import mail as views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    tag = uniq("邮件页")
    with dbs() as s:
        for i in range(3):
            s.add(f._audit(MailMessage(owner_id=user_id("manager1"), status="sent",
                                       subject=f"{tag}-{i}", sender="a@b.cn", recipients="c@d.cn",
                                       body="", sent_on=datetime.now()), user_id("manager1")))
        s.commit()
    w = web("manager1")
    first = w.get(f"/mail/box?tab=sent&q={quote(tag)}")
    link = re.search(r'href="(/mail/box\?[^"]*page=1[^"]*)"', first.text).group(1)
    link = link.replace("&amp;", "&")
    assert "q=" in link and "tab=sent" in link
    second = w.get(link)
    assert sum(f"{tag}-{i}" in first.text + second.text for i in range(3)) == 3


def test_mail_nasty_input_and_api(web, api, mails):
    tag, subjects = mails
    w, c = web("manager1"), api("manager1")
    for text in NASTY:
        r = w.get(f"/mail/box?q={quote(text)}&subject={quote(text[:100])}")
        ra = c.get(f"/api/v1/mail/?search={quote(text)}")
        if len(text) > 100:
            assert r.status_code == 400 and "搜索内容太长" in r.text
            assert ra.status_code == 400 and ra.json["field"] == "search"
        else:
            assert r.status_code == 200, (text, r.status_code)
            assert ra.status_code == 200, (text, ra.status_code)
    r = c.get(f"/api/v1/mail/?box=all&search={quote(tag + ' 100%_')}")
    assert [m["subject"] for m in r.json["result"]] == [subjects["subj"]]
    r = c.get(f"/api/v1/mail/?box=all&search={quote(tag)}")
    assert {m["subject"] for m in r.json["result"]} == {subjects[k] for k in ("subj", "x", "to",
                                                                               "from")}


# ---- a customer's contacts ---------------------------------------------------------------------

@pytest.fixture
def contacts(dbs, user_id, uniq):
    tag = uniq("联系")
    with dbs() as s:
        c = f.customer(s, user_id("manager1"))
        other = f.customer(s, user_id("manager1"))
        rows = {
            "name": f.contact(s, c, user_id("manager1"), name=f"张{tag}", mobile="13900000001"),
            "pct": f.contact(s, c, user_id("manager1"), name="李100%_", mobile="13900000002"),
            "x": f.contact(s, c, user_id("manager1"), name="李100x", mobile="13900000003"),
            "mail": f.contact(s, c, user_id("manager1"), name="王五", email=f"{tag}@kehu.cn"),
            "phone": f.contact(s, c, user_id("manager1"), name="赵六",
                               office_phone=f"010-{tag[-8:]}"),
            "elsewhere": f.contact(s, other, user_id("manager1"), name=f"张{tag}别处"),
        }
        s.commit()
        return tag, c.id, other.id, {k: v.name for k, v in rows.items()}


def test_contact_list_search(web, contacts):
    tag, cid, other_id, names = contacts
    w = web("exec")
    base = f"/contacts/customer/{cid}"
    page = w.get(base)
    assert page.status_code == 200 and 'name="q"' in page.text
    assert _shown(page.text, names) == {"name", "pct", "x", "mail", "phone"}
    assert _shown(w.get(f"{base}?q={quote(tag)}").text, names) == {"name", "mail"}
    assert _shown(w.get(f"{base}?q={quote('100%_')}").text, names) == {"pct"}
    assert _shown(w.get(f"{base}?q={quote('100_')}").text, names) == set()
    assert _shown(w.get(f"{base}?q={quote(tag[-8:])}").text, names) == {"name", "mail", "phone"}
    assert _shown(w.get(f"{base}?q=13900000003").text, names) == {"x"}
    # the export follows the search
    csv = w.get(f"/contacts/customer/{cid}/export/csv/?q={quote('100%_')}").data.decode("utf-8-sig")
    assert "李100%_" in csv and "李100x" not in csv
    # the customer page's contacts panel has the box, aimed at this list
    show = w.get(f"/customer/show/{cid}")
    assert f'action="/contacts/customer/{cid}"' in show.text and "crm-contact-search" in show.text
    for text in NASTY:
        r = w.get(f"{base}?q={quote(text)}")
        assert r.status_code == (400 if len(text) > 100 else 200), text


def test_contact_api_quick_search(api, contacts):
    tag, cid, other_id, names = contacts
    c = api("exec")

    def found(value, cust=cid):
        r = c.get(f"/api/v1/contact/?q=(filters:!((col:customer_id,opr:eq,value:{cust}),"
                  f"(col:name,opr:search,value:'{value}')))")
        assert r.status_code == 200, r.json
        got = {x["name"] for x in r.json["result"]}
        return {k for k, n in names.items() if n in got}

    assert found(quote(tag)) == {"name", "mail"}
    assert found(quote("100%_")) == {"pct"}
    assert found(quote("100_")) == set()
    assert found(quote(tag), other_id) == {"elsewhere"}


def test_openapi_documents_the_searches(api):
    spec = api("admin").get("/api/v1/_openapi").json
    params = {p["name"]: p for p in spec["paths"]["/api/v1/document/"]["get"]["parameters"]}
    assert "search" in params and "tab" in params
    params = {p["name"]: p for p in spec["paths"]["/api/v1/mail/"]["get"]["parameters"]}
    assert "search" in params
    for path, col in (("/api/v1/service/", "number"), ("/api/v1/contact/", "name")):
        q = [p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == "q"][0]
        assert f"col:{col},opr:search" in q["description"]


@pytest.mark.parametrize("url", ["/customer/list/", "/opportunity/list/", "/service/assign/"])
def test_control_characters_reach_no_list_as_nul(web, url):
    """NUL in a search used to go to the database as it is (PostgreSQL refuses it in
    a string: 500); now every control character is a blank, on the FAB lists too."""
    w = web("supervisor")
    for arg in ("q", "search"):
        for text in ("\x00", "北京\x00科技", "\x1b[31m"):
            r = w.get(f"{url}?{arg}={quote(text)}")
            assert r.status_code == 200, (url, arg, repr(text), r.status_code)
