"""客户管理: customers, contacts, interaction records, historical orders (HTML with CSRF
and REST API).

Every forbidden path answers 403/409 and leaves the rows as they were; every test
creates its own uniquely named data. Runs on SQLite and (with CRM_TEST_DATABASE_URL)
on PostgreSQL.
"""
import re
from datetime import date, timedelta

import pytest
from sqlalchemy import event, func, select

from app.extensions import db
from app.models import Activity, Contact, Customer
from app.views.sections import CUSTOMER_SECTIONS, customer_section

from . import factories as f

CUSTOMER_FIELDS = {"id", "number", "name", "region", "manager_id", "level", "satisfaction",
                   "credit", "address", "zip_code", "phone", "fax", "website", "license_no",
                   "legal_person", "registered_capital", "annual_turnover", "bank",
                   "bank_account", "local_tax_no", "national_tax_no", "status"}
CONTACT_FIELDS = {"id", "customer_id", "name", "gender", "position", "office_phone", "mobile",
                  "email", "memo"}
ACTIVITY_FIELDS = {"id", "customer_id", "date", "place", "summary", "detail", "memo"}
ROLES = ["admin", "exec", "supervisor", "manager1", "manager2"]
HAN = re.compile(r"[\u4e00-\u9fff]")


# ---- helpers --------------------------------------------------------------------------------

def new_customer(dbs, user_id, manager="manager1", contacts=0, activities=0, **kw):
    with dbs() as s:
        c = f.customer(s, user_id(manager), **kw)
        for k in range(contacts):
            f.contact(s, c, user_id(manager), name=f"联系人{k}")
        for k in range(activities):
            f.activity(s, c, user_id(manager), summary=f"拜访{k}",
                       date=date.today() - timedelta(days=k))
        s.commit()
        return c.id


def snapshot(dbs, cid):
    """Everything a step could change: the row, its contacts and activities."""
    with dbs() as s:
        c = s.get(Customer, cid)
        row = {k: getattr(c, k) for k in Customer.__table__.columns.keys()}
        row["contacts"] = [tuple(getattr(p, k) for k in Contact.__table__.columns.keys())
                           for p in s.scalars(select(Contact).where(Contact.customer_id == cid)
                                              .order_by(Contact.id))]
        row["activities"] = [tuple(getattr(a, k) for k in Activity.__table__.columns.keys())
                             for a in s.scalars(select(Activity).where(Activity.customer_id == cid)
                                                .order_by(Activity.id))]
        return row


def one_contact(dbs, cid):
    with dbs() as s:
        return s.scalar(select(Contact.id).where(Contact.customer_id == cid).order_by(Contact.id))


def one_activity(dbs, cid):
    with dbs() as s:
        return s.scalar(select(Activity.id).where(Activity.customer_id == cid).order_by(Activity.id))


def form_of(cust_row, **kw):
    """The edit form as a browser posts it (FAB field names; selects post ids)."""
    data = {k: ("" if cust_row[k] is None else str(cust_row[k])) for k in
            ("name", "address", "zip_code", "phone", "fax", "website", "license_no",
             "legal_person", "bank", "bank_account", "local_tax_no", "national_tax_no",
             "satisfaction", "credit", "registered_capital", "annual_turnover")}
    data["region"] = str(cust_row["region_id"] or "")
    data["level"] = str(cust_row["level_id"] or "")
    data["manager"] = str(cust_row["manager_id"])
    data.update(kw)
    return data


def api_body(uniq, **kw):
    data = dict(name=uniq("上海测试贸易有限公司"), region="华北", level="重点开发客户",
                satisfaction=3, credit=5, address="上海市浦东新区世纪大道100号",
                zip_code="200120", phone="021-50001234", legal_person="赵六", bank="工商银行",
                bank_account="6222000011112222")
    data.update(kw)
    return data


def text_of(page):
    return re.sub(r"\s+", " ", page.text)


def dict_id(dbs, type_, item):
    with dbs() as s:
        return f.dict_item(s, type_, item).id


# ---- read rights ----------------------------------------------------------------------------

@pytest.mark.parametrize("username", ROLES)
def test_every_role_reads_every_customer(web, api, dbs, user_id, username):
    cid = new_customer(dbs, user_id, "manager2", contacts=1, activities=1)
    w = web(username)
    for url in ("/customer/list/", f"/customer/show/{cid}", f"/contacts/customer/{cid}",
                f"/activities/customer/{cid}"):
        r = w.get(url)
        assert r.status_code == 200, (url, r.status_code)
    c = api(username)
    r = c.get(f"/api/v1/customer/{cid}")
    assert r.status_code == 200 and set(r.json["result"]) == CUSTOMER_FIELDS
    q = f"(filters:!((col:customer_id,opr:eq,value:{cid})))"
    r = c.get(f"/api/v1/contact/?q={q}")
    assert r.status_code == 200 and r.json["count"] == 1
    assert set(r.json["result"][0]) == CONTACT_FIELDS
    r = c.get(f"/api/v1/activity/?q={q}")
    assert r.status_code == 200 and r.json["count"] == 1
    assert set(r.json["result"][0]) == ACTIVITY_FIELDS


