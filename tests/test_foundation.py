"""Foundation: init, roles, dictionary rules, sales resources, Chinese pages, schema."""
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from app.cli import run_init
from app.extensions import db
from app.models import DictItem, Model, RoleGrant
from app.workflows.actors import ADMIN, EXECUTIVE, MANAGER, SUPERVISOR

from . import factories as f


# ---- init and roles -------------------------------------------------------------

def test_init_is_idempotent_and_keeps_admin_edits(app):
    with app.app_context():
        sm = app.appbuilder.sm
        roles = {r.name for r in sm.get_all_roles()}
        assert {ADMIN, EXECUTIVE, SUPERVISOR, MANAGER} <= roles
        manager = sm.find_role(MANAGER)
        before = {(p.permission.name, p.view_menu.name) for p in manager.permissions}
        assert ("can_list", "DictItem") in before
        # an admin removes a right in the security UI ...
        pv = sm.find_permission_view_menu("can_list", "DictItem")
        manager.permissions.remove(pv)
        db.session.commit()
        items = db.session.scalar(select(func.count()).select_from(DictItem))
        grants = db.session.scalar(select(func.count()).select_from(RoleGrant))
        # ... and init runs again: nothing is re-granted, nothing duplicated
        granted, added = run_init(echo=lambda *a: None)
        assert added == 0 and set(granted.values()) == {0}
        assert db.session.scalar(select(func.count()).select_from(DictItem)) == items
        assert db.session.scalar(select(func.count()).select_from(RoleGrant)) == grants
        manager = sm.find_role(MANAGER)
        after = {(p.permission.name, p.view_menu.name) for p in manager.permissions}
        assert after == before - {("can_list", "DictItem")}
        # restore for other tests
        manager.permissions.append(sm.find_permission_view_menu("can_list", "DictItem"))
        db.session.commit()
        db.session.remove()


def test_base_dictionary_seeded(dbs):
    with dbs() as s:
        levels = s.scalars(select(DictItem.item).where(DictItem.type == "客户等级")).all()
        assert {"普通客户", "重点开发客户", "大客户", "合作伙伴", "战略合作伙伴"} <= set(levels)
        assert {"咨询", "建议", "投诉"} <= set(
            s.scalars(select(DictItem.item).where(DictItem.type == "服务类型")).all())
        assert {"北京", "华北", "中南", "东北", "西部"} <= set(
            s.scalars(select(DictItem.item).where(DictItem.type == "地区")).all())


def test_schema_matches_migrations(app):
    """`flask db upgrade` produced exactly the models (what `flask db check` verifies)."""
    with app.app_context():
        with db.engine.connect() as conn:
            from app.models.base import include_object

            ctx = MigrationContext.configure(conn, opts={"include_object": include_object})
            diff = compare_metadata(ctx, Model.metadata)
        assert diff == []


# ---- dictionary: rights and the editable rule ---------------------------------------

@pytest.mark.parametrize("username", ["exec", "supervisor", "manager1"])
def test_dictionary_readable_but_not_writable_by_staff(api, uniq, dbs, username):
    c = api(username)
    r = c.get("/api/v1/dict_item/?q=(page_size:100)")
    assert r.status_code == 200 and r.json["count"] >= 27
    assert set(r.json["result"][0]) == {"id", "type", "item", "value", "editable"}
    name = uniq("条目")
    assert c.post("/api/v1/dict_item/", json={"type": "地区", "item": name, "value": "9"}).status_code == 403
    with dbs() as s:
        item_id = s.scalar(select(DictItem.id).where(DictItem.item == "北京"))
    assert c.put(f"/api/v1/dict_item/{item_id}", json={"value": "x"}).status_code == 403
    assert c.delete(f"/api/v1/dict_item/{item_id}").status_code == 403
    with dbs() as s:
        assert s.scalar(select(func.count()).select_from(DictItem).where(DictItem.item == name)) == 0
        assert s.get(DictItem, item_id).value != "x"


def test_admin_dictionary_crud_and_lock(api, uniq, dbs):
    c = api("admin")
    name = uniq("测试类别")
    r = c.post("/api/v1/dict_item/", json={"type": name, "item": "甲", "value": "1"})
    assert r.status_code == 201, r.json
    pk = r.json["id"]
    r = c.put(f"/api/v1/dict_item/{pk}", json={"item": "乙", "value": "2"})
    assert r.status_code == 200 and r.json["result"]["item"] == "乙"
    # duplicate (type, item) → 400 with a Chinese message
    r = c.post("/api/v1/dict_item/", json={"type": name, "item": "乙", "value": "3"})
    assert r.status_code == 400 and "已存在" in r.json["message"]
    # empty field → 400 naming the field
    r = c.post("/api/v1/dict_item/", json={"type": name, "item": "", "value": "3"})
    assert r.status_code == 400 and r.json["field"] == "item" and "不能为空" in r.json["message"]
    # lock: set not editable; then edits and deletes are refused with 409, nothing changes
    r = c.put(f"/api/v1/dict_item/{pk}", json={"editable": False})
    assert r.status_code == 200 and r.json["result"]["editable"] is False
    r = c.put(f"/api/v1/dict_item/{pk}", json={"value": "9"})
    assert r.status_code == 409 and "不可编辑" in r.json["message"]
    assert c.delete(f"/api/v1/dict_item/{pk}").status_code == 409
    with dbs() as s:
        item = s.get(DictItem, pk)
        assert (item.item, item.value, item.editable) == ("乙", "2", False)
    # an editable one can be deleted
    pk2 = c.post("/api/v1/dict_item/", json={"type": name, "item": "丙", "value": "3"}).json["id"]
    assert c.delete(f"/api/v1/dict_item/{pk2}").status_code == 200
    with dbs() as s:
        assert s.get(DictItem, pk2) is None


