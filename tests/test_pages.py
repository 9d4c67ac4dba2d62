"""Pages say what they mean (issue 18 item 6): no literal None, every error at once,
the right redirects, links both ways, page titles, Chinese security pages."""
import re

import pytest

from app.extensions import db
from app.models import Opportunity

from . import factories as f
from .conftest import WebClient
from .test_csrf import html_routes
from .test_rights_matrix import MISSING, build_url

NONE_RE = re.compile(r">\s*None\s*<|None</td>")
TITLE_RE = re.compile(r"<title>(.*?)</title>", re.S)


@pytest.fixture(scope="module")
def sparse(app):
    """One record of each kind, with every optional field left empty."""
    from app.models.sales import Stock

    with app.app_context():
        s = db.session
        sm = app.appbuilder.sm
        m1 = sm.find_user(username="manager1").id
        sup = sm.find_user(username="supervisor").id
        c = f.customer(s, m1, name="空字段客户", address=None, zip_code=None, fax=None,
                       website=None)
        con = f.contact(s, c, m1, mobile=None, email=None, memo=None)
        act = f.activity(s, c, m1)
        opp = f.opportunity(s, sup, source=None, contact=None, contact_phone=None)
        dev = f.opportunity(s, sup, status="assigned", assignee_id=m1, source=None,
                            contact=None, contact_phone=None)
        item = f.plan_item(s, dev, m1, result=None)
        t = f.service(s, c, m1)
        p = f.product(s, name="无备注产品")
        p.memo = None
        st = Stock(product_id=p.id, warehouse="一号库", location="A-1", quantity=3, memo=None)
        s.add(st)
        s.flush()
        o = f.order(s, c.number, [(p, 1, "100.00")])
        ids = {"Customer": c.id, "Contact": con.id, "Activity": act.id, "Opportunity": opp.id,
               "PlanItem": item.id, "ServiceTicket": t.id, "Product": p.id, "Stock": st.id,
               "Order": o.id, "dev": dev.id}
        s.commit()
        s.remove()
    return ids


def _real_url(app, endpoint, rule, sparse):
    """The rule with real ids: ``pk`` is a record of the view's model (with empty
    optional fields), ``customer_id`` the sparse customer."""
    view = next((v for v in app.appbuilder.baseviews
                 if type(v).__name__ == endpoint.split(".")[0]), None)
    model = getattr(getattr(view, "datamodel", None), "obj", None)
    name = model.__name__ if model is not None else None
    values = {}
    for arg in rule.arguments:
        if arg == "pk":
            if name == "Opportunity" and any(k in endpoint for k in ("plan", "execute")):
                values[arg] = sparse["dev"]
            else:
                values[arg] = sparse.get(name, MISSING)
        elif arg == "customer_id":
            values[arg] = sparse["Customer"]
        elif arg == "item_id":
            values[arg] = sparse["PlanItem"]
    url = rule.rule
    for arg, value in values.items():
        url = re.sub(r"<(?:[^:<>]+:)?%s>" % arg, str(value), url)
    if "<" in url:
        return None
    return url


@pytest.mark.parametrize("username", ["admin", "exec", "supervisor", "manager1"])
def test_no_page_shows_the_text_none(app, sparse, username):
    """Crawl every HTML GET page as each role, with records whose optional fields are
    empty: no page prints ``None`` for an empty field."""
    client = WebClient(app, username)
    pages, bad, untitled, titles = 0, [], [], set()
    for endpoint, rule, method in html_routes(app, {"GET"}):
        url = _real_url(app, endpoint, rule, sparse) or build_url(
            app, endpoint, rule, method, {"customer_id": sparse["Customer"], "action_pk": {}})
        if url is None or "/export" in url or "download" in endpoint.lower():
            continue
        r = client.get(url)
        if r.status_code != 200 or "text/html" not in r.content_type:
            continue
        pages += 1
        m = NONE_RE.search(r.text)
        if m:
            bad.append(f"{url} ({endpoint}): …{r.text[max(0, m.start() - 80):m.end() + 20]}…")
        t = TITLE_RE.search(r.text)
        title = t.group(1).strip() if t else ""
        if not title.endswith(" - 客户关系管理系统") or len(title) <= len(" - 客户关系管理系统"):
            untitled.append(f"{url} ({endpoint}): <title>{title}</title>")
        else:
            titles.add(title)
    assert not bad, "\n".join(bad)
    # j. every tab names its page
    assert not untitled, "\n".join(untitled)
    assert len(titles) > pages // 3, titles
    assert pages > (40 if username == "admin" else 15), pages