def test_anonymous_reads_nothing(web, api, dbs, user_id):
    cid = new_customer(dbs, user_id)
    assert api().get(f"/api/v1/customer/{cid}").status_code == 401
    assert api().get("/api/v1/contact/").status_code == 401
    r = web().get(f"/customer/show/{cid}")
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_api_fields_and_dictionary_text(api, dbs, user_id):
    cid = new_customer(dbs, user_id, registered_capital=1000, annual_turnover="1234567.5")
    one = api("exec").get(f"/api/v1/customer/{cid}").json["result"]
    assert one["region"] == "北京" and one["level"] == "大客户"
    assert one["manager_id"] == user_id("manager1") and one["status"] == "normal"
    assert one["registered_capital"] == "1000.00" and one["annual_turnover"] == "1234567.50"
    with dbs() as s:
        number = s.get(Customer, cid).number
    q = f"(filters:!((col:number,opr:eq,value:'{number}')))"
    lst = api("manager2").get(f"/api/v1/customer/?q={q}").json
    assert lst["count"] == 1 and lst["result"][0] == one
    # customers are never deleted
    assert api("admin").delete(f"/api/v1/customer/{cid}").status_code == 405


def test_my_customers_filter(web, dbs, user_id, uniq):
    name = uniq("我的客户测试")
    mine = new_customer(dbs, user_id, "manager1", name=name + "甲")
    other = new_customer(dbs, user_id, "manager2", name=name + "乙")
    w = web("manager1")
    r = w.get("/customer/mine")
    assert r.status_code == 302
    page = w.get(r.headers["Location"] + f"&_flt_2_name={name}")
    assert page.status_code == 200 and "我的客户" in page.text
    assert f"/customer/show/{mine}" in page.text and f"/customer/show/{other}" not in page.text
    # the menu has the entry
    assert "我的客户" in w.get("/customer/list/").text


# ---- write rights: HTML (CSRF on) -----------------------------------------------------------

def test_html_edit_own_customer_then_back_to_list(web, dbs, user_id, uniq):
    cid = new_customer(dbs, user_id, "manager1")
    row = snapshot(dbs, cid)
    w = web("manager1")
    page = w.get(f"/customer/edit/{cid}")
    assert page.status_code == 200 and "编辑客户信息" in page.text and "客户满意度" in page.text
    new_name = uniq("新名称有限公司")
    data = form_of(row, name=new_name, zip_code="100190", phone="010-82345678",
                   level=str(dict_id(dbs, "客户等级", "战略合作伙伴")))
    data.pop("manager")  # the 客户经理 select is disabled for a 客户经理
    r = w.post_form(f"/customer/edit/{cid}", data)
    assert r.status_code == 302 and r.headers["Location"].endswith("/customer/list/")
    assert "保存成功" in w.get("/customer/list/").text
    after = snapshot(dbs, cid)
    assert (after["name"], after["zip_code"], after["phone"]) == (new_name, "100190", "010-82345678")
    assert after["level_id"] == dict_id(dbs, "客户等级", "战略合作伙伴")
    assert after["manager_id"] == user_id("manager1") and after["changed_by_fk"] == user_id("manager1")


def test_html_edit_of_another_managers_customer_is_403(web, dbs, user_id):
    cid = new_customer(dbs, user_id, "manager2")
    before = snapshot(dbs, cid)
    w = web("manager1")
    assert w.get(f"/customer/edit/{cid}").status_code == 403
    r = w.post_form(f"/customer/edit/{cid}", form_of(before, name="抢过来的客户"),
                    form_url="/customer/add")
    assert r.status_code == 403 and "客户经理" in r.text
    assert snapshot(dbs, cid) == before
    # no edit icon for other managers' customers on the list
    page = web("manager2").get(f"/customer/show/{cid}")
    assert "编辑客户信息" in page.text
    assert "编辑客户信息" not in w.get(f"/customer/show/{cid}").text


def test_html_post_without_csrf_changes_nothing(web, dbs, user_id):
    cid = new_customer(dbs, user_id, "manager1")
    before = snapshot(dbs, cid)
    r = web("manager1").post(f"/customer/edit/{cid}", data=form_of(before, name="无令牌"))
    assert r.status_code == 400
    assert snapshot(dbs, cid) == before


@pytest.mark.parametrize("username", ["supervisor", "admin"])
def test_html_supervisor_and_admin_edit_any_and_reassign(web, dbs, user_id, username):
    cid = new_customer(dbs, user_id, "manager2")
    row = snapshot(dbs, cid)
    r = web(username).post_form(f"/customer/edit/{cid}",
                                form_of(row, manager=str(user_id("manager1")), credit="5"))
    assert r.status_code == 302
    after = snapshot(dbs, cid)
    assert after["manager_id"] == user_id("manager1") and after["credit"] == 5


def test_manager_cannot_hand_his_customer_to_someone_else(web, api, dbs, user_id):
    cid = new_customer(dbs, user_id, "manager1")
    before = snapshot(dbs, cid)
    r = web("manager1").post_form(f"/customer/edit/{cid}",
                                  form_of(before, manager=str(user_id("manager2"))))
    assert r.status_code == 403 and "销售主管" in r.text
    r = api("manager1").put(f"/api/v1/customer/{cid}", json={"manager_id": user_id("manager2")})
    assert r.status_code == 403 and HAN.search(r.json["message"])
    assert snapshot(dbs, cid) == before


