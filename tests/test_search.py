"""全局搜索 (issue 21 item 1): each kind by its fields, only what the user may read,
Chinese substring match (trigram index on both backends), bad input never a 5xx,
HTML and API, the navbar box on every page."""
import hashlib
import os
import uuid
from datetime import datetime

import pytest
from sqlalchemy import delete, select, text, update

from app.extensions import db
from app.models import Customer, Document, DocumentBlob, MailMessage

from . import factories as f


def _tag():
    """A unique Chinese-ish marker (digits of a uuid mapped onto CJK characters)."""
    return "".join(chr(0x4E00 + int(c, 16) * 37) for c in uuid.uuid4().hex[:6])


def _document(app, s, customer, actor_id, name):
    data = f"search test {name}".encode()
    sha = hashlib.sha256(data).hexdigest()
    path = os.path.join(app.config["DOCUMENT_DIR"], sha[:2], sha[2:4], sha)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    if s.get(DocumentBlob, sha) is None:
        s.add(DocumentBlob(sha256=sha, size=len(data), mime="application/pdf",
                           created_on=datetime.now()))
        s.flush()
    d = Document(customer_id=customer.id, name=name, sha256=sha, size=len(data),
                 mime="application/pdf", created_by_fk=actor_id, changed_by_fk=actor_id)
    s.add(d)
    s.flush()
    return d


def _mail(s, owner_id, subject, customer_id=None):
    m = MailMessage(owner_id=owner_id, status="sent", subject=subject, body="正文",
                    sender="me@crm.test", recipients="you@kehu.cn", customer_id=customer_id,
                    sent_on=datetime.now(), created_by_fk=owner_id, changed_by_fk=owner_id)
    s.add(m)
    s.flush()
    return m


@pytest.fixture
def world(app, dbs, user_id):
    """One record of every kind for manager1 (and a customer of manager2), all carrying a
    unique marker in their searched fields."""
    t = _tag()
    m1, m2 = user_id("manager1"), user_id("manager2")
    with dbs() as s:
        c = f.customer(s, m1, name=f"北京星辰{t}科技有限公司", phone=f"010-{t}", legal_person=f"法人{t}")
        other = f.customer(s, m2, name=f"上海{t}贸易有限公司")
        ct = f.contact(s, c, m1, name=f"联系人{t}", office_phone=f"办公{t}", mobile=f"手机{t}",
                       email=f"zhang.{t}@kehu.cn")
        o = f.opportunity(s, m1, customer_name=f"意向{t}集团", summary=f"采购{t}服务器")
        st = f.service(s, c, m1, summary=f"咨询{t}价格")
        d_own = _document(app, s, c, m1, f"合同{t}甲.pdf")
        d_other = _document(app, s, other, m2, f"机密{t}报价.pdf")
        mail_own = _mail(s, m1, f"邮件{t}本人")
        mail_other = _mail(s, m2, f"私信{t}他人")
        s.commit()
        ids = dict(customer=c.id, customer_number=c.number, other=other.id, contact=ct.id,
                   opportunity=o.id, ticket=st.id, ticket_number=st.number, doc=d_own.id,
                   doc_other=d_other.id, mail=mail_own.id, mail_other=mail_other.id)
    return t, ids


def _ids(result, kind):
    return {i["id"] for i in result[kind]["items"]}


def test_each_kind_found_by_its_fields(api, world):
    t, ids = world
    c = api("manager1")
    cases = [
        ("customer", f"星辰{t}科技", ids["customer"]), ("customer", ids["customer_number"], ids["customer"]),
        ("customer", f"010-{t}", ids["customer"]), ("customer", f"法人{t}", ids["customer"]),
        ("contact", f"联系人{t}", ids["contact"]), ("contact", f"办公{t}", ids["contact"]),
        ("contact", f"手机{t}", ids["contact"]), ("contact", f"ZHANG.{t}@KEHU", ids["contact"]),
        ("opportunity", f"意向{t}", ids["opportunity"]), ("opportunity", f"采购{t}服务", ids["opportunity"]),
        ("ticket", ids["ticket_number"], ids["ticket"]), ("ticket", f"咨询{t}", ids["ticket"]),
        ("document", f"合同{t}甲", ids["doc"]), ("mail", f"邮件{t}", ids["mail"]),
    ]
    for kind, q, pk in cases:
        r = c.get("/api/v1/search/", query_string={"q": q, "kind": kind})
        assert r.status_code == 200, (q, r.text)
        assert list(r.json["result"]) == [kind]
        assert pk in _ids(r.json["result"], kind), (kind, q, r.json)
        assert r.json["result"][kind]["count"] >= 1
    # all kinds at once, grouped with counts
    r = c.get("/api/v1/search/", query_string={"q": t})
    res = r.json["result"]
    assert set(res) == {"customer", "contact", "opportunity", "ticket", "document", "mail"}
    assert ids["customer"] in _ids(res, "customer") and ids["other"] in _ids(res, "customer")
    for kind in ("contact", "opportunity", "ticket"):
        assert res[kind]["count"] == 1
    item = next(i for i in res["customer"]["items"] if i["id"] == ids["customer"])
    assert item["url"] == f"/customer/show/{ids['customer']}" and t in item["title"]


