"""操作记录: the read-only audit page/API and the change records of customers,
dictionary items, users and roles (who, when, before → after)."""
import json

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Customer, DictItem, WorkflowEvent

from . import factories as f


def _events(s, entity, entity_id, action=None):
    q = select(WorkflowEvent).where(WorkflowEvent.entity == entity,
                                    WorkflowEvent.entity_id == entity_id)
    if action:
        q = q.where(WorkflowEvent.action == action)
    return s.scalars(q.order_by(WorkflowEvent.id)).all()


def test_dictionary_changes_are_recorded_with_actor_and_before_after(api, dbs, uniq, user_id):
    c = api("admin")
    kind = uniq("审计类别")
    pk = c.post("/api/v1/dict_item/", json={"type": kind, "item": "甲", "value": "1"}).json["id"]
    assert c.put(f"/api/v1/dict_item/{pk}", json={"item": "乙", "value": "2"}).status_code == 200
    assert c.delete(f"/api/v1/dict_item/{pk}").status_code == 200
    with dbs() as s:
        evs = _events(s, "crm_dict_item", pk)
        assert [e.action for e in evs] == ["insert", "update", "delete"]
        assert {e.created_by_fk for e in evs} == {user_id("admin")}
        ins, upd, dele = (json.loads(e.note) for e in evs)
        assert ins["item"] == [None, "甲"] and ins["type"] == [None, kind]
        assert upd == {"item": ["甲", "乙"], "value": ["1", "2"]}
        assert dele["item"] == ["乙", None]


def test_customer_change_recorded_and_cli_changes_act_as_system(app, dbs, user_id):
    from app.cli import SYSTEM_USERNAME

    with dbs() as s:
        c = f.customer(s, user_id("manager1"))
        s.commit()
        cid = c.id
        # outside a request (a CLI job): the crm-system user is the actor
        system_id = app.appbuilder.sm.find_user(username=SYSTEM_USERNAME).id
        cust = s.get(Customer, cid)
        cust.phone, cust.changed_by_fk = "010-99999999", system_id   # as CLI jobs do
        s.commit()
        ev = _events(s, "crm_customer", cid, "update")[-1]
        assert json.loads(ev.note) == {"phone": ["010-62345678", "010-99999999"]}
        assert ev.created_by_fk == system_id
        assert _events(s, "crm_customer", cid, "insert")


def test_rolled_back_change_leaves_no_record(dbs, user_id, uniq):
    with dbs() as s:
        kind = uniq("回滚")
        item = DictItem(type=kind, item="甲", value="1", created_by_fk=user_id("admin"),
                        changed_by_fk=user_id("admin"))
        s.add(item)
        s.flush()
        q = select(WorkflowEvent).where(WorkflowEvent.note.contains(kind))
        assert s.scalars(q).all()
        s.rollback()
        assert not s.scalars(q).all()


def test_user_and_role_changes_never_record_the_password(app, web, dbs, uniq):
    sm = app.appbuilder.sm
    name = uniq("audit")
    with app.app_context():
        role_name = uniq("审计角色")
        role = sm.add_role(role_name)
        user = sm.add_user(name, "审", "计", f"{name}@example.com", [sm.find_role("客户经理")],
                           password="Audit-pass-1")
        role_id, uid = role.id, user.id
        # a role gains a permission; the user gets another role and a new password
        role.permissions.append(sm.find_permission_view_menu("can_list", "DictItem"))
        user.roles.append(role)
        user.password = "pbkdf2:sha256:fake-new-hash"
        db.session.commit()
        db.session.remove()
    with dbs() as s:
        role_ev = _events(s, "ab_role", role_id, "update")[-1]
        assert json.loads(role_ev.note)["permissions"] == [[], ["can_list on DictItem"]]
        user_evs = _events(s, "ab_user", uid)
        for ev in user_evs:
            assert "pbkdf2" not in ev.note and "Audit-pass-1" not in ev.note
        upd = json.loads(user_evs[-1].note)
        assert upd["password"] == ["***", "***（已修改）"]
        assert upd["roles"] == [["客户经理"], sorted(["客户经理", role_name])]