def test_executive_cannot_write(web, api, dbs, user_id, uniq):
    cid = new_customer(dbs, user_id, "manager1")
    before = snapshot(dbs, cid)
    w = web("exec")
    assert w.get(f"/customer/edit/{cid}").status_code in (302, 403)
    assert w.get("/customer/add").status_code in (302, 403)
    assert w.get(f"/contacts/customer/{cid}/add").status_code in (302, 403)
    c = api("exec")
    assert c.put(f"/api/v1/customer/{cid}", json={"credit": 1}).status_code == 403
    assert c.post("/api/v1/customer/", json=api_body(uniq)).status_code == 403
    assert c.post("/api/v1/contact/", json={"customer_id": cid, "name": "x", "gender": "男",
                                            "position": "x", "office_phone": "010-12345678"}
                  ).status_code == 403
    assert snapshot(dbs, cid) == before


# ---- write rights: API ----------------------------------------------------------------------

def test_api_edit_rights(api, dbs, user_id):
    own = new_customer(dbs, user_id, "manager1")
    other = new_customer(dbs, user_id, "manager2")
    before = snapshot(dbs, other)
    m1 = api("manager1")
    r = m1.put(f"/api/v1/customer/{own}", json={"satisfaction": 5, "region": "东北", "level": "合作伙伴"})
    assert r.status_code == 200, r.json
    assert (r.json["result"]["satisfaction"], r.json["result"]["region"],
            r.json["result"]["level"]) == (5, "东北", "合作伙伴")
    assert r.json["message"] == "保存成功"
    r = m1.put(f"/api/v1/customer/{other}", json={"satisfaction": 5})
    assert r.status_code == 403 and "客户经理" in r.json["message"]
    assert snapshot(dbs, other) == before
    for username in ("supervisor", "admin"):
        r = api(username).put(f"/api/v1/customer/{other}", json={"fax": "010-66668888"})
        assert r.status_code == 200 and r.json["result"]["fax"] == "010-66668888"
    # a GET result can be PUT back as it is (system fields unchanged)
    got = m1.get(f"/api/v1/customer/{own}").json["result"]
    assert m1.put(f"/api/v1/customer/{own}", json=got).status_code == 200
    for key, value in (("number", "KH000"), ("status", "lost"), ("created_by_fk", 1)):
        r = m1.put(f"/api/v1/customer/{own}", json={key: value})
        assert r.status_code == 400 and r.json["field"] == key and HAN.search(r.json["message"])
    assert m1.put("/api/v1/customer/999999999", json={"fax": "x"}).status_code == 404


def test_api_create_rights_and_number(api, dbs, user_id, uniq):
    r = api("supervisor").post("/api/v1/customer/",
                               json=api_body(uniq, manager_id=user_id("manager2")))
    assert r.status_code == 201, r.json
    body = r.json["result"]
    assert re.fullmatch(r"KH\d{8}\d{4,}", body["number"]) and body["status"] == "normal"
    assert body["manager_id"] == user_id("manager2") and body["region"] == "华北"
    # a 客户经理 creates for himself only
    r = api("manager1").post("/api/v1/customer/", json=api_body(uniq))
    assert r.status_code == 201 and r.json["result"]["manager_id"] == user_id("manager1")
    name = uniq("别人的客户")
    r = api("manager1").post("/api/v1/customer/",
                             json=api_body(uniq, name=name, manager_id=user_id("manager2")))
    assert r.status_code == 403 and "自己" in r.json["message"]
    with dbs() as s:
        assert s.scalar(select(func.count()).select_from(Customer).where(Customer.name == name)) == 0
    # two customers never share a number
    r2 = api("manager1").post("/api/v1/customer/", json=api_body(uniq))
    assert r2.json["result"]["number"] != r.json.get("result", {}).get("number")


def test_html_create_by_manager(web, dbs, user_id, uniq):
    w = web("manager1")
    page = w.get("/customer/add")
    assert page.status_code == 200 and "新建客户" in page.text and "保存时自动生成" in page.text
    name = uniq("手工新建客户有限公司")
    data = {"name": name, "region": str(dict_id(dbs, "地区", "西部")),
            "level": str(dict_id(dbs, "客户等级", "普通客户")), "satisfaction": "3",
            "credit": "4", "address": "成都市高新区天府大道1号", "zip_code": "610041",
            "phone": "028-85551234", "legal_person": "钱七", "bank": "建设银行",
            "bank_account": "6227000000000001", "website": "https://www.example.cn",
            "registered_capital": "500", "annual_turnover": ""}
    r = w.post_form("/customer/add", data)
    assert r.status_code == 302 and r.headers["Location"].endswith("/customer/list/")
    with dbs() as s:
        c = s.scalar(select(Customer).where(Customer.name == name))
        assert c.manager_id == user_id("manager1") and c.number.startswith("KH")
        assert c.region.item == "西部" and str(c.registered_capital) == "500.00"


# ---- lost customers are read-only -----------------------------------------------------------