def test_chinese_substring_of_a_company_name(api, dbs, user_id):
    t = _tag()
    with dbs() as s:
        c = f.customer(s, user_id("manager1"), name=f"北京星辰科技有限公司{t}")
        s.commit()
        cid = c.id
    client = api("manager1")
    for q in ("科技", f"科技有限公司{t}", f"星辰科技有限公司{t}"[-3:], "京"):
        r = client.get("/api/v1/search/", query_string={"q": q, "kind": "customer", "limit": 100})
        assert r.status_code == 200
        if r.json["result"]["customer"]["count"] < 100:
            assert cid in _ids(r.json["result"], "customer"), q


def test_updates_and_deletes_reach_the_index(api, dbs, user_id):
    t, t2 = _tag(), _tag()
    with dbs() as s:
        c = f.customer(s, user_id("manager1"), name=f"改名前{t}公司")
        s.commit()
        cid = c.id
    client = api("manager1")
    find = lambda q: _ids(client.get("/api/v1/search/", query_string={"q": q, "kind": "customer"}).json["result"], "customer")
    assert cid in find(f"改名前{t}")
    with dbs() as s:
        s.execute(update(Customer).where(Customer.id == cid).values(name=f"改名后{t2}公司", changed_by_fk=user_id("manager1")))
        mail = _mail(s, user_id("manager1"), f"删除{t2}邮件")
        s.commit()
        mid = mail.id
    assert cid not in find(f"改名前{t}") and cid in find(f"改名后{t2}")
    mails = lambda: _ids(client.get("/api/v1/search/", query_string={"q": f"删除{t2}", "kind": "mail"}).json["result"], "mail")
    assert mid in mails()
    with dbs() as s:
        s.execute(delete(MailMessage).where(MailMessage.id == mid))
        s.commit()
    assert mid not in mails()


def test_manager_never_finds_others_restricted_document_or_private_mail(api, web, world):
    t, ids = world
    for q in (t, f"机密{t}报价", f"私信{t}"):
        r = api("manager1").get("/api/v1/search/", query_string={"q": q})
        res = r.json["result"]
        assert ids["doc_other"] not in _ids(res, "document")
        assert ids["mail_other"] not in _ids(res, "mail")
        page = web("manager1").get("/search/", query_string={"q": q}).text
        assert f"机密{t}报价.pdf" not in page and f"私信{t}他人" not in page
        assert f"/mail/show/{ids['mail_other']}\"" not in page
    # the owners (and a 销售主管 for the document) do find them
    assert ids["doc_other"] in _ids(api("manager2").get("/api/v1/search/", query_string={"q": f"机密{t}"}).json["result"], "document")
    assert ids["doc_other"] in _ids(api("supervisor").get("/api/v1/search/", query_string={"q": f"机密{t}"}).json["result"], "document")
    assert ids["mail_other"] in _ids(api("manager2").get("/api/v1/search/", query_string={"q": f"私信{t}"}).json["result"], "mail")
    assert ids["mail_other"] not in _ids(api("supervisor").get("/api/v1/search/", query_string={"q": f"私信{t}"}).json["result"], "mail")


def test_kind_without_list_permission_is_left_out(app, api, world):
    from .test_rights_matrix import _set_permission

    t, ids = world
    _set_permission(app, "客户经理", ("can_list", "Mail"), False)
    try:
        r = api("manager1").get("/api/v1/search/", query_string={"q": t})
        assert "mail" not in r.json["result"] and "customer" in r.json["result"]
    finally:
        _set_permission(app, "客户经理", ("can_list", "Mail"), True)