def test_dictionary_item_in_use_cannot_be_deleted(api, dbs, user_id, uniq):
    with dbs() as s:
        item = DictItem(type="客户等级", item=uniq("等级"), value="9",
                        created_by_fk=user_id("admin"), changed_by_fk=user_id("admin"))
        s.add(item)
        s.flush()
        f.customer(s, user_id("manager1"), level=item)
        s.commit()
        pk = item.id
    r = api("admin").delete(f"/api/v1/dict_item/{pk}")
    assert r.status_code == 409 and "正在被" in r.json["message"]
    with dbs() as s:
        assert s.get(DictItem, pk) is not None


def test_dictionary_html_admin_edit_and_lock_with_csrf(web, dbs, uniq, user_id):
    admin = web("admin")
    name = uniq("类")
    r = admin.post_form("/dictitem/add", {"type": name, "item": "条一", "value": "1",
                                          "editable": "y"})
    assert r.status_code == 302
    assert "保存成功" in admin.get("/dictitem/list/").text
    with dbs() as s:
        pk = s.scalar(select(DictItem.id).where(DictItem.type == name))
    # without CSRF token the form is refused and nothing changes
    r = admin.post(f"/dictitem/edit/{pk}", data={"type": name, "item": "改", "value": "2"})
    assert r.status_code == 400
    r = admin.post_form(f"/dictitem/edit/{pk}", {"type": name, "item": "条二", "value": "2"})
    assert r.status_code == 302
    # lock through the FAB action (POST with CSRF)
    r = admin.post_form("/dictitem/action_post", {"action": "lock", "rowid": str(pk)},
                        form_url="/dictitem/list/")
    assert r.status_code == 302
    with dbs() as s:
        item = s.get(DictItem, pk)
        assert (item.item, item.editable) == ("条二", False)
    # a locked item: edit page answers 409 in Chinese, delete too, nothing changes
    r = admin.get(f"/dictitem/edit/{pk}")
    assert r.status_code == 409 and "不可编辑" in r.text
    r = admin.post_form(f"/dictitem/delete/{pk}", {}, form_url="/dictitem/list/")
    assert r.status_code == 409
    with dbs() as s:
        assert s.get(DictItem, pk) is not None


def test_dictionary_html_forbidden_for_manager(web, dbs):
    m = web("manager1")
    assert m.get("/dictitem/list/").status_code == 200
    r = m.get("/dictitem/add")
    assert r.status_code in (302, 403)
    with dbs() as s:
        pk = s.scalar(select(DictItem.id).where(DictItem.item == "北京"))
    r = m.post_form(f"/dictitem/delete/{pk}", {}, form_url="/dictitem/list/")
    assert r.status_code in (302, 403)
    with dbs() as s:
        assert s.get(DictItem, pk) is not None


# ---- sales system: read-only resources, orders 5/6 and totals ------------------------

@pytest.mark.parametrize("resource", ["product", "stock", "order"])
def test_sales_resources_refuse_writes(api, resource):
    c = api("admin")
    assert c.get(f"/api/v1/{resource}/").status_code == 200
    assert c.post(f"/api/v1/{resource}/", json={"name": "x"}).status_code == 405
    assert c.put(f"/api/v1/{resource}/1", json={"name": "x"}).status_code == 405
    assert c.delete(f"/api/v1/{resource}/1").status_code == 405