@pytest.mark.parametrize("status,label", [("lost", "已流失"), ("merged", "已合并")])
def test_lost_customer_cannot_be_edited(web, api, dbs, user_id, status, label):
    cid = new_customer(dbs, user_id, "manager1", status=status, contacts=1, activities=1)
    before = snapshot(dbs, cid)
    w = web("manager1")
    r = w.get(f"/customer/edit/{cid}")
    assert r.status_code == 409 and label in r.text
    r = web("supervisor").post_form(f"/customer/edit/{cid}", form_of(before, name="改名"),
                                    form_url="/customer/add")
    assert r.status_code == 409
    for username in ("manager1", "supervisor", "admin"):
        r = api(username).put(f"/api/v1/customer/{cid}", json={"name": "改名"})
        assert r.status_code == 409 and label in r.json["message"]
    m1 = api("manager1")
    assert m1.post("/api/v1/contact/", json={"customer_id": cid, "name": "新人", "gender": "男",
                                             "position": "经理", "office_phone": "010-12345678"}
                   ).status_code == 409
    assert m1.put(f"/api/v1/contact/{one_contact(dbs, cid)}", json={"memo": "x"}).status_code == 409
    assert m1.delete(f"/api/v1/contact/{one_contact(dbs, cid)}").status_code == 409
    assert m1.post("/api/v1/activity/", json={"customer_id": cid, "date": "2024-01-02",
                                              "place": "x", "summary": "x", "detail": "x"}
                   ).status_code == 409
    assert w.get(f"/activities/customer/{cid}/add").status_code == 409
    assert snapshot(dbs, cid) == before
    # still readable, without edit buttons
    page = w.get(f"/customer/show/{cid}")
    assert page.status_code == 200 and label in page.text and "编辑客户信息" not in page.text


# ---- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value,words", [
    ("zip_code", "10008", "邮政编码必须是 6 位数字"),
    ("zip_code", "10008a", "邮政编码必须是 6 位数字"),
    ("phone", "12345", "电话格式不正确"),
    ("phone", "010-1234", "电话格式不正确"),
    ("fax", "abc", "传真格式不正确"),
    ("website", "www.example.com", "网址格式不正确"),
    ("website", "ftp://example.com", "网址格式不正确"),
    ("satisfaction", 6, "客户满意度必须是 1 到 5"),
    ("credit", 0, "客户信用度必须是 1 到 5"),
    ("credit", "很好", "客户信用度必须是 1 到 5"),
    ("region", "火星", "不是有效的地区"),
    ("level", "北京", "不是有效的客户等级"),
    ("name", "  ", "名称不能为空"),
    ("address", "", "地址不能为空"),
    ("bank_account", None, "银行帐号不能为空"),
    ("registered_capital", "很多", "注册资金(万元)必须是不小于 0 的数字"),
    ("manager_id", 999999, "客户经理对应的用户不存在"),
])
def test_api_validation_in_chinese(api, dbs, user_id, field, value, words):
    cid = new_customer(dbs, user_id, "manager1")
    before = snapshot(dbs, cid)
    r = api("supervisor").put(f"/api/v1/customer/{cid}", json={field: value})
    assert r.status_code == 400, r.json
    assert words in r.json["message"], r.json
    assert r.json["field"] == field
    assert snapshot(dbs, cid) == before


def test_inactive_user_cannot_be_manager(api, app, dbs, user_id):
    cid = new_customer(dbs, user_id, "manager1")
    with app.app_context():
        system = app.appbuilder.sm.find_user(username="crm-system")
        sid = system.id if system is not None and not system.active else None
        db.session.remove()
    if sid is None:
        pytest.skip("no inactive system user")
    r = api("supervisor").put(f"/api/v1/customer/{cid}", json={"manager_id": sid})
    assert r.status_code == 400 and "已停用" in r.json["message"]


@pytest.mark.parametrize("phone", ["010-12345678", "(010)12345678", "0755-1234567",
                                   "62345678", "13800138000", "+86 138 0013 8000",
                                   "+86-10-12345678", "400-810-8888", "010-12345678-123",
                                   "021-50001234转8001"])
def test_phone_formats_accepted(api, dbs, user_id, phone):
    cid = new_customer(dbs, user_id, "manager1")
    r = api("manager1").put(f"/api/v1/customer/{cid}", json={"phone": phone})
    assert r.status_code == 200, r.json
    assert r.json["result"]["phone"] == phone


def test_incomplete_customer_form_asks_for_missing_fields(web, dbs, user_id):
    """A customer created from an opportunity has only name/phone/manager."""
    with dbs() as s:
        c = Customer(number=f.next_number(s, f.PREFIX_CUSTOMER), name="机会转来的客户",
                     manager_id=user_id("manager1"), phone="13900139000", status="normal",
                     created_by_fk=user_id("manager1"), changed_by_fk=user_id("manager1"))
        s.add(c)
        s.commit()
        cid = c.id
    w = web("manager1")
    show = w.get(f"/customer/show/{cid}")
    assert "客户信息不完整" in show.text and "地区" in show.text
    before = snapshot(dbs, cid)
    r = w.post_form(f"/customer/edit/{cid}", {"name": "机会转来的客户", "phone": "13900139000",
                                              "address": "北京"})
    assert r.status_code == 400 and "地区不能为空" in r.text
    assert snapshot(dbs, cid) == before
    data = form_of(before, region=str(dict_id(dbs, "地区", "北京")),
                   level=str(dict_id(dbs, "客户等级", "普通客户")), satisfaction="3",
                   credit="3", address="北京市东城区", zip_code="100010", legal_person="孙八",
                   bank="农业银行", bank_account="6228000000000001")
    data.pop("manager")
    bad = dict(data, zip_code="1000")
    r = w.post_form(f"/customer/edit/{cid}", bad)
    assert r.status_code == 400 and "邮政编码必须是 6 位数字" in r.text
    r = w.post_form(f"/customer/edit/{cid}", data)
    assert r.status_code == 302
    assert snapshot(dbs, cid)["legal_person"] == "孙八"


