"""营销管理: opportunities, assignment, development plans (HTML with CSRF and REST API).

Every forbidden path answers 403/409 and leaves the row as it was; every test
creates its own uniquely named data. Runs on SQLite and (with
CRM_TEST_DATABASE_URL) on PostgreSQL.
"""
import re
import threading
from datetime import date

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Contact, Customer, Opportunity, PlanItem, WorkflowEvent
from app.workflows import opportunities as wf
from app.workflows.actors import Actor
from app.workflows.errors import Conflict

from . import factories as f


# ---- helpers --------------------------------------------------------------------

def new_opp(dbs, creator_id, **kw):
    with dbs() as s:
        o = f.opportunity(s, creator_id, **kw)
        s.commit()
        return o.id


def assigned_opp(dbs, user_id, manager="manager1", items=0, creator="supervisor", **kw):
    with dbs() as s:
        o = f.opportunity(s, user_id(creator), status="assigned",
                          assignee_id=user_id(manager), **kw)
        for k in range(items):
            f.plan_item(s, o, user_id(manager), content=f"计划{k}")
        s.commit()
        return o.id


def snapshot(dbs, pk):
    """Everything a step could change: the row and its plan items."""
    with dbs() as s:
        o = s.get(Opportunity, pk)
        if o is None:
            return None
        row = {c: getattr(o, c) for c in Opportunity.__table__.columns.keys()}
        row["items"] = [(i.id, i.date, i.content, i.result) for i in o.plan_items]
        return row


def events_of(dbs, pk):
    with dbs() as s:
        return s.execute(select(WorkflowEvent.action, WorkflowEvent.from_status,
                                WorkflowEvent.to_status)
                         .where(WorkflowEvent.entity == "opportunity",
                                WorkflowEvent.entity_id == pk)
                         .order_by(WorkflowEvent.id)).all()


def count_customers(dbs, name):
    with dbs() as s:
        return s.scalar(select(func.count()).select_from(Customer).where(Customer.name == name))


def body(uniq, **kw):
    data = dict(source="展会", customer_name=uniq("北京测试科技有限公司"), success_rate=60,
                summary="采购激光打印机", contact="张三", contact_phone="13900139000",
                description="计划采购 20 台激光打印机")
    data.update(kw)
    return data


def flash_text(page):
    return re.sub(r"\s+", " ", page.text)


# ---- happy paths --------------------------------------------------------------------

def test_api_happy_path_create_assign_plan_results_success(api, dbs, uniq, user_id):
    m1, sup = api("manager1"), api("supervisor")
    data = body(uniq)
    r = m1.post("/api/v1/opportunity/", json=data)
    assert r.status_code == 201, r.json
    opp = r.json["result"]
    pk = opp["id"]
    assert opp["status"] == "unassigned" and opp["creator_id"] == user_id("manager1")
    assert re.fullmatch(r"XS\d{8}\d{4,}", opp["number"])
    assert opp["created_on"] and opp["assignee_id"] is None and opp["plan_items"] == []
    assert {k: opp[k] for k in data} == data

    # the §8 field names, in list and show
    fields = {"id", "number", "source", "customer_name", "success_rate", "summary", "contact",
              "contact_phone", "description", "status", "creator_id", "created_on",
              "assignee_id", "assigned_on", "plan_items"}
    one = m1.get(f"/api/v1/opportunity/{pk}").json["result"]
    assert fields <= set(one) and "created_by_fk" not in one
    q = f"(filters:!((col:customer_name,opr:eq,value:'{data['customer_name']}')))"
    lst = m1.get(f"/api/v1/opportunity/?q={q}").json
    assert lst["count"] == 1 and fields <= set(lst["result"][0])

    # edit while unassigned (creator)
    r = m1.put(f"/api/v1/opportunity/{pk}", json={"success_rate": 70, "summary": "采购扫描仪"})
    assert r.status_code == 200 and r.json["result"]["success_rate"] == 70

    r = sup.post(f"/api/v1/opportunity/{pk}/assign", json={"assignee_id": user_id("manager1")})
    assert r.status_code == 200, r.json
    assert r.json["result"]["status"] == "assigned" and r.json["result"]["assigned_on"]
    assert r.json["result"]["assignee_id"] == user_id("manager1") and r.json["message"] == "指派成功"

    r = m1.post(f"/api/v1/opportunity/{pk}/plan_items", json={"date": "2007-12-13", "content": "电话联系"})
    assert r.status_code == 201, r.json
    item1 = r.json["id"]
    assert r.json["result"] == {"id": item1, "date": "2007-12-13", "content": "电话联系", "result": None}
    item2 = m1.post(f"/api/v1/opportunity/{pk}/plan_items",
                    json={"date": "2007-12-20", "content": "上门拜访"}).json["id"]
    item3 = m1.post(f"/api/v1/opportunity/{pk}/plan_items",
                    json={"date": "2007-12-27", "content": "多余的一项"}).json["id"]
    r = m1.put(f"/api/v1/opportunity/{pk}/plan_items/{item1}", json={"content": "电话联系采购经理"})
    assert r.status_code == 200 and r.json["result"]["content"] == "电话联系采购经理"
    r = m1.put(f"/api/v1/opportunity/{pk}/plan_items/{item1}", json={"result": "客户有兴趣"})
    assert r.status_code == 200 and r.json["result"]["result"] == "客户有兴趣"
    assert r.json["result"]["date"] == "2007-12-13"
    assert m1.put(f"/api/v1/opportunity/{pk}/plan_items/{item2}",
                  json={"result": "演示顺利"}).status_code == 200
    assert m1.delete(f"/api/v1/opportunity/{pk}/plan_items/{item3}").status_code == 200
    items = m1.get(f"/api/v1/opportunity/{pk}").json["result"]["plan_items"]
    assert [(i["id"], i["result"]) for i in items] == [(item1, "客户有兴趣"), (item2, "演示顺利")]

    r = m1.post(f"/api/v1/opportunity/{pk}/succeed")
    assert r.status_code == 200, r.json
    assert r.json["result"]["status"] == "succeeded"
    cid = r.json["customer_id"]
    with dbs() as s:
        c = s.get(Customer, cid)
        assert (c.name, c.manager_id, c.phone, c.status) == (
            data["customer_name"], user_id("manager1"), "13900139000", "normal")
        assert c.number.startswith("KH")
        contacts = s.scalars(select(Contact).where(Contact.customer_id == cid)).all()
        assert [(k.name, k.mobile) for k in contacts] == [("张三", "13900139000")]
        assert s.get(Opportunity, pk).customer_id == cid
    assert events_of(dbs, pk) == [("create", None, "unassigned"),
                                  ("assign", "unassigned", "assigned"),
                                  ("succeed", "assigned", "succeeded")]