def test_login_is_not_recorded_as_a_user_change(app, web, dbs, user_id):
    with dbs() as s:
        before = len(_events(s, "ab_user", user_id("manager2")))
    web("manager2")
    with dbs() as s:
        assert len(_events(s, "ab_user", user_id("manager2"))) == before


def test_audit_page_lists_and_filters_for_exec_and_admin(web, api, uniq):
    kind = uniq("页面审计")
    pk = api("admin").post("/api/v1/dict_item/", json={"type": kind, "item": "<b>甲</b>",
                                                         "value": "1"}).json["id"]
    for who in ("exec", "admin"):
        page = web(who).get(f"/audit/list/?_flt_0_entity=crm_dict_item&_flt_0_entity_id={pk}")
        assert page.status_code == 200
        assert "操作记录" in page.text and "数据字典" in page.text and "新增" in page.text
        assert "&lt;b&gt;甲&lt;/b&gt;" in page.text and "<b>甲</b>" not in page.text
    r = api("exec").get(f"/api/v1/audit/?q=(filters:!((col:entity,opr:eq,value:crm_dict_item),"
                        f"(col:entity_id,opr:eq,value:{pk})))")
    assert r.status_code == 200 and r.json["count"] >= 1     # (SQLite reuses deleted ids)
    newest = r.json["result"][0]
    assert newest["action"] == "insert" and kind in newest["note"]
    assert set(newest) == {"id", "created_on", "created_by_fk", "entity", "entity_id", "action",
                           "from_status", "to_status", "note"}
    for who in ("supervisor", "manager1"):
        assert web(who).get("/audit/list/").status_code == 403
        assert api(who).get("/api/v1/audit/").status_code == 403


@pytest.mark.parametrize("method,url", [
    ("POST", "/api/v1/audit/"), ("PUT", "/api/v1/audit/1"), ("DELETE", "/api/v1/audit/1"),
])
def test_records_cannot_be_changed_through_the_api(api, method, url, dbs):
    with dbs() as s:
        n = s.query(WorkflowEvent).count()
    r = api("admin")._call(method.lower(), url, json={"note": "x"})
    assert r.status_code == 405
    with dbs() as s:
        assert s.query(WorkflowEvent).count() == n


def test_no_write_route_exists_for_audit(app):
    rules = [r for r in app.url_map.iter_rules() if "/audit" in r.rule]
    assert rules
    for r in rules:
        assert r.methods - {"GET", "HEAD", "OPTIONS"} == set(), r.rule


def test_reassigned_customer_records_names_not_bare_ids(api, dbs, user_id):
    """before → after of a manager/region change says who and which region."""
    from .factories import dict_item

    with dbs() as s:
        c = f.customer(s, user_id("manager1"))
        s.commit()
        cid, old_region = c.id, c.region.item
        other = s.scalars(select(DictItem).where(DictItem.type == "地区",
                                                 DictItem.item != old_region)).first()
        if other is None:
            other = dict_item(s, "地区", "审计测试地区")
            s.commit()
        region_id, region_text = other.id, other.item
    r = api("admin").put(f"/api/v1/customer/{cid}", json={"manager_id": user_id("manager2"),
                                                          "region": region_text})
    assert r.status_code == 200, r.text
    with dbs() as s:
        note = json.loads(_events(s, "crm_customer", cid, "update")[-1].note)
    assert note["manager_id"][0].endswith("(manager1)") and note["manager_id"][1].endswith(
        "(manager2)"), note
    assert note["region_id"][0].startswith(old_region + " (#")
    assert note["region_id"][1] == f"{region_text} (#{region_id})"