def test_product_and_stock_rows_have_no_none_memo(app, sparse, web):
    client = web("admin")
    for url in ("/product/list/", "/stock/list/", f"/product/show/{sparse['Product']}",
                f"/stock/show/{sparse['Stock']}",
                f"/opportunity/show/{sparse['Opportunity']}"):
        r = client.get(url)
        assert r.status_code == 200, url
        assert not NONE_RE.search(r.text), url


# ---- c. delete from the list after viewing the record -------------------------------

def test_delete_after_viewing_lands_on_the_list(web, dbs, user_id):
    from .test_opportunities import new_opp

    pk = new_opp(dbs, user_id("manager1"))
    c = web("manager1")
    show = f"/opportunity/show/{pk}"
    assert c.get(show).status_code == 200
    # the list's delete button; the browser sends the show page as the referrer
    r = c.post_form(f"/opportunity/delete/{pk}", {}, form_url="/opportunity/list/",
                    headers={"Referer": "http://localhost" + show})
    assert r.status_code == 302
    assert r.headers["Location"].endswith("/opportunity/list/"), r.headers["Location"]
    page = c.get(r.headers["Location"])
    assert page.status_code == 200 and "删除成功" in page.text


# ---- d. customer_id in the API, links both ways --------------------------------------

def test_succeeded_opportunity_links_to_its_customer_both_ways(api, web, dbs, user_id, uniq):
    from .test_opportunities import assigned_opp

    name = uniq("双向链接公司")
    pk = assigned_opp(dbs, user_id, customer_name=name)
    c = api("manager1")
    r = c.post(f"/api/v1/opportunity/{pk}/succeed")
    assert r.status_code == 200, r.json
    cid = r.json["customer_id"]
    shown = c.get(f"/api/v1/opportunity/{pk}").json["result"]
    assert shown["customer_id"] == cid
    listed = c.get(f"/api/v1/opportunity/?q=(filters:!((col:customer_name,opr:eq,"
                   f"value:'{name}')))").json
    assert listed["result"][0]["customer_id"] == cid
    w = web("manager1")
    assert f"/customer/show/{cid}" in w.get(f"/opportunity/show/{pk}").text
    page = w.get(f"/customer/show/{cid}").text
    assert f"/opportunity/show/{pk}" in page


# ---- e. 开发成功 with an existing customer's name -------------------------------------

def _count(dbs, name):
    from .test_opportunities import count_customers
    return count_customers(dbs, name)


def test_succeed_warns_about_a_customer_of_the_same_name(api, dbs, user_id, uniq):
    from .test_opportunities import assigned_opp, snapshot

    name = uniq("同名客户公司")
    with dbs() as s:
        old = f.customer(s, user_id("manager2"), name=name)
        s.commit()
        old_id = old.id
    pk = assigned_opp(dbs, user_id, customer_name=name)
    c = api("manager1")
    before = snapshot(dbs, pk)
    r = c.post(f"/api/v1/opportunity/{pk}/succeed")
    assert r.status_code == 409 and r.json["existing_customer_id"] == old_id
    assert name in r.json["message"]
    assert snapshot(dbs, pk) == before and _count(dbs, name) == 1
    # garbage choices
    assert c.post(f"/api/v1/opportunity/{pk}/succeed",
                  json={"link_customer_id": MISSING}).status_code == 400
    assert c.post(f"/api/v1/opportunity/{pk}/succeed",
                  json={"create_anyway": "yes"}).status_code == 400
    assert snapshot(dbs, pk) == before
    # link to the existing one: no new customer
    r = c.post(f"/api/v1/opportunity/{pk}/succeed", json={"link_customer_id": old_id})
    assert r.status_code == 200 and r.json["customer_id"] == old_id
    assert _count(dbs, name) == 1 and snapshot(dbs, pk)["customer_id"] == old_id

    pk2 = assigned_opp(dbs, user_id, customer_name=name)
    r = c.post(f"/api/v1/opportunity/{pk2}/succeed", json={"create_anyway": True})
    assert r.status_code == 200 and r.json["customer_id"] != old_id
    assert _count(dbs, name) == 2


