"""导出 CSV / XLSX of the lists that are not plain FAB lists — opportunities, 我的开发计划
(one row per plan item), a customer's contacts, 服务归档 and 客户流失预警 — each checked
for: the button on the list keeps the current search, the file holds exactly the rows
the list selects (row rights included), Chinese headers and status names, CSV with BOM
that pandas reads back, XLSX that openpyxl opens, and a streamed response.
"""
import io
from datetime import date, datetime
from urllib.parse import quote

import pandas as pd
import pytest
from openpyxl import load_workbook

from app.models import ChurnMeasure, ChurnWarning

from . import factories as f

BOM = b"\xef\xbb\xbf"


def read_csv(r):
    assert r.status_code == 200, r.data[:300]
    assert r.is_streamed and r.headers["Content-Type"].startswith("text/csv")
    assert r.data.startswith(BOM) and r.headers["Cache-Control"] == "no-store"
    return pd.read_csv(io.BytesIO(r.data), encoding="utf-8-sig", dtype=str, keep_default_na=False)


def read_xlsx(r):
    assert r.status_code == 200 and r.is_streamed
    return list(load_workbook(io.BytesIO(r.data)).active.iter_rows(values_only=True))


def audit(obj, uid):
    obj.created_by_fk = obj.changed_by_fk = uid
    obj.created_on = obj.changed_on = datetime.now()
    return obj


# ---- 销售机会管理 ---------------------------------------------------------------------------

def test_opportunity_export_follows_search_with_chinese_values(web, dbs, user_id, uniq):
    tag = uniq("导出机会")
    with dbs() as s:
        f.opportunity(s, user_id("manager1"), customer_name=f"{tag}甲", success_rate=70)
        f.opportunity(s, user_id("manager1"), customer_name=f"{tag}乙", status="assigned",
                      assignee_id=user_id("manager2"))
        f.opportunity(s, user_id("manager1"), customer_name=uniq("别的机会"))
        s.commit()
    c = web("exec")
    page = c.get(f"/opportunity/list/?_flt_2_customer_name={quote(tag)}")
    assert page.status_code == 200 and "导出 CSV" in page.text and "导出 XLSX" in page.text
    assert f"/opportunity/export/xlsx/?_flt_2_customer_name={quote(tag)}" in page.text
    r = c.get(f"/opportunity/export/csv/?_flt_2_customer_name={quote(tag)}")
    assert "filename*=UTF-8''" + quote("销售机会管理_") in r.headers["Content-Disposition"]
    df = read_csv(r)
    assert list(df.columns) == ["编号", "机会来源", "客户名称", "概要", "成功机率", "联系人",
                                "联系人电话", "创建人", "创建时间", "指派给", "指派时间", "状态",
                                "预计金额（元）", "预计成交日期"]
    assert sorted(df["客户名称"]) == [f"{tag}乙", f"{tag}甲"]
    by_name = df.set_index("客户名称")
    assert by_name.loc[f"{tag}甲", "状态"] == "未指派"
    assert by_name.loc[f"{tag}乙", "状态"] == "已指派（开发中）"
    assert by_name.loc[f"{tag}甲", "成功机率"] == "70"
    assert by_name.loc[f"{tag}乙", "指派给"] and by_name.loc[f"{tag}甲", "指派给"] == ""
    rows = read_xlsx(c.get(f"/opportunity/export/xlsx/?_flt_2_customer_name={quote(tag)}"))
    assert rows[0][0] == "编号" and len(rows) == 3


# ---- 我的开发计划 → one row per 计划项 -----------------------------------------------------

def test_my_plan_export_lists_plan_items_of_own_plans_only(web, dbs, user_id, uniq):
    tag = uniq("计划导出")
    with dbs() as s:
        mine = f.opportunity(s, user_id("supervisor"), customer_name=f"{tag}A", status="assigned",
                             assignee_id=user_id("manager1"))
        f.plan_item(s, mine, user_id("manager1"), date=date(2024, 3, 1), content="第一次拜访",
                    result="有意向")
        f.plan_item(s, mine, user_id("manager1"), date=date(2024, 3, 8), content="送样品")
        f.opportunity(s, user_id("supervisor"), customer_name=f"{tag}B", status="assigned",
                      assignee_id=user_id("manager1"))  # a plan without items: one row
        other = f.opportunity(s, user_id("supervisor"), customer_name=f"{tag}C",
                              status="assigned", assignee_id=user_id("manager2"))
        f.plan_item(s, other, user_id("manager2"), content="别人的计划")
        s.commit()
    c = web("manager1")
    # the list remembers each user's last tab (docs/modules/lists.md): start on the default
    assert c.get("/churn/list/?status=open").status_code == 200
    page = c.get(f"/myplan/list/?_flt_2_customer_name={quote(tag)}")
    assert page.status_code == 200 and "导出 CSV" in page.text
    df = read_csv(c.get(f"/myplan/export/csv/?_flt_2_customer_name={quote(tag)}"))
    assert list(df.columns) == ["编号", "客户名称", "概要", "指派时间", "状态", "日期",
                                "计划内容", "执行效果"]
    got = sorted(df[["客户名称", "日期", "计划内容", "执行效果"]].values.tolist())
    assert got == [[f"{tag}A", "2024-03-01", "第一次拜访", "有意向"],
                   [f"{tag}A", "2024-03-08", "送样品", ""],
                   [f"{tag}B", "", "", ""]]
    assert set(df["状态"]) == {"已指派（开发中）"}
    assert "别人的计划" not in r_text(c, f"/myplan/export/xlsx/?_flt_2_customer_name={quote(tag)}")