def test_html_happy_path_with_csrf(web, dbs, uniq, user_id):
    m1, sup = web("manager1"), web("supervisor")
    name = uniq("上海网页测试有限公司")
    add = m1.get("/opportunity/add")
    assert add.status_code == 200 and "新建销售机会" in add.text and "保存时自动生成" in add.text
    form = {"source": "网站", "customer_name": name, "success_rate": "40", "summary": "采购复印机",
            "contact": "李雷", "contact_phone": "010-66668888", "description": "年底前采购"}
    # without the CSRF token the form is refused and nothing is created
    assert m1.post("/opportunity/add", data=form).status_code == 400
    r = m1.post_form("/opportunity/add", form)
    assert r.status_code == 302
    page = m1.get("/opportunity/list/")
    assert "保存成功" in page.text and name in page.text and "未指派" in page.text
    with dbs() as s:
        pk = s.scalar(select(Opportunity.id).where(Opportunity.customer_name == name))
        o = s.get(Opportunity, pk)
        assert o.created_by_fk == user_id("manager1") and o.status == "unassigned"

    # edit form (creator, unassigned)
    r = m1.post_form(f"/opportunity/edit/{pk}", dict(form, success_rate="45"))
    assert r.status_code == 302
    assert snapshot(dbs, pk)["success_rate"] == 45

    # 指派: details + choice of active 客户经理
    page = sup.get(f"/opportunity/assign/{pk}")
    assert page.status_code == 200 and name in page.text and "manager1" in page.text
    assert "admin" not in re.findall(r"<option[^>]*>([^<]*)", page.text)[-1]
    r = sup.post_form(f"/opportunity/assign/{pk}", {"assignee_id": str(user_id("manager1"))})
    assert r.status_code == 302
    assert "指派成功" in sup.get("/opportunity/list/").text
    assert snapshot(dbs, pk)["status"] == "assigned"

    # 我的开发计划
    mine = m1.get("/myplan/list/")
    assert mine.status_code == 200 and name in mine.text and "我的开发计划" in mine.text

    # 制定计划
    plan_url = f"/opportunity/plan/{pk}"
    page = m1.get(plan_url)
    assert page.status_code == 200 and "制定客户开发计划" in page.text and name in page.text
    r = m1.post_form(f"{plan_url}/add", {"date": "2007-12-13", "content": "电话拜访"},
                     form_url=plan_url)
    assert r.status_code == 302
    item = snapshot(dbs, pk)["items"][0][0]
    r = m1.post_form(f"{plan_url}/item/{item}/edit", {"content": "电话拜访总经理"}, form_url=plan_url)
    assert r.status_code == 302
    # 执行计划: 执行效果
    exec_url = f"/opportunity/execute/{pk}"
    assert "执行客户开发计划" in m1.get(exec_url).text
    r = m1.post_form(f"{exec_url}/item/{item}", {"result": "约定下周面谈"}, form_url=exec_url)
    assert r.status_code == 302
    assert snapshot(dbs, pk)["items"] == [(item, date(2007, 12, 13), "电话拜访总经理", "约定下周面谈")]

    # 开发成功 from the plan page → customer created, link to its page
    r = m1.post_form(f"/opportunity/succeed/{pk}", {}, form_url=plan_url)
    assert r.status_code == 302
    show = m1.get(r.headers["Location"])
    row = snapshot(dbs, pk)
    assert row["status"] == "succeeded" and row["customer_id"]
    assert f'/customer/show/{row["customer_id"]}' in show.text and "开发成功" in show.text
    with dbs() as s:
        c = s.get(Customer, row["customer_id"])
        assert (c.name, c.manager_id, c.phone) == (name, user_id("manager1"), "010-66668888")
        assert [(k.name, k.office_phone) for k in c.contacts] == [("李雷", "010-66668888")]


def test_html_fail_from_list_and_delete_by_creator(web, dbs, uniq, user_id):
    m1 = web("manager1")
    pk = assigned_opp(dbs, user_id, customer_name=uniq("终止测试"))
    page = m1.get("/opportunity/list/")
    assert f"/opportunity/fail/{pk}" in page.text       # offered on the list
    r = m1.post_form(f"/opportunity/fail/{pk}", {}, form_url="/opportunity/list/")
    assert r.status_code == 302 and snapshot(dbs, pk)["status"] == "failed"
    assert events_of(dbs, pk)[-1] == ("fail", "assigned", "failed")

    # the creator deletes an unassigned one (POST + CSRF); GET does not delete
    pk2 = new_opp(dbs, user_id("manager1"), customer_name=uniq("删除测试"))
    m1.get(f"/opportunity/delete/{pk2}")
    assert snapshot(dbs, pk2) is not None
    r = m1.post_form(f"/opportunity/delete/{pk2}", {}, form_url="/opportunity/list/")
    assert r.status_code == 302
    assert snapshot(dbs, pk2) is None
    assert "删除成功" in m1.get("/opportunity/list/").text