def test_succeed_html_offers_the_choice(web, dbs, user_id, uniq):
    from .test_opportunities import assigned_opp, snapshot

    name = uniq("网页同名公司")
    with dbs() as s:
        old_id = f.customer(s, user_id("manager1"), name=name).id
        s.commit()
    pk = assigned_opp(dbs, user_id, customer_name=name)
    w = web("manager1")
    plan = f"/opportunity/plan/{pk}"
    r = w.post_form(f"/opportunity/succeed/{pk}", {}, form_url=plan)
    assert r.status_code == 409
    assert f'name="link_customer_id" value="{old_id}"' in r.text and "create_anyway" in r.text
    assert snapshot(dbs, pk)["status"] == "assigned" and _count(dbs, name) == 1
    r = w.post_form(f"/opportunity/succeed/{pk}", {"link_customer_id": str(old_id)},
                    form_url=plan)
    assert r.status_code == 302
    assert snapshot(dbs, pk)["customer_id"] == old_id and _count(dbs, name) == 1


# ---- f. 联系人电话 uses the customer phone rule ----------------------------------------

def test_opportunity_contact_phone_is_validated(api, web, uniq):
    from .test_opportunities import body

    c = api("manager1")
    r = c.post("/api/v1/opportunity/", json=body(uniq, contact_phone="随便写的电话abc"))
    assert r.status_code == 400 and r.json["field"] == "contact_phone"
    assert "010-12345678" in r.json["message"]
    for good in ("010-12345678", "13800138000", "400-810-8888"):
        assert c.post("/api/v1/opportunity/", json=body(uniq, contact_phone=good)).status_code == 201
    w = web("manager1")
    r = w.post_form("/opportunity/add", body(uniq, contact_phone="随便写的电话abc"))
    assert r.status_code == 400 and "联系人电话格式不正确" in r.text


# ---- g. an integer date is a format error --------------------------------------------

def test_integer_date_is_a_format_error(api, dbs, user_id):
    from .test_opportunities import assigned_opp

    pk = assigned_opp(dbs, user_id)
    c = api("manager1")
    for bad in (20261201, [2026, 12, 1], "2026/12/01", True):
        r = c.post(f"/api/v1/opportunity/{pk}/plan_items", json={"date": bad, "content": "x"})
        assert r.status_code == 400, bad
        assert "格式不正确" in r.json["message"] and "YYYY-MM-DD" in r.json["message"], bad
    r = c.post(f"/api/v1/opportunity/{pk}/plan_items", json={"content": "x"})
    assert r.status_code == 400 and "不能为空" in r.json["message"]


def test_integer_activity_date_is_a_format_error(api, dbs, user_id):
    with dbs() as s:
        cid = f.customer(s, user_id("manager1")).id
        s.commit()
    r = api("manager1").post("/api/v1/activity/", json={
        "customer_id": cid, "date": 20261201, "place": "北京", "summary": "拜访", "detail": "x"})
    assert r.status_code == 400 and "格式不正确" in r.json["message"], r.json


# ---- h. every field's error at once ---------------------------------------------------

def test_api_lists_every_error(api, uniq):
    r = api("manager1").post("/api/v1/opportunity/", json={
        "customer_name": "", "success_rate": 300, "summary": "", "description": "x",
        "contact_phone": "abc"})
    assert r.status_code == 400
    fields = [e["field"] for e in r.json["errors"]]
    assert fields == ["customer_name", "success_rate", "summary", "contact_phone"], r.json
    assert r.json["field"] == "customer_name" and r.json["message"] == r.json["errors"][0]["message"]


def test_html_form_shows_every_error(web, dbs, user_id):
    w = web("manager1")
    r = w.post_form("/opportunity/add", {"customer_name": "", "success_rate": "abc",
                                         "summary": "", "description": ""})
    assert r.status_code == 400
    for text in ("客户名称不能为空", "成功机率必须是 0 到 100 之间的整数", "概要不能为空",
                 "机会描述不能为空"):
        assert text in r.text, text
    with dbs() as s:
        cid = f.customer(s, user_id("manager1")).id
        s.commit()
    r = w.post_form(f"/contacts/customer/{cid}/add", {"name": "", "gender": "x", "position": "",
                                                      "office_phone": "abc", "email": "bad"})
    assert r.status_code == 400
    for text in ("不能为空", "性别只能是", "格式不正确", "电子邮件格式不正确"):
        assert text in r.text, text