def r_text(c, url):
    return "\n".join(" ".join(str(v) for v in row if v is not None) for row in read_xlsx(c.get(url)))


# ---- 联系人 ---------------------------------------------------------------------------------

def test_contact_export_of_one_customer(web, dbs, user_id, uniq):
    with dbs() as s:
        cust = f.customer(s, user_id("manager1"), name=uniq("联系人导出"))
        f.contact(s, cust, user_id("manager1"), name="张三", mobile="13800138000")
        f.contact(s, cust, user_id("manager1"), name="李四", gender="女")
        other = f.customer(s, user_id("manager2"), name=uniq("别的客户"))
        f.contact(s, other, user_id("manager2"), name="王五")
        s.commit()
        cid, number, name = cust.id, cust.number, cust.name
    c = web("manager2")  # every role reads every customer's contacts; the export likewise
    page = c.get(f"/contacts/customer/{cid}")
    assert page.status_code == 200 and f"/contacts/customer/{cid}/export/csv/" in page.text
    r = c.get(f"/contacts/customer/{cid}/export/csv/")
    assert "filename*=UTF-8''" + quote(f"{name} 的联系人_") in r.headers["Content-Disposition"]
    df = read_csv(r)
    assert list(df.columns) == ["客户编号", "客户名称", "姓名", "性别", "职位", "办公电话", "手机",
                                "电子邮件", "备注"]
    assert df["姓名"].tolist() == ["张三", "李四"] and set(df["客户编号"]) == {number}
    assert df["手机"].tolist()[0] == "13800138000"
    assert read_xlsx(c.get(f"/contacts/customer/{cid}/export/xlsx/"))[1][2] == "张三"
    assert c.get("/contacts/customer/999999999/export/csv/").status_code == 404


# ---- 服务归档 -------------------------------------------------------------------------------

def test_service_archive_export_follows_search(web, dbs, user_id, uniq):
    tag = uniq("归档导出")
    with dbs() as s:
        cust = f.customer(s, user_id("manager1"), name=uniq("服务客户"))
        done = dict(status="archived", assignee_id=user_id("manager1"),
                    assigned_on=datetime(2024, 2, 1, 9), handling="已上门",
                    handler_id=user_id("manager1"), handled_on=datetime(2024, 2, 2, 9),
                    result="满意", satisfaction=5)
        f.service(s, cust, user_id("manager1"), summary=f"{tag}一", **done)
        f.service(s, cust, user_id("manager1"), summary=f"{tag}二", service_type="投诉", **done)
        f.service(s, cust, user_id("manager1"), summary=f"{tag}未归档")  # status created
        s.commit()
        number = cust.number
    c = web("exec")
    page = c.get(f"/service/archive/?summary={quote(tag)}")
    assert page.status_code == 200 and f"/service/archive/export/csv/?summary={quote(tag)}" in page.text
    df = read_csv(c.get(f"/service/archive/export/csv/?summary={quote(tag)}"))
    assert list(df.columns) == ["编号", "服务类型", "概要", "客户编号", "客户名称", "服务请求",
                                "创建人", "创建时间", "分配给", "分配时间", "服务处理", "处理人",
                                "处理时间", "处理结果", "满意度", "状态", "优先级", "响应期限",
                                "解决期限", "首次响应时间", "解决时间", "是否逾期"]
    assert sorted(df["概要"]) == [f"{tag}一", f"{tag}二"]
    assert set(df["状态"]) == {"已归档"} and set(df["客户编号"]) == {number}
    assert set(df["满意度"]) == {"5"} and set(df["处理时间"]) == {"2024-02-02 09:00:00"}
    df = read_csv(c.get(f"/service/archive/export/csv/?summary={quote(tag)}&service_type=投诉"))
    assert df["概要"].tolist() == [f"{tag}二"] and df["服务类型"].tolist() == ["投诉"]
    rows = read_xlsx(c.get(f"/service/archive/export/xlsx/?summary={quote(tag)}"))
    assert len(rows) == 3 and rows[0][1] == "服务类型"
    # a bad filter: the list's Chinese message, no file
    r = c.get("/service/archive/export/csv/?date_from=2024-13-01")
    assert r.status_code == 400 and not r.data.startswith(BOM) and "日期" in r.text