BAD = ["a", "科", "%", "_", "'", "\\", "\"", "*", "NEAR(", "OR", "a OR b", "\"科技", "科技*",
       "NEAR(科技 有限)", "'; DROP TABLE crm_customer; --", "1' OR '1'='1", ".*", "[a-z]+", "^$",
       "(", ")", "科技 AND", "NOT", "col:科技", "{}", "%%__", "\\%", "x" * 100, "科" * 100,
       "  科技  ", "科\x00技", "\u202e科技"]


@pytest.mark.parametrize("q", BAD)
def test_bad_input_is_never_a_server_error(api, web, q):
    r = api("manager1").get("/api/v1/search/", query_string={"q": q})
    assert r.status_code == 200, (q, r.text)
    assert set(r.json["result"]) >= {"customer", "contact"}
    p = web("manager1").get("/search/", query_string={"q": q})
    assert p.status_code == 200, q


def test_wildcards_are_literal(api, dbs, user_id):
    t = _tag()
    with dbs() as s:
        pct = f.customer(s, user_id("manager1"), name=f"百分{t}%公司")
        plain = f.customer(s, user_id("manager1"), name=f"百分{t}X公司")
        s.commit()
        pct_id, plain_id = pct.id, plain.id
    for q in (f"{t}%", f"{t}%公"):
        found = _ids(api("manager1").get("/api/v1/search/", query_string={"q": q, "kind": "customer"}).json["result"], "customer")
        assert pct_id in found and plain_id not in found, q
    found = _ids(api("manager1").get("/api/v1/search/", query_string={"q": f"{t}_", "kind": "customer"}).json["result"], "customer")
    assert not found & {pct_id, plain_id}


def test_too_long_empty_and_unknown_arguments_are_400_in_chinese(api, web):
    c = api("manager1")
    for args in ({"q": "x" * 101}, {"q": "科" * 500}, {"q": ""}, {"q": "   "}, {},
                 {"q": "科技", "kind": "nope"}, {"q": "科技", "limit": "0"},
                 {"q": "科技", "limit": "abc"}, {"q": "科技", "limit": "101"}):
        r = c.get("/api/v1/search/", query_string=args)
        assert r.status_code == 400, (args, r.text)
        assert any("\u4e00" <= ch <= "\u9fff" for ch in r.json["message"]), r.json
    p = web("manager1").get("/search/", query_string={"q": "科" * 500})
    assert p.status_code == 400 and "最多 100 个字" in p.text
    p = web("manager1").get("/search/", query_string={"q": "科技", "kind": "nope"})
    assert p.status_code == 400 and "搜索类别" in p.text
    assert web("manager1").get("/search/").status_code == 200   # the empty page: a prompt


def test_html_results_grouped_with_counts_and_links(web, world):
    t, ids = world
    page = web("manager1").get("/search/", query_string={"q": t})
    assert page.status_code == 200
    html = page.text
    for label in ("客户", "联系人", "销售机会", "客户服务", "文档", "邮件"):
        assert label in html
    assert f'href="/customer/show/{ids["customer"]}"' in html
    assert f'href="/opportunity/show/{ids["opportunity"]}"' in html
    assert f'href="/service/archive/{ids["ticket"]}"' in html
    assert f'href="/mail/show/{ids["mail"]}"' in html
    assert 'class="badge"' in html and 'id="crm-search-customer"' in html
    # the result links are plain links in document order (Tab reaches each one)
    assert 'tabindex="-1"' not in html.split('class="crm-search"', 1)[1]


def test_anonymous_is_sent_to_login(app, api):
    assert api().get("/api/v1/search/?q=科技").status_code == 401
    r = app.test_client().get("/search/?q=科技")
    assert r.status_code == 302 and "login" in r.headers["Location"]


@pytest.mark.parametrize("user", ["admin", "exec", "supervisor", "manager1"])
def test_navbar_box_on_every_page(web, user):
    c = web(user)
    for url in ("/", "/customer/list/", "/notifications/", "/search/?q=科技"):
        r = c.get(url)
        assert r.status_code == 200, url
        assert 'id="crm-search-q"' in r.text and 'action="/search/"' in r.text, url
        assert 'role="search"' in r.text


def test_slash_key_script_is_served(app):
    js = app.test_client().get("/static/crm.js").text
    assert 'getElementById("crm-search-q")' in js and 'ev.key !== "/"' in js