def test_list_search_and_status_in_chinese(web, dbs, uniq, user_id):
    name = uniq("搜索测试")
    pk = assigned_opp(dbs, user_id, customer_name=name)
    page = web("exec").get(f"/opportunity/list/?_flt_2_customer_name={name}")
    assert page.status_code == 200 and name in page.text and "已指派（开发中）" in page.text
    for english in (">assigned<", "List Opportunity", ">Search<"):
        assert english not in page.text
    page = web("exec").get(f"/opportunity/list/?_flt_2_customer_name={name}&_flt_3_status=unassigned")
    # the record is not listed (the name still appears in the search form and export links)
    assert f"/opportunity/show/{pk}" not in page.text and f">{name}<" not in page.text
    page = web("supervisor").get(f"/opportunity/list/?_flt_2_customer_name={name}&_flt_3_status=assigned")
    assert name in page.text
    assert f"/opportunity/show/{pk}" in page.text
    show = web("exec").get(f"/opportunity/show/{pk}")
    assert show.status_code == 200 and "客户开发计划" in show.text
    # 高管 reads but writes nothing
    assert web("exec").get("/opportunity/add").status_code in (302, 403)


def test_my_plans_lists_only_own(web, dbs, uniq, user_id):
    mine, other = uniq("我的"), uniq("别人的")
    assigned_opp(dbs, user_id, "manager1", customer_name=mine)
    assigned_opp(dbs, user_id, "manager2", customer_name=other)
    page = web("manager1").get("/myplan/list/?psize_MyPlanView=100")
    assert page.status_code == 200 and mine in page.text and other not in page.text


# ---- validation -------------------------------------------------------------------------

@pytest.mark.parametrize("change,field", [
    ({"success_rate": 101}, "success_rate"),
    ({"success_rate": -1}, "success_rate"),
    ({"success_rate": "abc"}, "success_rate"),
    ({"success_rate": 50.5}, "success_rate"),
    ({"customer_name": ""}, "customer_name"),
    ({"summary": "   "}, "summary"),
    ({"customer_name": None}, "customer_name"),
    ({"number": "XS1"}, "number"),
    ({"status": "assigned"}, "status"),
])
def test_api_create_validation(api, dbs, uniq, change, field):
    data = body(uniq)
    data.update(change)
    r = api("manager1").post("/api/v1/opportunity/", json=data)
    assert r.status_code == 400 and r.json["field"] == field, r.json
    assert re.search(r"[\u4e00-\u9fff]", r.json["message"])
    with dbs() as s:
        assert s.scalar(select(func.count()).select_from(Opportunity)
                        .where(Opportunity.summary == data.get("summary"),
                               Opportunity.customer_name == (data.get("customer_name") or ""))) == 0


@pytest.mark.parametrize("missing", ["customer_name", "success_rate", "summary", "description"])
def test_api_create_missing_required(api, uniq, missing):
    data = body(uniq)
    del data[missing]
    r = api("manager1").post("/api/v1/opportunity/", json=data)
    assert r.status_code == 400 and r.json["field"] == missing and "不能为空" in r.json["message"]


def test_html_create_validation_keeps_input(web, dbs, uniq):
    m1 = web("manager1")
    name = uniq("校验测试")
    form = {"customer_name": name, "success_rate": "150", "summary": "x", "description": "y"}
    r = m1.post_form("/opportunity/add", form)
    assert r.status_code == 400 and "成功机率必须是 0 到 100 之间的整数" in r.text and name in r.text
    r = m1.post_form("/opportunity/add", dict(form, success_rate="20", description=""))
    assert r.status_code == 400 and "机会描述不能为空" in r.text
    with dbs() as s:
        assert s.scalar(select(func.count()).select_from(Opportunity)
                        .where(Opportunity.customer_name == name)) == 0


@pytest.mark.parametrize("bad", ["2007/12/13", "13-12-2007", "2007-13-01", "2007-2-3", "", "明天"])
def test_plan_item_bad_date(api, dbs, user_id, bad):
    pk = assigned_opp(dbs, user_id)
    r = api("manager1").post(f"/api/v1/opportunity/{pk}/plan_items", json={"date": bad, "content": "拜访"})
    assert r.status_code == 400 and r.json["field"] == "date"
    assert snapshot(dbs, pk)["items"] == []


def test_plan_item_content_required_html_and_api(api, web, dbs, user_id):
    pk = assigned_opp(dbs, user_id)
    r = api("manager1").post(f"/api/v1/opportunity/{pk}/plan_items", json={"date": "2007-12-13"})
    assert r.status_code == 400 and r.json["field"] == "content"
    plan_url = f"/opportunity/plan/{pk}"
    r = web("manager1").post_form(f"{plan_url}/add", {"date": "2007/12/13", "content": "拜访"},
                                  form_url=plan_url)
    assert r.status_code == 400 and "YYYY-MM-DD" in r.text
    assert snapshot(dbs, pk)["items"] == []


def test_plan_date_cannot_change(api, web, dbs, user_id):
    pk = assigned_opp(dbs, user_id, items=1)
    before = snapshot(dbs, pk)
    item = before["items"][0][0]
    c = api("manager1")
    r = c.put(f"/api/v1/opportunity/{pk}/plan_items/{item}", json={"date": "2001-01-01", "content": "新"})
    assert r.status_code == 400 and r.json["field"] == "date" and "日期" in r.json["message"]
    plan_url = f"/opportunity/plan/{pk}"
    r = web("manager1").post_form(f"{plan_url}/item/{item}/edit",
                                  {"date": "2001-01-01", "content": "新"}, form_url=plan_url)
    assert r.status_code == 400
    assert snapshot(dbs, pk) == before


# ---- forbidden paths: 403/409 and nothing changed ----------------------------------------