def test_admin_unlock_is_recorded_and_shown(app, web, dbs, uniq, user_id):
    sm = app.appbuilder.sm
    name = uniq("unlockaudit")
    with app.app_context():
        user = sm.add_user(name, "解", "锁", f"{name}@example.com", [sm.find_role("客户经理")],
                           password="Unlock-pass-1")
        user.fail_login_count = 7
        db.session.commit()
        uid = user.id
        db.session.remove()
    admin = web("admin")
    r = admin.post_form("/users/action_post", {"action": "unlock", "rowid": str(uid)},
                        form_url="/users/list/")
    assert r.status_code == 302
    with dbs() as s:
        ev = _events(s, "ab_user", uid, "unlock")[-1]
        assert json.loads(ev.note) == {"fail_login_count": [7, 0]}
        assert ev.created_by_fk == user_id("admin")
    page = admin.get(f"/audit/list/?_flt_0_entity=ab_user&_flt_0_entity_id={uid}")
    assert "解锁账号" in page.text and "连续登录失败次数" in page.text


def test_page_shows_field_names_in_chinese_and_filters_by_chinese_names(web, api, uniq):
    kind = uniq("字段名审计")
    c = api("admin")
    pk = c.post("/api/v1/dict_item/", json={"type": kind, "item": "甲", "value": "1"}).json["id"]
    assert c.put(f"/api/v1/dict_item/{pk}", json={"item": "乙"}).status_code == 200
    page = web("exec").get(f"/audit/list/?_flt_0_entity=crm_dict_item&_flt_0_entity_id={pk}"
                           f"&_flt_0_action=update")
    assert page.status_code == 200
    assert "<b>条目</b>: 甲 → 乙" in page.text, page.text[-3000:]
    # 对象/操作 filters offer the Chinese names, with the stored codes as values
    assert '\\u003coption value=\\"crm_dict_item\\"\\u003e\\u6570\\u636e\\u5b57\\u5178' in page.text
    assert '\\u003coption value=\\"unlock\\"\\u003e\\u89e3\\u9501\\u8d26\\u53f7' in page.text


def test_role_change_through_the_security_ui_is_recorded_with_the_admin(app, web, dbs, uniq,
                                                                        user_id):
    from flask_appbuilder.security.sqla.models import Role

    sm = app.appbuilder.sm
    with app.app_context():
        role = sm.add_role(uniq("界面角色"))
        rid, old = role.id, role.name
        db.session.remove()
    new = uniq("改名角色")
    admin = web("admin")
    r = admin.post_form(f"/roles/edit/{rid}", {"name": new})
    assert r.status_code == 302, r.text[:500]
    with dbs() as s:
        assert s.get(Role, rid).name == new
        ev = _events(s, "ab_role", rid, "update")[-1]
        assert json.loads(ev.note)["name"] == [old, new]
        assert ev.created_by_fk == user_id("admin")


def test_a_user_with_records_cannot_be_deleted_and_the_records_stay(app, web, api, dbs, uniq):
    """Deleting the actor of 操作记录 would orphan them: refused, in Chinese."""
    from flask_appbuilder.security.sqla.models import User

    sm = app.appbuilder.sm
    name = uniq("actor")
    with app.app_context():
        sm.add_user(name, "删", "除", f"{name}@example.com", [sm.find_role("系统管理员")],
                    password="Actor-pass-1")
        db.session.remove()
    from .conftest import ApiClient
    kind = uniq("删除审计")
    ApiClient(app, name, password="Actor-pass-1").post(
        "/api/v1/dict_item/", json={"type": kind, "item": "甲", "value": "1"})
    with dbs() as s:
        uid = s.scalar(select(User.id).where(User.username == name))
        n = s.query(WorkflowEvent).filter(WorkflowEvent.created_by_fk == uid).count()
        assert n >= 1
    admin = web("admin")
    r = admin.post_form(f"/users/delete/{uid}", {}, form_url="/users/list/")
    assert r.status_code == 302
    page = admin.get(r.headers["Location"])
    assert "已有操作记录" in page.text and "是否激活" in page.text
    with dbs() as s:
        assert s.get(User, uid) is not None
        assert s.query(WorkflowEvent).filter(WorkflowEvent.created_by_fk == uid).count() == n