def test_orders_only_shipped_or_paid_newest_first_with_totals(api, dbs, uniq, web):
    number = uniq("KH")
    with dbs() as s:
        p1 = f.product(s, price="10.50")
        p2 = f.product(s, name="扫描仪", price="200.00")
        shipped = f.order(s, number, [(p1, 2, "10.50"), (p2, 1, "200.00")], status=5,
                          day=f.days_ago(30))
        paid = f.order(s, number, [(p1, 4, "10.50")], status=6, day=f.days_ago(3))
        for st in (1, 2, 3, 4):
            f.order(s, number, [(p2, 1, "200.00")], status=st, day=f.days_ago(1))
        s.commit()
        shipped_id, paid_id, p1_id = shipped.id, paid.id, p1.id
    c = api("manager1")
    q = f"(filters:!((col:customer_number,opr:eq,value:'{number}')))"
    r = c.get(f"/api/v1/order/?q={q}")
    assert r.status_code == 200
    assert r.json["count"] == 2
    rows = r.json["result"]
    assert [row["id"] for row in rows] == [paid_id, shipped_id]      # newest first
    assert rows[0]["total"] == "42.00" and rows[1]["total"] == "221.00"
    assert rows[1]["lines"][0] == {"product_id": p1_id, "quantity": 2, "unit": "台",
                                   "price": "10.50"}
    assert set(rows[0]) >= {"id", "number", "customer_number", "date", "address", "status",
                            "lines", "total"}
    one = c.get(f"/api/v1/order/{shipped_id}").json["result"]
    assert one["total"] == "221.00" and len(one["lines"]) == 2
    # an order with status 1–4 is not visible
    with dbs() as s:
        from app.models import Order
        hidden = s.scalar(select(Order.id).where(Order.customer_number == number,
                                                 Order.status == 1))
    assert c.get(f"/api/v1/order/{hidden}").status_code == 404
    # HTML detail shows lines and the total in 元
    page = web("manager1").get(f"/order/show/{shipped_id}")
    assert page.status_code == 200 and "221.00 元" in page.text and "订单明细" in page.text
    assert web("manager1").get(f"/order/show/{hidden}").status_code == 404


def test_orders_of_customer_paging(dbs, uniq):
    from app.workflows.sales import orders_of_customer

    number = uniq("KH")
    with dbs() as s:
        p = f.product(s, price="1.00")
        for i in range(25):
            f.order(s, number, [(p, i + 1, "1.00")], status=5 + i % 2, day=f.days_ago(i))
        f.order(s, number, [(p, 1, "1.00")], status=3, day=f.days_ago(0))
        s.commit()
        count, page0 = orders_of_customer(s, number, page=0, page_size=20)
        _, page1 = orders_of_customer(s, number, page=1, page_size=20)
    assert count == 25 and len(page0) == 20 and len(page1) == 5
    assert [t for _, t in page0[:3]] == [Decimal(1), Decimal(2), Decimal(3)]
    dates = [o.date for o, _ in page0 + page1]
    assert dates == sorted(dates, reverse=True)


def test_product_and_stock_queries(web, dbs, uniq):
    name = uniq("投影仪")
    with dbs() as s:
        f.product(s, name=name)
        s.commit()
    page = web("manager2").get(f"/product/list/?_flt_2_name={name}")
    assert page.status_code == 200 and name in page.text and "产品查询" in page.text
    assert web("exec").get("/stock/list/").status_code == 200


# ---- users API ---------------------------------------------------------------

def test_user_api_lists_without_password(api):
    r = api("manager1").get("/api/v1/user/?role=客户经理&active=true")
    assert r.status_code == 200
    names = {u["username"] for u in r.json["result"]}
    assert {"manager1", "manager2"} <= names and "admin" not in names
    assert all("password" not in u for u in r.json["result"])
    assert set(r.json["result"][0]) >= {"id", "username", "name", "roles", "active"}
    assert api().get("/api/v1/user/").status_code == 401


# ---- Chinese pages --------------------------------------------------------------------

def test_login_page_is_chinese(web):
    page = web().get("/login/")
    assert page.status_code == 200
    for text in ("登录", "用户名", "密码", "客户关系管理系统"):
        assert text in page.text


@pytest.mark.parametrize("url", ["/dictitem/list/", "/product/list/", "/order/list/", "/"])
def test_pages_are_chinese(web, url):
    page = web("admin").get(url)
    assert page.status_code == 200
    assert "基础数据" in page.text and "取消" in page.text and "确定" in page.text
    for english in (">Cancel<", ">OK<", "List Dict", ">Search<"):
        assert english not in page.text


def test_menus_follow_roles(web):
    admin = web("admin").get("/").text
    assert "安全" in admin and "数据字典" in admin
    manager = web("manager1").get("/").text
    assert "数据字典" in manager and "用户列表" not in manager


def test_english_selectable(web):
    c = web("admin")
    page = c.get("/dictitem/list/?_l_=en")
    assert page.status_code == 200 and "Search" in page.text


def test_api_labels_are_chinese(api):
    """Every resource's list and _info name its columns in Chinese (FAB would fall back
    to English names made from the column: "Created By Fk")."""
    import re

    c = api("admin")
    spec = c.get("/api/v1/_openapi").json
    resources = sorted({p.split("/")[3] for p in spec["paths"]
                        if p.startswith("/api/v1/") and p.endswith("/_info")})
    assert len(resources) >= 10
    english = re.compile(r"[A-Za-z _]+")
    for name in resources:
        info = c.get(f"/api/v1/{name}/_info")
        listed = c.get(f"/api/v1/{name}/", query_string={"q": "(page_size:1)"})
        for r in (info, listed):
            assert r.status_code == 200, (name, r.status_code)
            labels = r.json.get("label_columns") or {}
            bad = {k: v for k, v in labels.items() if english.fullmatch(str(v))}
            assert not bad, (name, bad)