def test_index_exists_on_the_backend(app):
    with app.app_context():
        conn = db.session.connection()
        if conn.dialect.name == "sqlite":
            names = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'")).scalars())
            assert {"crm_search_customer", "crm_search_mail"} <= names
        else:
            names = set(conn.execute(text("SELECT indexname FROM pg_indexes")).scalars())
            assert "ix_trgm_crm_customer_name" in names
            plan = "\n".join(conn.execute(text(
                "EXPLAIN SELECT id FROM crm_customer WHERE name ILIKE '%星辰科技%'")).scalars())
            # with SET enable_seqscan=off the planner must be able to use the trigram index
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(conn.execute(text(
                "EXPLAIN SELECT id FROM crm_customer WHERE name ILIKE '%星辰科技%'")).scalars())
            assert "ix_trgm_crm_customer_name" in plan, plan
        db.session.rollback()


# ---- 1–2 character queries (issue 21: speed; docs/modules/search.md "短查询") ---------------

def _scan_ids(s, kind, q):
    """The reference: every record of ``kind`` whose searched fields contain ``q`` (Python
    substring test on the values, case-insensitive as the search is)."""
    from app.workflows import search as search_wf

    spec = search_wf.KINDS[kind]
    rows = s.execute(select(spec.model.id, *[getattr(spec.model, f) for f in spec.fields])).all()
    return {r[0] for r in rows if any(v is not None and q.lower() in v.lower() for v in r[1:])}


def _search_ids(s, kind, q):
    from app.workflows import search as search_wf
    from app.workflows.actors import Actor

    res = search_wf.search(s, Actor(id=1, roles=frozenset({"系统管理员"})), q, [kind],
                           limit=search_wf.MAX_LIMIT)[kind]
    return res, {row.id for row in res["items"]}


def test_short_chinese_queries_find_exactly_the_records_containing_them(dbs, user_id):
    """`科`, `科技` and a word only this test has: the index of 1–2 character pieces
    (crm_search_gram) answers exactly what a substring test over the fields answers —
    in every searched field, never across two fields, after updates and deletes."""
    t = _tag()                                    # 6 CJK characters unique to this test
    a, b = t[:2], t[2:4]                          # two 2-character words of it
    m1 = user_id("manager1")
    with dbs() as s:
        by_name = f.customer(s, m1, name=f"北京{a}科技有限公司")
        by_legal = f.customer(s, m1, name=f"上海{t[4]}贸易", legal_person=f"张{a}")
        across = f.customer(s, m1, name=f"跨字段{t[0]}", legal_person=f"{t[1]}某")   # a split in two
        ascii_mix = f.customer(s, m1, name=f"X{a}Y公司", phone=None)
        contact = f.contact(s, by_name, m1, name=f"联系{b}", email=f"Li.{b}@KeHu.cn")
        opp = f.opportunity(s, m1, customer_name=f"意向{b}集团", summary=f"科{a}服务")
        ticket = f.service(s, by_name, m1, summary=f"咨询{a}价格")
        s.commit()
        ids = dict(by_name=by_name.id, by_legal=by_legal.id, across=across.id,
                   ascii_mix=ascii_mix.id, contact=contact.id, opp=opp.id, ticket=ticket.id)
    with dbs() as s:
        # (other tests' markers come from the same 16 characters: compare with the reference)
        res, found = _search_ids(s, "customer", a)
        assert found == _scan_ids(s, "customer", a) and res["count"] == len(found)
        assert {ids["by_name"], ids["by_legal"], ids["ascii_mix"]} <= found
        assert ids["across"] not in found                              # never across fields
        assert _search_ids(s, "customer", t[0])[1] >= {ids["across"], ids["by_name"]}
        for kind, q, pk in (("contact", b, "contact"), ("opportunity", b, "opp"),
                            ("opportunity", a, "opp"), ("ticket", a, "ticket")):
            found = _search_ids(s, kind, q)[1]
            assert pk and ids[pk] in found and found == _scan_ids(s, kind, q), (kind, q)
        # common words: newest first, counted up to the cap, the page is the newest
        for q in ("科", "科技"):
            res, found = _search_ids(s, "customer", q)
            assert ids["by_name"] in found or res["count"] >= 100, q
            got = [row.id for row in res["items"]]
            assert got == sorted(got, reverse=True)
            expected = _scan_ids(s, "customer", q)
            assert res["count"] == min(len(expected), 1000) and res["capped"] == (len(expected) > 1000)
            assert got == sorted(expected, reverse=True)[:len(got)]
    # updates and deletes reach the index (the triggers of migration 0012)
    with dbs() as s:
        s.execute(update(Customer).where(Customer.id == ids["by_name"])
                  .values(name=f"改名{b}公司", changed_by_fk=m1))
        s.execute(update(Customer).where(Customer.id == ids["by_legal"])
                  .values(legal_person=None, changed_by_fk=m1))
        s.execute(text("DELETE FROM crm_service WHERE id = :i"), {"i": ids["ticket"]})
        s.commit()
    with dbs() as s:
        found = _search_ids(s, "customer", a)[1]
        assert found == _scan_ids(s, "customer", a)
        assert ids["ascii_mix"] in found and not found & {ids["by_name"], ids["by_legal"]}
        assert ids["by_name"] in _search_ids(s, "customer", b)[1]
        assert ids["ticket"] not in _search_ids(s, "ticket", a)[1]