# ---- contacts -------------------------------------------------------------------------------

def contact_body(cid, **kw):
    data = dict(customer_id=cid, name="周九", gender="女", position="采购经理",
                office_phone="010-87654321", mobile="13700137000", email="zhou@example.com",
                memo="喜欢邮件联系")
    data.update(kw)
    return data


def test_api_contacts_belong_to_their_customer(api, dbs, user_id):
    own = new_customer(dbs, user_id, "manager1")
    other = new_customer(dbs, user_id, "manager2")
    m1 = api("manager1")
    r = m1.post("/api/v1/contact/", json=contact_body(own))
    assert r.status_code == 201, r.json
    pk = r.json["id"]
    assert set(r.json["result"]) == CONTACT_FIELDS and r.json["result"]["customer_id"] == own
    # cannot attach one to a customer he does not manage
    before_other = snapshot(dbs, other)
    r = m1.post("/api/v1/contact/", json=contact_body(other))
    assert r.status_code == 403
    assert snapshot(dbs, other) == before_other
    before = snapshot(dbs, own)
    # cannot move it to another customer (not even one he manages)
    third = new_customer(dbs, user_id, "manager1")
    for target in (other, third):
        r = m1.put(f"/api/v1/contact/{pk}", json={"customer_id": target})
        assert r.status_code == 400 and r.json["field"] == "customer_id"
        assert "不能转移" in r.json["message"]
    r = api("supervisor").put(f"/api/v1/contact/{pk}", json={"customer_id": other, "name": "x"})
    assert r.status_code == 400
    # required fields cannot be emptied; formats checked
    for field, value, words in (("name", "", "姓名不能为空"), ("gender", "未知", "性别"),
                                ("position", " ", "职位不能为空"),
                                ("office_phone", "", "办公电话不能为空"),
                                ("office_phone", "123", "办公电话格式不正确"),
                                ("mobile", "1380013800", "手机格式不正确"),
                                ("email", "zhou@", "电子邮件格式不正确")):
        r = m1.put(f"/api/v1/contact/{pk}", json={field: value})
        assert r.status_code == 400 and words in r.json["message"], (field, r.json)
    assert snapshot(dbs, own) == before
    # another manager can neither edit nor delete it
    m2 = api("manager2")
    assert m2.put(f"/api/v1/contact/{pk}", json={"memo": "x"}).status_code == 403
    assert m2.delete(f"/api/v1/contact/{pk}").status_code == 403
    assert snapshot(dbs, own) == before
    # the owner edits and deletes
    r = m1.put(f"/api/v1/contact/{pk}", json={"position": "总经理", "customer_id": own})
    assert r.status_code == 200 and r.json["result"]["position"] == "总经理"
    assert m1.delete(f"/api/v1/contact/{pk}").status_code == 200
    assert m1.get(f"/api/v1/contact/{pk}").status_code == 404
    # required on create; unknown customer
    r = m1.post("/api/v1/contact/", json={"customer_id": own, "name": "吴十"})
    assert r.status_code == 400 and "性别不能为空" in r.json["message"]
    r = m1.post("/api/v1/contact/", json=contact_body(999999999))
    assert r.status_code == 400 and r.json["field"] == "customer_id"
    r = m1.post("/api/v1/contact/", json=contact_body(None))
    assert r.status_code == 400 and r.json["field"] == "customer_id"


def test_html_contacts_list_add_edit_delete(web, dbs, user_id, uniq):
    cid = new_customer(dbs, user_id, "manager1")
    w = web("manager1")
    page = w.get(f"/contacts/customer/{cid}/add")
    assert page.status_code == 200 and "新建联系人" in page.text
    name = uniq("联系人")[:20]
    r = w.post_form(f"/contacts/customer/{cid}/add",
                    {"name": name, "gender": "男", "position": "技术主管",
                     "office_phone": "010-66667777", "mobile": "", "email": "", "memo": ""})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/contacts/customer/{cid}")
    listing = w.get(f"/contacts/customer/{cid}")
    assert name in listing.text and "保存成功" in listing.text
    pk = one_contact(dbs, cid)
    # a missing required field re-shows the form with the Chinese message
    r = w.post_form(f"/contacts/{pk}/edit", {"name": name, "gender": "男", "position": "",
                                              "office_phone": "010-66667777"})
    assert r.status_code == 400 and "职位不能为空" in r.text
    r = w.post_form(f"/contacts/{pk}/edit", {"name": name, "gender": "女", "position": "总经理",
                                              "office_phone": "010-66667777",
                                              "customer_id": "1"})
    assert r.status_code == 302
    with dbs() as s:
        p = s.get(Contact, pk)
        assert (p.gender, p.position, p.customer_id) == ("女", "总经理", cid)
    # another manager: 403 everywhere, nothing changed
    before = snapshot(dbs, cid)
    w2 = web("manager2")
    assert w2.get(f"/contacts/customer/{cid}/add").status_code == 403
    assert w2.get(f"/contacts/{pk}/edit").status_code == 403
    r = w2.post_form(f"/contacts/{pk}/delete", {}, form_url="/customer/add")
    assert r.status_code == 403
    r = w2.post_form(f"/contacts/customer/{cid}/add",
                     {"name": "入侵者", "gender": "男", "position": "x",
                      "office_phone": "010-66667777"}, form_url="/customer/add")
    assert r.status_code == 403
    assert snapshot(dbs, cid) == before
    # delete needs a POST with CSRF
    assert w.get(f"/contacts/{pk}/delete").status_code == 405
    assert w.post(f"/contacts/{pk}/delete").status_code == 400
    r = w.post_form(f"/contacts/{pk}/delete", {}, form_url=f"/contacts/customer/{cid}")
    assert r.status_code == 302
    assert one_contact(dbs, cid) is None