def test_customer_api_lists_every_error(api):
    r = api("manager1").post("/api/v1/customer/", json={"name": "", "zip_code": "12",
                                                       "phone": "abc", "satisfaction": 9})
    assert r.status_code == 400
    fields = {e["field"] for e in r.json["errors"]}
    assert {"zip_code", "phone", "satisfaction", "name"} <= fields, r.json


# ---- b. 数据字典: per-row 编辑/删除, creating a locked item -------------------------------

def test_dictionary_hides_edit_delete_on_locked_items(web, api, dbs, uniq):
    from app.models import DictItem

    kind = uniq("字典")[:30]
    c = api("admin")
    locked = c.post("/api/v1/dict_item/", json={"type": kind, "item": "锁", "value": "1",
                                                "editable": False}).json["id"]
    open_ = c.post("/api/v1/dict_item/", json={"type": kind, "item": "开", "value": "2"}).json["id"]
    page = web("admin").get(f"/dictitem/list/?_flt_0_type={kind}").text
    assert f"/dictitem/edit/{open_}" in page and f"/dictitem/delete/{open_}" in page
    assert f"/dictitem/edit/{locked}" not in page and f"/dictitem/delete/{locked}" not in page
    assert f"/dictitem/show/{locked}" in page
    # the text "false" is false, garbage is a 400
    r = c.post("/api/v1/dict_item/", json={"type": kind, "item": "文", "value": "3",
                                           "editable": "false"})
    assert r.status_code == 201 and r.json["result"]["editable"] is False
    r = c.post("/api/v1/dict_item/", json={"type": kind, "item": "坏", "value": "4",
                                           "editable": "也许"})
    assert r.status_code == 400 and r.json["field"] == "editable"
    with dbs() as s:
        assert s.query(DictItem).filter_by(type=kind, item="坏").count() == 0


def test_dictionary_add_form_creates_a_locked_item(web, dbs, uniq):
    from app.models import DictItem

    kind = uniq("字典")[:30]
    w = web("admin")
    form = w.get("/dictitem/add").text
    box = re.search(r'<input[^>]*name="editable"[^>]*>', form).group(0)
    assert "required" not in box
    r = w.post_form("/dictitem/add", {"type": kind, "item": "不可编辑", "value": "1"})
    assert r.status_code == 302
    with dbs() as s:
        item = s.query(DictItem).filter_by(type=kind, item="不可编辑").one()
        assert item.editable is False


# ---- i. a refused churn measure keeps the typed text ----------------------------------

def test_too_long_churn_measure_keeps_the_text(web, dbs, app, user_id):
    from markupsafe import escape

    from .test_churn import add_order, make_customer, run_check, warnings_of
    from datetime import date, datetime, timedelta

    with dbs() as s:
        c = make_customer(s, user_id("manager1"), created_on=datetime.now() - timedelta(days=400))
        add_order(s, c.number, date.today() - timedelta(days=300))
        s.commit()
        cid = c.id
    wid = run_check(app, [cid], as_of=date.today())["opened"][0][0]
    w = web("manager1")
    show = f"/churn/show/{wid}"
    typed = "上门拜访<b>" + "很长" * 1001
    r = w.post_form(f"/churn/measure/{wid}", {"measure": typed}, form_url=show)
    assert r.status_code == 400
    assert "不能超过 2000 个字" in r.text
    assert str(escape(typed)) in r.text         # the text is back in its box
    r = w.post_form(f"/churn/confirm/{wid}", {"reason": "原因" * 1001}, form_url=show)
    assert r.status_code in (400, 409)
    if r.status_code == 400:
        assert "原因" * 1001 in r.text
    with dbs() as s:
        assert [x.status for x in warnings_of(s, cid)] == ["warning"]


# ---- l. over-long URLs: the app answers in Chinese ------------------------------------------