def test_non_creator_cannot_delete(api, web, dbs, user_id, uniq):
    pk = new_opp(dbs, user_id("manager1"))
    before = snapshot(dbs, pk)
    for who in ("manager2", "supervisor"):
        r = api(who).delete(f"/api/v1/opportunity/{pk}")
        assert r.status_code == 403 and "创建人" in r.json["message"]
    r = web("manager2").post_form(f"/opportunity/delete/{pk}", {}, form_url="/opportunity/list/")
    assert r.status_code == 403
    assert snapshot(dbs, pk) == before
    # another manager may not edit it either
    r = api("manager2").put(f"/api/v1/opportunity/{pk}", json={"summary": "改"})
    assert r.status_code == 403
    assert web("manager2").get(f"/opportunity/edit/{pk}").status_code == 403
    assert snapshot(dbs, pk) == before


def test_manager_cannot_assign(api, web, dbs, user_id):
    pk = new_opp(dbs, user_id("manager1"))
    before = snapshot(dbs, pk)
    r = api("manager1").post(f"/api/v1/opportunity/{pk}/assign", json={"assignee_id": user_id("manager1")})
    assert r.status_code == 403 and re.search(r"[\u4e00-\u9fff]", r.json["message"])
    r = web("manager1").post_form(f"/opportunity/assign/{pk}",
                                  {"assignee_id": str(user_id("manager1"))},
                                  form_url="/opportunity/list/")
    assert r.status_code in (302, 403)
    assert snapshot(dbs, pk) == before
    # the workflow itself refuses too (whatever the role matrix says)
    with dbs() as s:
        with pytest.raises(wf.Forbidden):
            wf.assign(s, Actor(user_id("manager1"), frozenset({"客户经理"})), pk, user_id("manager1"))
        s.rollback()
    assert snapshot(dbs, pk) == before


def test_assign_only_to_active_manager(api, app, dbs, user_id, uniq):
    pk = new_opp(dbs, user_id("manager1"))
    before = snapshot(dbs, pk)
    with app.app_context():
        sm = app.appbuilder.sm
        name = uniq("inactive")
        u = sm.add_user(name, "停", "用", f"{name}@example.com", [sm.find_role("客户经理")],
                        password="x-Pass-12345")
        u.active = False
        db.session.commit()
        inactive = u.id
        db.session.remove()
    sup = api("supervisor")
    for assignee in (user_id("supervisor"), user_id("exec"), inactive, 999999, None, "abc"):
        r = sup.post(f"/api/v1/opportunity/{pk}/assign", json={"assignee_id": assignee})
        assert r.status_code == 400 and r.json["field"] == "assignee_id", (assignee, r.json)
    assert snapshot(dbs, pk) == before


def test_reassign_and_edit_delete_after_assignment_conflict(api, web, dbs, user_id):
    pk = assigned_opp(dbs, user_id, items=1, creator="manager1")
    before = snapshot(dbs, pk)
    r = api("supervisor").post(f"/api/v1/opportunity/{pk}/assign", json={"assignee_id": user_id("manager2")})
    assert r.status_code == 409 and "未指派" in r.json["message"]
    r = web("supervisor").get(f"/opportunity/assign/{pk}")
    assert r.status_code == 409
    r = web("supervisor").post_form(f"/opportunity/assign/{pk}", {"assignee_id": str(user_id("manager2"))},
                                    form_url="/opportunity/list/")
    assert r.status_code == 409
    m1 = api("manager1")
    assert m1.put(f"/api/v1/opportunity/{pk}", json={"summary": "改"}).status_code == 409
    assert m1.delete(f"/api/v1/opportunity/{pk}").status_code == 409
    w = web("manager1")
    assert w.get(f"/opportunity/edit/{pk}").status_code == 409
    r = w.post_form(f"/opportunity/edit/{pk}", {"customer_name": "改", "success_rate": "1",
                                                "summary": "改", "description": "改"},
                    form_url="/opportunity/list/")
    assert r.status_code == 409
    r = w.post_form(f"/opportunity/delete/{pk}", {}, form_url="/opportunity/list/")
    assert r.status_code == 409 and "未指派" in r.text
    assert snapshot(dbs, pk) == before


def test_other_manager_cannot_plan(api, web, dbs, user_id):
    pk = assigned_opp(dbs, user_id, "manager1", items=1)
    before = snapshot(dbs, pk)
    item = before["items"][0][0]
    m2 = api("manager2")
    assert m2.post(f"/api/v1/opportunity/{pk}/plan_items",
                   json={"date": "2007-12-13", "content": "x"}).status_code == 403
    assert m2.put(f"/api/v1/opportunity/{pk}/plan_items/{item}", json={"result": "x"}).status_code == 403
    assert m2.delete(f"/api/v1/opportunity/{pk}/plan_items/{item}").status_code == 403
    assert m2.post(f"/api/v1/opportunity/{pk}/succeed").status_code == 403
    assert m2.post(f"/api/v1/opportunity/{pk}/fail").status_code == 403
    w = web("manager2")
    assert w.get(f"/opportunity/plan/{pk}").status_code == 403
    for url, data in ((f"/opportunity/plan/{pk}/add", {"date": "2007-12-13", "content": "x"}),
                      (f"/opportunity/plan/{pk}/item/{item}/edit", {"content": "x"}),
                      (f"/opportunity/plan/{pk}/item/{item}/delete", {}),
                      (f"/opportunity/execute/{pk}/item/{item}", {"result": "x"}),
                      (f"/opportunity/succeed/{pk}", {}), (f"/opportunity/fail/{pk}", {})):
        assert w.post_form(url, data, form_url="/opportunity/list/").status_code == 403, url
    # 高管 may read but not plan; 销售主管 may plan (see below) but not record results
    assert api("exec").post(f"/api/v1/opportunity/{pk}/plan_items",
                            json={"date": "2007-12-13", "content": "x"}).status_code == 403
    assert api("supervisor").put(f"/api/v1/opportunity/{pk}/plan_items/{item}",
                                 json={"result": "x"}).status_code == 403
    # an item of another opportunity is not reachable through this one
    other = assigned_opp(dbs, user_id, "manager2", items=1)
    other_item = snapshot(dbs, other)["items"][0][0]
    r = api("manager1").put(f"/api/v1/opportunity/{pk}/plan_items/{other_item}", json={"result": "x"})
    assert r.status_code == 404
    assert snapshot(dbs, pk) == before