# ---- activities -----------------------------------------------------------------------------

def test_api_activities(api, dbs, user_id):
    own = new_customer(dbs, user_id, "manager1")
    other = new_customer(dbs, user_id, "manager2")
    m1 = api("manager1")
    body = {"customer_id": own, "date": "2007-12-13", "place": "客户公司会议室",
            "summary": "产品介绍", "detail": "介绍了新款打印机", "memo": None}
    r = m1.post("/api/v1/activity/", json=body)
    assert r.status_code == 201, r.json
    pk = r.json["id"]
    assert r.json["result"] == dict(body, id=pk)
    before_other = snapshot(dbs, other)
    assert m1.post("/api/v1/activity/", json=dict(body, customer_id=other)).status_code == 403
    assert snapshot(dbs, other) == before_other
    before = snapshot(dbs, own)
    for field, value, words in (("date", "", "日期不能为空"), ("date", "2007/12/13", "YYYY-MM-DD"),
                                ("place", "", "地点不能为空"), ("summary", "  ", "概要不能为空"),
                                ("detail", None, "详细信息不能为空"),
                                ("customer_id", other, "不能转移")):
        r = m1.put(f"/api/v1/activity/{pk}", json={field: value})
        assert r.status_code == 400 and words in r.json["message"], (field, r.json)
    assert api("manager2").put(f"/api/v1/activity/{pk}", json={"memo": "x"}).status_code == 403
    assert m1.delete(f"/api/v1/activity/{pk}").status_code == 405
    assert snapshot(dbs, own) == before
    r = api("supervisor").put(f"/api/v1/activity/{pk}", json={"memo": "主管补充", "date": "2007-12-14"})
    assert r.status_code == 200 and r.json["result"]["date"] == "2007-12-14"
    for field in ("date", "place", "summary", "detail"):
        r = m1.post("/api/v1/activity/", json={k: v for k, v in body.items() if k != field})
        assert r.status_code == 400 and r.json["field"] == field


def test_html_activities(web, dbs, user_id, uniq):
    cid = new_customer(dbs, user_id, "manager1", activities=25)
    w = web("manager1")
    page = w.get(f"/activities/customer/{cid}")
    assert page.status_code == 200 and "共 25 条" in page.text and "第 1 / 2 页" in page.text
    assert page.text.index("拜访0") < page.text.index("拜访1")  # newest first
    assert "拜访24" in w.get(f"/activities/customer/{cid}?page=1").text
    summary = uniq("回访")
    r = w.post_form(f"/activities/customer/{cid}/add",
                    {"date": "2030-01-02", "place": "电话", "summary": summary, "detail": "客户满意",
                     "memo": ""})
    assert r.status_code == 302
    with dbs() as s:
        pk = s.scalar(select(Activity.id).where(Activity.summary == summary))
    r = w.post_form(f"/activities/{pk}/edit", {"date": "2030-01-02", "place": "电话",
                                               "summary": summary, "detail": ""})
    assert r.status_code == 400 and "详细信息不能为空" in r.text
    r = w.post_form(f"/activities/{pk}/edit", {"date": "2030-01-03", "place": "电话",
                                               "summary": summary, "detail": "改过", "memo": "备"})
    assert r.status_code == 302
    with dbs() as s:
        a = s.get(Activity, pk)
        assert (a.date, a.detail, a.memo, a.customer_id) == (date(2030, 1, 3), "改过", "备", cid)
    before = snapshot(dbs, cid)
    w2 = web("manager2")
    assert w2.get(f"/activities/{pk}/edit").status_code == 403
    r = w2.post_form(f"/activities/{pk}/edit", {"date": "2030-01-03", "place": "x",
                                                "summary": "x", "detail": "x"},
                     form_url="/customer/add")
    assert r.status_code == 403
    assert snapshot(dbs, cid) == before


# ---- historical orders ----------------------------------------------------------------------

@pytest.fixture
def ordered_customer(dbs, user_id):
    """A customer with 12 counted orders (status 5/6) on distinct dates and 4 others."""
    cid = new_customer(dbs, user_id, "manager1")
    with dbs() as s:
        number = s.get(Customer, cid).number
        p1 = f.product(s, "打印机", "1500.00")
        p2 = f.product(s, "硒鼓", "80.50")
        base = date(2024, 1, 1)
        counted = []
        for k in range(12):
            o = f.order(s, number, [(p1, k + 1, "1500.00"), (p2, 2, "80.50")],
                        status=5 if k % 2 else 6, day=base + timedelta(days=10 * k))
            counted.append((o.id, o.number, o.date, (k + 1) * 1500 + 161))
        others = [f.order(s, number, [(p1, 1, "1500.00")], status=st,
                          day=base + timedelta(days=500)).number for st in (1, 2, 3, 4)]
        s.commit()
    counted.sort(key=lambda t: t[2], reverse=True)
    return cid, number, counted, others