def test_update_statements_are_recorded_like_flushes(dbs, user_id):
    """Edits that bypass the flush — a compare-and-set status step, a bulk
    ``UPDATE ... WHERE id = :b_id`` executemany (imports), an ORM bulk update by
    primary key — are recorded per row, once."""
    from sqlalchemy import bindparam, update

    from app.workflows.events import compare_and_set

    with dbs() as s:
        a, b = f.customer(s, user_id("manager1")), f.customer(s, user_id("manager1"))
        s.commit()
        C, by = Customer.__table__, user_id("supervisor")
        s.execute(update(C).where(C.c.id == bindparam("b_id"))
                  .values(phone=bindparam("v_phone"), changed_by_fk=by),
                  [{"b_id": a.id, "v_phone": "021-1"}, {"b_id": b.id, "v_phone": "021-2"}])
        compare_and_set(s, Customer, a.id, ("normal",), {"status": "lost", "changed_by_fk": by},
                        "x")
        # ORM bulk UPDATE by primary key (a list of dicts)
        s.execute(update(Customer), [{"id": a.id, "fax": "021-7", "changed_by_fk": by},
                                     {"id": b.id, "fax": "021-8", "changed_by_fk": by}])
        # a statement that changes nothing records nothing
        s.execute(update(Customer).where(Customer.id == b.id)
                  .values(phone="021-2", changed_by_fk=by))
        s.commit()
        assert [json.loads(e.note) for e in _events(s, "crm_customer", b.id, "update")] == [
            {"phone": ["010-62345678", "021-2"]}, {"fax": [None, "021-8"]}]
        upd = _events(s, "crm_customer", a.id, "update")
        assert [json.loads(e.note) for e in upd] == [{"phone": ["010-62345678", "021-1"]},
                                                      {"status": ["normal", "lost"]},
                                                      {"fax": [None, "021-7"]}]
        assert (upd[1].from_status, upd[1].to_status) == ("normal", "lost")
        # rolled back with the statement: no record
        s.execute(update(Customer).where(Customer.id == b.id)
                  .values(phone="021-3", changed_by_fk=by))
        s.rollback()
        assert len(_events(s, "crm_customer", b.id, "update")) == 2


def test_status_changes_are_shown_in_chinese(web, dbs, user_id, uniq):
    """原状态 → 新状态 in the module's own Chinese names (the same code means different
    things in different modules: an opportunity's ``assigned`` is 已指派（开发中）, a
    service's is 已分配)."""
    from app.workflows.audit import status_change_text

    assert status_change_text("opportunity", "unassigned", "assigned") == "未指派 → 已指派（开发中）"
    assert status_change_text("service", "created", "assigned") == "新创建 → 已分配"
    assert status_change_text("churn", "warning", "lost") == "预警 → 已流失"
    assert status_change_text("crm_customer", "normal", "lost") == "正常 → 已流失"
    assert status_change_text("document", None, None) == ""
    assert status_change_text("unknown", None, "x") == "— → x"
    with dbs() as s:
        opp = f.opportunity(s, user_id("supervisor"), customer_name=uniq("审计状态"))
        s.add(WorkflowEvent(entity="opportunity", entity_id=opp.id, action="assign",
                            from_status="unassigned", to_status="assigned",
                            created_by_fk=user_id("supervisor"), changed_by_fk=user_id("supervisor")))
        s.commit()
        oid = opp.id
    page = web("exec").get(f"/audit/list/?_flt_0_entity=opportunity&_flt_0_entity_id={oid}")
    assert page.status_code == 200
    assert "未指派 → 已指派（开发中）" in page.text and ">unassigned<" not in page.text