def test_plan_on_unassigned_is_conflict(api, dbs, user_id):
    pk = new_opp(dbs, user_id("manager1"))
    r = api("manager1").post(f"/api/v1/opportunity/{pk}/plan_items", json={"date": "2007-12-13", "content": "x"})
    assert r.status_code == 409
    assert api("manager1").post(f"/api/v1/opportunity/{pk}/succeed").status_code == 409
    assert snapshot(dbs, pk)["items"] == []


def test_success_and_fail_twice(api, web, dbs, user_id, uniq):
    name = uniq("两次成功")
    pk = assigned_opp(dbs, user_id, items=1, customer_name=name)
    c = api("manager1")
    assert c.post(f"/api/v1/opportunity/{pk}/succeed").status_code == 200
    after = snapshot(dbs, pk)
    for url in (f"/api/v1/opportunity/{pk}/succeed", f"/api/v1/opportunity/{pk}/fail"):
        r = c.post(url)
        assert r.status_code == 409 and "状态" in r.json["message"]
    item = after["items"][0][0]
    assert c.put(f"/api/v1/opportunity/{pk}/plan_items/{item}", json={"result": "x"}).status_code == 409
    r = web("manager1").post_form(f"/opportunity/succeed/{pk}", {}, form_url="/opportunity/list/")
    assert r.status_code == 409
    assert snapshot(dbs, pk) == after and count_customers(dbs, name) == 1

    pk2 = assigned_opp(dbs, user_id, customer_name=uniq("两次终止"))
    assert c.post(f"/api/v1/opportunity/{pk2}/fail").status_code == 200
    after2 = snapshot(dbs, pk2)
    assert c.post(f"/api/v1/opportunity/{pk2}/fail").status_code == 409
    assert c.post(f"/api/v1/opportunity/{pk2}/succeed").status_code == 409
    assert snapshot(dbs, pk2) == after2 and after2["customer_id"] is None
    assert [e[0] for e in events_of(dbs, pk2)] == ["fail"]


def test_executive_cannot_create(api, uniq, dbs):
    data = body(uniq)
    r = api("exec").post("/api/v1/opportunity/", json=data)
    assert r.status_code == 403
    with dbs() as s:
        assert s.scalar(select(func.count()).select_from(Opportunity)
                        .where(Opportunity.customer_name == data["customer_name"])) == 0


def test_put_only_listed_fields(api, dbs, user_id):
    pk = new_opp(dbs, user_id("manager1"))
    before = snapshot(dbs, pk)
    for change in ({"status": "assigned"}, {"assignee_id": user_id("manager1")}, {"number": "X"},
                   {"success_rate": 101}, {"summary": ""}):
        r = api("manager1").put(f"/api/v1/opportunity/{pk}", json=change)
        assert r.status_code == 400, change
    assert snapshot(dbs, pk) == before


# ---- concurrency ----------------------------------------------------------------------