def test_short_ascii_and_wildcard_queries_are_scanned_literally(dbs, user_id):
    """`%`, `_`, mixed-case e-mail pieces (1–2 characters: the scan path) are plain text
    and case-insensitive, the same answer as a substring test."""
    t = _tag()
    m1 = user_id("manager1")
    with dbs() as s:
        c = f.customer(s, m1, name=f"百分{t}公司")
        pct = f.contact(s, c, m1, name=f"百{t}", email=f"a%b.{t}@kehu.cn")
        und = f.contact(s, c, m1, name=f"下{t}", email=f"a_b.{t}@kehu.cn")
        mixed = f.contact(s, c, m1, name=f"混{t}", email=f"Qz.{t}@KeHu.cn")
        s.commit()
        ids = pct.id, und.id, mixed.id
    with dbs() as s:
        for q in ("%", "_", "qz", "QZ", "Qz", "z.", "@k"):
            res, found = _search_ids(s, "contact", q)
            expected = _scan_ids(s, "contact", q)
            if len(expected) <= 100:                  # the page holds them all: compare sets
                assert found == expected, q
            else:
                assert res["count"] == min(len(expected), 1000), q
        # this test's records are the newest: on the first page whatever the count
        for q, pk, not_pk in (("%", ids[0], ids[1]), ("_", ids[1], ids[0]), ("qz", ids[2], None),
                              ("QZ", ids[2], None)):
            found = _search_ids(s, "contact", q)[1]
            assert pk in found and not_pk not in found, q


def test_short_query_plans_use_no_trigram_index(app):
    """PostgreSQL: a 1–2 character pattern has no trigram; the byte-comparing short-query
    SQL must not be answerable by the trigram GIN indexes (a bitmap scan would read them
    whole), and a Chinese one is answered by crm_search_gram. SQLite: the gram table exists and the
    query lists through it."""
    from sqlalchemy.dialects import postgresql, sqlite

    from app.workflows import search as search_wf
    from app.workflows.actors import Actor

    actor = Actor(id=1, roles=frozenset({"系统管理员"}))
    with app.app_context():
        conn = db.session.connection()
        dialect = postgresql.dialect() if conn.dialect.name == "postgresql" else sqlite.dialect()
        for q, gram in (("科技", True), ("科", True), ("qz", False), ("%", False)):
            stmt = search_wf._query(db.session, actor, "customer", q, "restricted")
            sql = str(stmt.compile(dialect=dialect))
            assert ("crm_search_gram" in sql) is gram, (q, sql)
            if conn.dialect.name == "postgresql" and search_wf.caseless(q):
                compiled = stmt.compile(dialect=conn.dialect)
                plan = "\n".join(r[0] for r in conn.exec_driver_sql(
                    "EXPLAIN " + str(compiled), compiled.params).fetchall())
                assert "ix_trgm_" not in plan, (q, plan)
        if conn.dialect.name == "sqlite":
            names = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")).scalars())
            assert {"crm_search_gram", "crm_search_n", "crm_search_gram_customer_au"} <= names
        db.session.rollback()


def test_caseless_and_gram_rules():
    from app.workflows.search import caseless, gram_query

    assert caseless("科技") and caseless("62") and caseless("%") and caseless("科-")
    assert not caseless("ab") and not caseless("É") and not caseless("科a")
    assert gram_query("科") and gram_query("科技") and gram_query("（科")
    assert not gram_query("科技园") and not gram_query("62") and not gram_query("科1")
    assert not gram_query("Éé")