# ---- 客户流失预警 ----------------------------------------------------------------------------

@pytest.fixture
def churn_rows(dbs, user_id, uniq):
    tag = uniq("流失导出")
    with dbs() as s:
        own = f.customer(s, user_id("manager1"), name=f"{tag}甲")
        lost = f.customer(s, user_id("manager1"), name=f"{tag}乙", status="lost")
        other = f.customer(s, user_id("manager2"), name=f"{tag}丙")
        w1 = audit(ChurnWarning(customer_id=own.id, manager_id=user_id("manager1"),
                                warned_on=datetime(2024, 5, 1, 2), last_order_date=date(2023, 10, 1),
                                status="delaying"), user_id("admin"))
        w2 = audit(ChurnWarning(customer_id=lost.id, manager_id=user_id("manager1"),
                                warned_on=datetime(2024, 4, 1, 2), status="lost",
                                reason="客户已倒闭", confirmed_on=datetime(2024, 6, 1, 10)),
                   user_id("admin"))
        w3 = audit(ChurnWarning(customer_id=other.id, manager_id=user_id("manager2"),
                                warned_on=datetime(2024, 3, 1, 2)), user_id("admin"))
        s.add_all([w1, w2, w3])
        s.flush()
        s.add(audit(ChurnMeasure(warning_id=w1.id, text="打折挽留"), user_id("manager1")))
        s.add(audit(ChurnMeasure(warning_id=w1.id, text="总经理拜访"), user_id("manager1")))
        s.commit()
    return tag


def test_churn_export_follows_tab_search_and_row_rights(web, churn_rows):
    tag = churn_rows
    c = web("manager1")
    page = c.get(f"/churn/list/?status=all&customer={quote(tag)}")
    assert page.status_code == 200
    assert f"/churn/export/csv/?status=all&amp;customer={quote(tag)}" in page.text
    df = read_csv(c.get(f"/churn/export/csv/?status=all&customer={quote(tag)}"))
    assert list(df.columns) == ["客户编号", "客户名称", "客户经理", "上次下单时间", "预警时间",
                                "状态", "暂缓措施", "流失原因", "确认流失时间"]
    # 客户经理 manager1: only the warnings of their own customers, newest first
    assert df["客户名称"].tolist() == [f"{tag}甲", f"{tag}乙"]
    first, second = df.iloc[0], df.iloc[1]
    assert first["状态"] == "暂缓流失" and first["上次下单时间"] == "2023-10-01"
    assert "打折挽留" in first["暂缓措施"] and "总经理拜访" in first["暂缓措施"]
    assert second["状态"] == "已流失" and second["流失原因"] == "客户已倒闭"
    assert second["确认流失时间"] == "2024-06-01 10:00:00"  # a real datetime (text in CSV)
    # the tab narrows: 已流失 only
    df = read_csv(c.get(f"/churn/export/csv/?status=lost&customer={quote(tag)}"))
    assert df["客户名称"].tolist() == [f"{tag}乙"]
    # 销售主管 sees every customer's warnings; the default tab is 待处理 (预警 + 暂缓)
    sup = web("supervisor")
    assert sup.get("/churn/list/?status=open").status_code == 200
    df = read_csv(sup.get(f"/churn/export/csv/?customer={quote(tag)}"))
    assert sorted(df["客户名称"]) == [f"{tag}丙", f"{tag}甲"]
    rows = read_xlsx(web("exec").get(f"/churn/export/xlsx/?status=all&customer={quote(tag)}"))
    assert len(rows) == 4 and rows[0][0] == "客户编号"


# ---- shared: login, unknown format ------------------------------------------------------------

@pytest.mark.parametrize("url", ["/opportunity/export/csv/", "/myplan/export/csv/",
                                 "/service/archive/export/csv/", "/churn/export/csv/"])
def test_new_exports_need_login_and_known_format(app, web, url):
    r = app.test_client().get(url)
    assert r.status_code in (302, 401) and not r.data.startswith(BOM)
    assert web("manager1").get(url.replace("/csv/", "/pdf/")).status_code == 404