def test_customer_page_orders_only_5_6_newest_first_paged(web, ordered_customer):
    cid, number, counted, others = ordered_customer
    w = web("manager2")  # any staff member
    page = w.get(f"/customer/show/{cid}")
    assert page.status_code == 200
    text = page.text
    for n in others:
        assert n not in text
    shown = re.findall(r'<a href="/order/show/(\d+)">', text)
    assert [int(x) for x in shown] == [o[0] for o in counted[:10]]
    # the totals: Σ 数量 × 单价, two decimals and 元
    newest = counted[0]
    assert f"{newest[3]:,.2f} 元" in text
    assert "第 1 / 2 页" in text
    page2 = w.get(f"/customer/show/{cid}?orders_page=1").text
    assert [int(x) for x in re.findall(r'<a href="/order/show/(\d+)">', page2)] == \
        [o[0] for o in counted[10:]]
    # the order detail shows its lines and total
    detail = w.get(f"/order/show/{newest[0]}")
    assert detail.status_code == 200 and "订单明细" in detail.text
    assert f"{newest[3]:.2f} 元" in detail.text


def test_api_orders_of_a_customer(api, ordered_customer):
    cid, number, counted, others = ordered_customer
    q = f"(filters:!((col:customer_number,opr:eq,value:'{number}')),page_size:5,page:0)"
    r = api("manager2").get(f"/api/v1/order/?q={q}")
    assert r.status_code == 200 and r.json["count"] == 12
    rows = r.json["result"]
    assert [row["id"] for row in rows] == [o[0] for o in counted[:5]]
    assert rows[0]["total"] == f"{counted[0][3]:.2f}" and rows[0]["status"] in (5, 6)


# ---- the customer page and its sections ------------------------------------------------------

@pytest.fixture
def extra_sections():
    """Two sections like the other modules register: one with content, one with None."""
    shown = customer_section(order=95, key="test_shown", title="测试栏目")(
        lambda customer, actor: "<p>测试栏目内容 %s</p>" % customer.number
        if customer.name.startswith("栏目") else None)
    hidden = customer_section(order=96, key="test_hidden", title="不该出现的栏目")(
        lambda customer, actor: None)
    yield shown, hidden
    CUSTOMER_SECTIONS[:] = [s for s in CUSTOMER_SECTIONS
                            if s.key not in ("test_shown", "test_hidden")]


def test_customer_page_in_chinese_with_sections(web, dbs, user_id, uniq, extra_sections):
    cid = new_customer(dbs, user_id, "manager1", contacts=2, activities=12,
                       name=uniq("栏目客户"), website="https://www.example.com")
    with dbs() as s:
        number = s.get(Customer, cid).number
    w = web("manager1")
    r = w.get(f"/customer/show/{cid}")
    assert r.status_code == 200
    text = text_of(r)
    for title in ("基本信息", "联系人", "交往记录", "历史订单", "客户编号", "客户经理",
                  "客户等级", "邮政编码", "编辑客户信息", "新建联系人", "新建交往记录",
                  "全部交往记录", "测试栏目"):
        assert title in text, title
    assert f"测试栏目内容 {number}" in text
    assert "不该出现的栏目" not in text
    assert "共 12 条，显示最新 10 条" in text
    visible = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", r.text, flags=re.S)
    visible = re.sub(r"<[^>]+>", " ", visible)
    for english in ("List", "Edit", "Show", "Customer", "Contact", "Activity", "Orders",
                    "Record Count", "Delete", "Back"):
        assert not re.search(rf"\b{english}\b", visible), english
    assert web("exec").get("/customer/show/999999999").status_code == 404


def test_list_and_forms_are_chinese(web, dbs, user_id):
    cid = new_customer(dbs, user_id, "manager1")
    w = web("manager1")
    for url in ("/customer/list/", "/customer/add", f"/customer/edit/{cid}",
                f"/contacts/customer/{cid}", f"/activities/customer/{cid}/add"):
        page = w.get(url)
        assert page.status_code == 200, url
        visible = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", page.text, flags=re.S)
        visible = re.sub(r"<[^>]+>", " ", visible)
        for english in ("List Customer", "Edit Customer", "Add Customer", "Region", "Level",
                        "Manager", "Satisfaction", "Zip Code", "Save"):
            assert english not in visible, (url, english)
    listing = w.get("/customer/list/").text
    for label in ("客户信息", "客户编号", "名称", "地区", "客户经理", "客户等级", "状态"):
        assert label in listing


def test_customer_export_csv(web, dbs, user_id, uniq):
    name = uniq("导出客户")
    new_customer(dbs, user_id, "manager2", name=name)
    r = web("exec").get(f"/customer/export/csv/?_flt_2_name={name}")
    assert r.status_code == 200
    body = r.get_data().decode("utf-8-sig")
    assert "客户编号" in body and name in body and "正常" in body