def test_concurrent_assigns_one_wins(app, api, dbs, user_id):
    pk = new_opp(dbs, user_id("manager1"))
    sup = api("supervisor")
    clients = [api("supervisor"), api("admin")]
    assert sup.get(f"/api/v1/opportunity/{pk}").status_code == 200
    barrier = threading.Barrier(2)
    results = [None, None]

    def run(i, assignee):
        barrier.wait()
        r = clients[i].post(f"/api/v1/opportunity/{pk}/assign", json={"assignee_id": assignee})
        results[i] = (r.status_code, r.json)

    threads = [threading.Thread(target=run, args=(0, user_id("manager1"))),
               threading.Thread(target=run, args=(1, user_id("manager2")))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(code for code, _ in results)
    assert codes == [200, 409], results
    winner = next(i for i, (code, _) in enumerate(results) if code == 200)
    row = snapshot(dbs, pk)
    assert row["status"] == "assigned"
    assert row["assignee_id"] == (user_id("manager1"), user_id("manager2"))[winner]
    assert [e[0] for e in events_of(dbs, pk)] == ["assign"]


def test_compare_and_set_catches_stale_read(app, dbs, user_id):
    """Session B read the opportunity as unassigned before A assigned it: B's assign
    still loses with a Conflict (the UPDATE ... WHERE status = 'unassigned')."""
    pk = new_opp(dbs, user_id("manager1"))
    sup = Actor(user_id("supervisor"), frozenset({"销售主管"}))
    with app.app_context():
        from sqlalchemy.orm import Session
        b = Session(db.engine)
        assert b.get(Opportunity, pk).status == "unassigned"     # B's stale copy
        with dbs() as a:
            wf.assign(a, sup, pk, user_id("manager1"))
            a.commit()
        with pytest.raises(Conflict):
            wf.assign(b, sup, pk, user_id("manager2"))
        b.rollback()
        b.close()
    row = snapshot(dbs, pk)
    assert (row["status"], row["assignee_id"]) == ("assigned", user_id("manager1"))
    assert [e[0] for e in events_of(dbs, pk)] == ["assign"]


# ---- 销售主管 makes plans too (issue 18 item 3) ------------------------------------------------

def test_supervisor_plans_any_assigned_opportunity_api(api, dbs, user_id):
    pk = assigned_opp(dbs, user_id, "manager2", items=1)
    item = snapshot(dbs, pk)["items"][0][0]
    sup = api("supervisor")
    r = sup.post(f"/api/v1/opportunity/{pk}/plan_items", json={"date": "2030-01-15", "content": "主管：安排技术交流"})
    assert r.status_code == 201, r.json
    new_item = r.json["id"]
    r = sup.put(f"/api/v1/opportunity/{pk}/plan_items/{item}", json={"content": "主管改：上门演示"})
    assert r.status_code == 200 and r.json["result"]["content"] == "主管改：上门演示"
    with dbs() as s:
        assert s.get(PlanItem, new_item).created_by_fk == user_id("supervisor")
    # results, 开发成功 and 终止开发 stay with the assignee
    before = snapshot(dbs, pk)
    assert sup.put(f"/api/v1/opportunity/{pk}/plan_items/{item}",
                   json={"content": "y", "result": "x"}).status_code == 403
    assert sup.post(f"/api/v1/opportunity/{pk}/succeed").status_code == 403
    assert sup.post(f"/api/v1/opportunity/{pk}/fail").status_code == 403
    assert snapshot(dbs, pk) == before
    # the assignee sees the supervisor's items and records their results
    m2 = api("manager2")
    assert m2.put(f"/api/v1/opportunity/{pk}/plan_items/{new_item}", json={"result": "客户认可"}).status_code == 200
    assert sup.delete(f"/api/v1/opportunity/{pk}/plan_items/{item}").status_code == 200
    assert [i["content"] for i in m2.get(f"/api/v1/opportunity/{pk}").json["result"]["plan_items"]] == \
        ["主管：安排技术交流"]


def test_supervisor_plans_html(web, dbs, user_id):
    pk = assigned_opp(dbs, user_id, "manager1", items=1)
    item = snapshot(dbs, pk)["items"][0][0]
    w = web("supervisor")
    plan_url = f"/opportunity/plan/{pk}"
    page = w.get(plan_url)
    assert page.status_code == 200 and "添加计划项" in page.text
    assert f"/opportunity/succeed/{pk}" not in page.text      # no closing buttons for 主管
    assert f'href="{plan_url}"' in w.get(f"/opportunity/show/{pk}").text
    assert f"/opportunity/execute/{pk}" not in w.get(f"/opportunity/show/{pk}").text
    r = w.post_form(f"{plan_url}/add", {"date": "2030-02-01", "content": "主管安排：报价"}, form_url=plan_url)
    assert r.status_code == 302
    r = w.post_form(f"{plan_url}/item/{item}/edit", {"content": "主管修改"}, form_url=plan_url)
    assert r.status_code == 302
    contents = [i[2] for i in snapshot(dbs, pk)["items"]]
    assert "主管安排：报价" in contents and "主管修改" in contents
    r = w.post_form(f"{plan_url}/item/{item}/delete", {}, form_url=plan_url)
    assert r.status_code == 302
    before = snapshot(dbs, pk)
    assert w.get(f"/opportunity/execute/{pk}").status_code == 403
    new_item = before["items"][0][0]
    for url, data in ((f"/opportunity/execute/{pk}/item/{new_item}", {"result": "x"}),
                      (f"/opportunity/succeed/{pk}", {}), (f"/opportunity/fail/{pk}", {})):
        assert w.post_form(url, data, form_url=plan_url).status_code == 403, url
    assert snapshot(dbs, pk) == before


def test_plan_rules_in_workflow(dbs, user_id):
    sup = Actor(user_id("supervisor"), frozenset({"销售主管"}))
    m1 = Actor(user_id("manager1"), frozenset({"客户经理"}))
    m2 = Actor(user_id("manager2"), frozenset({"客户经理"}))
    ex = Actor(user_id("exec"), frozenset({"高管"}))
    pk = assigned_opp(dbs, user_id, "manager1")
    unassigned = new_opp(dbs, user_id("manager1"))
    with dbs() as s:
        o, u = s.get(Opportunity, pk), s.get(Opportunity, unassigned)
        assert wf.can_plan(sup, o) and wf.can_plan(m1, o)
        assert not wf.can_plan(m2, o) and not wf.can_plan(ex, o)
        assert not wf.can_plan(sup, u)
        assert wf.can_develop(m1, o) and not wf.can_develop(sup, o)
        with pytest.raises(wf.Forbidden):
            wf.require_plan(m2, o)
        with pytest.raises(Conflict):
            wf.require_plan(sup, u)
        wf.require_plan(sup, o)


def test_supervisor_plan_on_closed_opportunity_is_conflict(api, dbs, user_id):
    pk = assigned_opp(dbs, user_id, "manager1", items=1)
    assert api("manager1").post(f"/api/v1/opportunity/{pk}/fail").status_code == 200
    before = snapshot(dbs, pk)
    r = api("supervisor").post(f"/api/v1/opportunity/{pk}/plan_items", json={"date": "2030-01-01", "content": "x"})
    assert r.status_code == 409
    assert snapshot(dbs, pk) == before


# ---- one rule per step (issue 19) -------------------------------------------------------

def test_can_and_require_are_one_rule_per_step(dbs, user_id):
    """can_<step> is require_<step> as a bool, and ``may`` is made of them, for every
    role on every state."""
    actors = [Actor(user_id(u), frozenset({r})) for u, r in
              (("supervisor", "销售主管"), ("manager1", "客户经理"), ("manager2", "客户经理"),
               ("exec", "高管"))]
    pks = [new_opp(dbs, user_id("manager1"))]
    for status in ("assigned", "succeeded", "failed"):
        with dbs() as s:
            o = f.opportunity(s, user_id("manager1"), status=status, assignee_id=user_id("manager1"))
            s.commit()
            pks.append(o.id)
    with dbs() as s:
        for pk in pks:
            o = s.get(Opportunity, pk)
            for a in actors:
                may = wf.may(a, o)
                assert set(may) == set(wf.STEPS)
                for step in wf.STEPS:
                    try:
                        getattr(wf, f"require_{step}")(a, o)
                        allowed = True
                    except (wf.Forbidden, Conflict):
                        allowed = False
                    assert getattr(wf, f"can_{step}")(a, o) is allowed is may[step], (step, o.status)
    # the table of docs/modules/opportunities.md
    sup, m1, m2, ex = actors
    with dbs() as s:
        u, a = s.get(Opportunity, pks[0]), s.get(Opportunity, pks[1])
        assert wf.may(m1, u) == dict(edit=True, delete=True, assign=False, plan=False,
                                     execute=False, succeed=False, fail=False,
                                     update_forecast=False)
        assert wf.may(sup, u) == dict(edit=True, delete=False, assign=True, plan=False,
                                      execute=False, succeed=False, fail=False,
                                      update_forecast=False)
        assert wf.may(m2, u)["edit"] is False and wf.may(ex, u)["edit"] is False
        assert wf.may(m1, a) == dict(edit=False, delete=False, assign=False, plan=True,
                                     execute=True, succeed=True, fail=True, update_forecast=True)
        assert wf.may(sup, a)["plan"] and not wf.may(sup, a)["succeed"]
        assert wf.may(sup, a)["update_forecast"]
        assert not any(wf.may(m2, a).values())


def test_show_page_buttons_follow_may(web, dbs, user_id):
    pk = assigned_opp(dbs, user_id, "manager1")
    mine = web("manager1").get(f"/opportunity/show/{pk}").text
    for url in (f"/opportunity/plan/{pk}", f"/opportunity/execute/{pk}",
                f"/opportunity/succeed/{pk}", f"/opportunity/fail/{pk}"):
        assert url in mine
    other = web("manager2").get(f"/opportunity/show/{pk}").text
    assert f"/opportunity/succeed/{pk}" not in other and f"/opportunity/plan/{pk}" not in other
    # 我的开发计划 offers the assignee's buttons too
    page = web("manager1").get("/myplan/list/?psize_MyPlanView=100").text
    assert f"/opportunity/execute/{pk}" in page and f"/opportunity/fail/{pk}" in page


def test_api_succeed_refuses_a_body_that_is_not_an_object(api, dbs, user_id):
    pk = assigned_opp(dbs, user_id)
    before = snapshot(dbs, pk)
    c = api("manager1")
    for raw in ("[1]", "null", "abc"):
        r = c.post(f"/api/v1/opportunity/{pk}/succeed", data=raw,
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "JSON" in r.json["message"], raw
    r = c.post(f"/api/v1/opportunity/{pk}/succeed", json={"create_anyway": "yes"})
    assert r.status_code == 400 and r.json["field"] == "create_anyway"
    assert snapshot(dbs, pk) == before


def test_customer_name_with_control_characters_is_refused(api, uniq):
    r = api("manager1").post("/api/v1/opportunity/",
                             json=body(uniq, customer_name="北京\u202e科技", contact="张\n三"))
    assert r.status_code == 400
    assert {e["field"] for e in r.json["errors"]} == {"customer_name", "contact"}


# ---- 批量指派 (issue 21.5) ------------------------------------------------------------------

def test_bulk_assign_api_happy(api, dbs, user_id, uniq):
    pks = [new_opp(dbs, user_id("manager1"), customer_name=uniq("批量")) for _ in range(3)]
    r = api("supervisor").post("/api/v1/opportunity/bulk_assign",
                               json={"ids": pks, "assignee_id": user_id("manager2")})
    assert r.status_code == 200, r.json
    assert [(x["id"], x["ok"], x["code"]) for x in r.json["results"]] == [(pk, True, 200) for pk in pks]
    assert all("已指派给 manager2" in x["message"] for x in r.json["results"])
    for pk in pks:
        row = snapshot(dbs, pk)
        assert (row["status"], row["assignee_id"]) == ("assigned", user_id("manager2"))
        assert row["assigned_on"] is not None
        assert events_of(dbs, pk) == [("assign", "unassigned", "assigned")]


def test_bulk_assign_forbidden_changes_nothing(api, web, dbs, user_id):
    pks = [new_opp(dbs, user_id("manager1")) for _ in range(2)]
    before = [snapshot(dbs, pk) for pk in pks]
    body_ = {"ids": pks, "assignee_id": user_id("manager1")}
    for who in ("manager1", "exec"):
        r = api(who).post("/api/v1/opportunity/bulk_assign", json=body_)
        assert r.status_code == 403 and re.search(r"[\u4e00-\u9fff]", r.json["message"])
        assert web(who).get("/opportunity/bulk_assign").status_code in (302, 403)
        r = web(who).post_form("/opportunity/bulk_assign",
                               {"ids": [str(pk) for pk in pks], "assignee_id": str(user_id("manager1"))},
                               form_url="/opportunity/list/")
        assert r.status_code in (302, 403)
    assert api().post("/api/v1/opportunity/bulk_assign", json=body_).status_code == 401
    # the workflow refuses too, whatever the role matrix says
    with dbs() as s:
        with pytest.raises(wf.Forbidden):
            wf.assign_many(s, Actor(user_id("manager1"), frozenset({"客户经理"})), pks,
                           user_id("manager1"))
        s.rollback()
    assert [snapshot(dbs, pk) for pk in pks] == before
    assert all(events_of(dbs, pk) == [] for pk in pks)


def test_bulk_assign_refuses_rows_assigned_meanwhile(api, dbs, user_id):
    """A row another supervisor assigned after the list was shown is refused (409 reason),
    a row that does not exist is refused (404), the others are assigned."""
    a, b, c = (new_opp(dbs, user_id("manager1")) for _ in range(3))
    sup = api("supervisor")
    assert api("admin").post(f"/api/v1/opportunity/{b}/assign",
                             json={"assignee_id": user_id("manager1")}).status_code == 200
    taken = snapshot(dbs, b)
    r = sup.post("/api/v1/opportunity/bulk_assign",
                 json={"ids": [a, b, 2**31 - 1, c], "assignee_id": user_id("manager2")})
    assert r.status_code == 200, r.json
    res = {x["id"]: x for x in r.json["results"]}
    assert [x["id"] for x in r.json["results"]] == [a, b, 2**31 - 1, c]
    assert res[a]["ok"] and res[c]["ok"]
    assert not res[b]["ok"] and res[b]["code"] == 409 and "未指派" in res[b]["message"]
    assert not res[2**31 - 1]["ok"] and res[2**31 - 1]["code"] == 404
    assert snapshot(dbs, b) == taken
    assert snapshot(dbs, a)["assignee_id"] == snapshot(dbs, c)["assignee_id"] == user_id("manager2")


def test_bulk_assign_lost_race_in_workflow(app, dbs, user_id):
    """The row was read as 未指派 by this session, then assigned by another one before
    our UPDATE: its compare-and-set fails, that row only is refused and rolled back."""
    first, second = new_opp(dbs, user_id("manager1")), new_opp(dbs, user_id("manager1"))
    sup = Actor(user_id("supervisor"), frozenset({"销售主管"}))
    with app.app_context():
        from sqlalchemy.orm import Session
        b = Session(db.engine)
        stale = b.get(Opportunity, first)          # B's copy (held: the identity map is weak)
        assert stale.status == "unassigned"
        with dbs() as other:
            wf.assign(other, sup, first, user_id("manager1"))
            other.commit()
        results = wf.assign_many(b, sup, [first, second], user_id("manager2"))
        b.commit()
        b.close()
    assert [(x["id"], x["ok"], x["code"]) for x in results] == [(first, False, 409), (second, True, 200)]
    assert "他人" in results[0]["message"]
    assert snapshot(dbs, first)["assignee_id"] == user_id("manager1")
    assert snapshot(dbs, second)["assignee_id"] == user_id("manager2")
    assert [e[0] for e in events_of(dbs, first)] == ["assign"]


@pytest.mark.parametrize("payload", [
    None, [], "x", {"ids": []}, {"ids": "1,2"}, {"ids": [True]}, {"ids": [1.5]},
    {"ids": ["abc"]}, {"ids": [-1]}, {"ids": [2**40]}, {"ids": [{"id": 1}]},
    {"ids": list(range(1, 102))}, {"assignee_id": 1},
])
def test_bulk_assign_garbage_is_400(api, dbs, user_id, payload):
    pk = new_opp(dbs, user_id("manager1"))
    before = snapshot(dbs, pk)
    if isinstance(payload, dict):
        payload = dict({"assignee_id": user_id("manager1")}, **payload)
        payload.setdefault("ids", [pk])
        if payload.get("ids") == [pk]:
            payload["assignee_id"] = "abc"       # then the assignee is the garbage
    r = api("supervisor").post("/api/v1/opportunity/bulk_assign", json=payload)
    assert r.status_code == 400, (payload, r.status_code, r.json)
    assert re.search(r"[\u4e00-\u9fff]", r.json["message"])
    assert snapshot(dbs, pk) == before


@pytest.mark.parametrize("assignee", ["supervisor", "exec", None, "999999", ""])
def test_bulk_assign_wrong_assignee_changes_nothing(api, dbs, user_id, assignee):
    pks = [new_opp(dbs, user_id("manager1")) for _ in range(2)]
    before = [snapshot(dbs, pk) for pk in pks]
    value = user_id(assignee) if assignee in ("supervisor", "exec") else assignee
    r = api("supervisor").post("/api/v1/opportunity/bulk_assign", json={"ids": pks, "assignee_id": value})
    assert r.status_code == 400 and r.json["field"] == "assignee_id"
    assert [snapshot(dbs, pk) for pk in pks] == before


def test_bulk_assign_html(web, dbs, user_id, uniq):
    name = uniq("网页批量")
    a, b, c = (new_opp(dbs, user_id("manager1"), customer_name=f"{name}{k}") for k in range(3))
    sup = web("supervisor")
    lst = sup.get("/opportunity/list/")
    assert "/opportunity/bulk_assign" in lst.text and "批量指派" in lst.text
    assert "/opportunity/bulk_assign" not in web("manager1").get("/opportunity/list/").text
    page = sup.get(f"/opportunity/bulk_assign?q={name}")
    assert page.status_code == 200 and "批量指派销售机会" in page.text
    for pk in (a, b, c):
        assert f'name="ids" value="{pk}"' in page.text
    # b is assigned by someone else after the page was shown
    assert web("admin").post_form(f"/opportunity/assign/{b}",
                                  {"assignee_id": str(user_id("manager1"))}).status_code == 302
    r = sup.post_form("/opportunity/bulk_assign",
                      {"ids": [str(a), str(b), str(c)], "assignee_id": str(user_id("manager2")),
                       "q": name}, form_url=f"/opportunity/bulk_assign?q={name}")
    assert r.status_code == 200
    text = flash_text(r)
    assert "指派结果" in text and text.count("已指派给 manager2") == 2 and "未指派（被拒绝）" in text
    assert f'name="ids" value="{a}"' not in r.text       # no longer offered
    assert snapshot(dbs, a)["assignee_id"] == snapshot(dbs, c)["assignee_id"] == user_id("manager2")
    assert snapshot(dbs, b)["assignee_id"] == user_id("manager1")
    # nothing ticked / no 客户经理: 400 with the reason, nothing changed
    d = new_opp(dbs, user_id("manager1"), customer_name=f"{name}d")
    before = snapshot(dbs, d)
    r = sup.post_form("/opportunity/bulk_assign", {"assignee_id": str(user_id("manager2"))},
                      form_url="/opportunity/bulk_assign")
    assert r.status_code == 400 and "请选择要指派的销售机会" in r.text
    r = sup.post_form("/opportunity/bulk_assign", {"ids": [str(d)], "assignee_id": ""},
                      form_url="/opportunity/bulk_assign")
    assert r.status_code == 400 and "请选择要指派的客户经理" in r.text
    r = sup.post_form("/opportunity/bulk_assign", {"ids": ["x' or 1=1"], "assignee_id": "1"},
                      form_url="/opportunity/bulk_assign")
    assert r.status_code == 400
    assert snapshot(dbs, d) == before
    # without the CSRF token nothing happens
    assert sup.post("/opportunity/bulk_assign",
                    data={"ids": [str(d)], "assignee_id": str(user_id("manager2"))}).status_code == 400
    assert snapshot(dbs, d) == before