def test_over_long_url_is_a_chinese_414(web, api, app):
    limit = app.config["MAX_URL_LENGTH"]
    w = web("manager1")
    r = w.get("/customer/list/?_flt_0_name=" + "x" * limit)
    assert r.status_code == 414 and "网址太长" in r.text and "<title>网址太长" in r.text
    r = api("manager1").get("/api/v1/customer/?q=" + "x" * limit)
    assert r.status_code == 414 and "网址太长" in r.json["message"]
    # Chinese search text counts as sent (percent-encoded: 9 characters per 汉字)
    r = w.get("/customer/list/?_flt_0_name=" + "北" * (limit // 9 + 10))
    assert r.status_code == 414
    assert w.get("/customer/list/?_flt_0_name=" + "北" * (limit // 10)).status_code == 200


# ---- k. the security UI in Chinese --------------------------------------------------------

ASCII_WORD = re.compile(r"[A-Za-z]{2,}")


def test_every_permission_is_labelled_as_a_chinese_business_function(app, web):
    page = web("admin").get("/roles/edit/1").text
    select = re.search(r'<select[^>]*name="permissions".*?</select>', page, re.S).group(0)
    options = [o.strip() for o in re.findall(r"<option[^>]*>(.*?)</option>", select, re.S)]
    assert len(options) > 60, len(options)
    english = [o for o in options if ASCII_WORD.sub("", o.replace("OpenAPI", "")) != o.replace(
        "OpenAPI", "")]
    assert not english, english
    # one permission per function: the function's name, then the action
    for expected in ("销售机会 · 新建", "销售机会 · 制定计划", "客户服务 · 指派", "客户服务 · 新建",
                     "客户流失 · 确认", "工作台与通知 · 查看列表"):
        assert expected in options, expected


def test_permission_labels_are_data_driven():
    """After a rename to one permission per function (menu + HTML + API share one
    class_permission_name), the label comes from the app; unknown names stay readable."""
    from app.security import permission_label

    learnt = {"Pipeline": ("销售看板", False), "Thing": (None, True)}
    assert permission_label("can_add", "Pipeline", learnt) == "销售看板 · 新建"
    assert permission_label("can_assign", "Pipeline", learnt) == "销售看板 · 指派"
    # a function's own name (app/views/common.py FUNCTION_VIEW_LABELS) comes first
    assert permission_label("can_add", "Opportunity", learnt) == "销售机会 · 新建"
    assert permission_label("can_frobnicate", "Thing", learnt) == "Thing · frobnicate（接口）"
    assert permission_label("can_list", "WidgetView", {}) == "Widget · 查看列表"


def test_shared_permission_name_is_learnt_from_the_app(app):
    """The labels learnt from the running app cover every view's permission name."""
    from app.security import FUNCTION_LABELS, learn_function_labels, permission_label

    learnt = learn_function_labels(app.appbuilder)
    with app.test_request_context():
        from flask_appbuilder.security.sqla.models import PermissionView

        governed = {pv.view_menu.name for pv in db.session.query(PermissionView)}
        db.session.remove()
        for view in app.appbuilder.baseviews:
            name = view.class_permission_name
            if name in FUNCTION_LABELS or name not in governed:
                continue
            label = permission_label("can_list", name, learnt)
            assert not ASCII_WORD.search(label.replace("OpenAPI", "")), (name, label)


def test_user_form_is_chinese_and_saving_goes_to_the_list(web, uniq, dbs):
    w = web("admin")
    form = w.get("/users/add").text
    labels = re.findall(r'<label[^>]*for="(first_name|last_name)"[^>]*>\s*([^<\s]+)', form)
    assert labels == [("first_name", "姓"), ("last_name", "名")], labels
    for english in ("It's not a good policy", "Write the user", "The user role",
                    "The user group", "rewrite"):
        assert english not in form, english
    w.get("/users/list/")
    name = uniq("u")
    with dbs() as s:
        from flask_appbuilder.security.sqla.models import Role
        role_id = s.query(Role).filter_by(name="客户经理").one().id
    r = w.post_form("/users/add", {"first_name": "李", "last_name": "雷", "username": name,
                                   "email": f"{name}@example.com", "roles": str(role_id),
                                   "active": "y", "password": "Passw0rd-1",
                                   "conf_password": "Passw0rd-1"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/users/list/"), (
        r.status_code, r.headers.get("Location"))
    with dbs() as s:
        from flask_appbuilder.security.sqla.models import User
        uid = s.query(User).filter_by(username=name).one().id
    w.get(f"/users/show/{uid}")
    r = w.post_form(f"/users/edit/{uid}", {"first_name": "李", "last_name": "磊",
                                           "username": name, "email": f"{name}@example.com",
                                           "roles": str(role_id), "active": "y"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/users/list/")
    info = web("manager1").get("/userinfoeditview/form").text
    assert re.findall(r'<label[^>]*for="(first_name|last_name)"[^>]*>\s*([^<\s]+)', info) == [
        ("first_name", "姓"), ("last_name", "名")]
    assert "Write the user" not in info