# ---- performance: no N+1 in the lists --------------------------------------------------------

def count_statements(app, fn):
    statements = []

    def listener(conn, cursor, statement, params, context, executemany):
        statements.append(statement)
    with app.app_context():
        engines = list(db.engines.values())
    for e in engines:
        event.listen(e, "before_cursor_execute", listener)
    try:
        fn()
    finally:
        for e in engines:
            event.remove(e, "before_cursor_execute", listener)
    return len(statements)


def test_lists_do_not_grow_queries_with_rows(app, web, api, dbs, user_id, uniq):
    managers = ["manager1", "manager2", "supervisor"]
    prefixes = {}
    for n in (5, 25):
        prefix = uniq(f"批量{n}")
        with dbs() as s:
            for k in range(n):
                c = f.customer(s, user_id(managers[k % 3]), name=f"{prefix}-{k}",
                               level=f.dict_item(s, "客户等级", ["大客户", "普通客户"][k % 2]))
                f.contact(s, c, user_id("manager1"))
            s.commit()
        prefixes[n] = prefix
    w = web("manager1")
    a = api("manager1")
    w.get("/customer/list/")  # warm up (menus, translations)
    counts, api_counts = {}, {}
    for n, prefix in prefixes.items():
        url = f"/customer/list/?_flt_2_name={prefix}&psize_CustomerView=50"

        def run():
            page = w.get(url)
            assert page.status_code == 200
            assert page.text.count(f"{prefix}-") >= n
        counts[n] = count_statements(app, run)
        q = f"(filters:!((col:name,opr:sw,value:'{prefix}')),page_size:50)"

        def run_api():
            r = a.get(f"/api/v1/customer/?q={q}")
            assert r.status_code == 200 and r.json["count"] == n
        api_counts[n] = count_statements(app, run_api)
    assert counts[5] == counts[25], counts
    assert api_counts[5] == api_counts[25], api_counts


def test_page_size_is_capped(web, dbs, user_id, uniq):
    prefix = uniq("分页上限")
    with dbs() as s:
        for k in range(105):
            f.customer(s, user_id("manager1"), name=f"{prefix}-{k}")
        s.commit()
    page = web("exec").get(f"/customer/list/?_flt_2_name={prefix}&psize_CustomerView=100000")
    assert page.status_code == 200
    assert page.text.count(f"{prefix}-") == 100


# ---- races ----------------------------------------------------------------------------------

def test_edit_racing_with_churn_confirmation_changes_nothing(dbs, user_id, monkeypatch):
    """确认流失 commits between the rights check and the write: the edit is a 409."""
    from sqlalchemy import update

    from app.workflows import customers as wf
    from app.workflows.actors import MANAGER, Actor
    from app.workflows.errors import Conflict

    cid = new_customer(dbs, user_id, "manager1")
    before = snapshot(dbs, cid)
    real = wf.require_writable
    with dbs() as s:
        def racing(actor, customer):
            real(actor, customer)
            s.execute(update(Customer).where(Customer.id == customer.id)
                      .values(status="lost", changed_by_fk=customer.manager_id)
                      .execution_options(synchronize_session=False))
        monkeypatch.setattr(wf, "require_writable", racing)
        actor = Actor(id=user_id("manager1"), roles=frozenset({MANAGER}))
        with pytest.raises(Conflict):
            wf.update_customer(s, actor, cid, {"name": "改名"})
        with pytest.raises(Conflict):
            wf.add_contact(s, actor, cid, {"name": "新人", "gender": "男", "position": "x",
                                           "office_phone": "010-12345678"})
        s.rollback()
    assert snapshot(dbs, cid) == before


def test_edit_form_selects_only_their_dictionary_category_and_active_users(web, dbs, user_id):
    """Browser-found defect: the 地区/客户等级/客户经理 selects listed every dictionary item."""
    from tests import factories as fct

    with dbs() as s:
        c = fct.customer(s, user_id("manager1"))
        s.commit()
        cid = c.id
    page = web("admin").get(f"/customer/edit/{cid}").text
    region = page.split('id="region"', 1)[1].split("</select>", 1)[0]
    assert "北京" in region and "普通客户" not in region and "咨询" not in region
    level = page.split('id="level"', 1)[1].split("</select>", 1)[0]
    assert "大客户" in level and "北京" not in level
    manager = page.split('id="manager"', 1)[1].split("</select>", 1)[0]
    assert "系统 任务" not in manager and "系统任务" not in manager


def test_customer_export_follows_the_search_and_streams(web, dbs, user_id, uniq):
    import csv
    import io

    from tests import factories as fct

    name = uniq("导出测试客户")
    with dbs() as s:
        fct.customer(s, user_id("manager1"), name=name + "甲")
        fct.customer(s, user_id("manager2"), name=name + "乙", status="lost")
        s.commit()
    r = web("supervisor").get(f"/customer/export/csv/?_flt_2_name={name}")
    assert r.status_code == 200 and r.is_streamed
    body = r.get_data()
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0][:2] == ["客户编号", "名称"]
    got = {row[1]: row for row in rows[1:]}
    assert set(got) == {name + "甲", name + "乙"}
    assert got[name + "乙"][-1] == "已流失" and got[name + "甲"][-1] == "正常"
    assert got[name + "甲"][3] == "张伟"
