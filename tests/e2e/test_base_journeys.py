"""Journeys of the foundation: login in Chinese, dictionary admin, role edits."""
import re


def test_login_and_chinese_menus(session):
    s = session("manager1")
    body = s.text()
    assert "基础数据" in body and "客户关系管理系统" in body
    s.page.click("text=基础数据")
    s.page.click("text=产品查询")
    s.page.wait_for_load_state()
    assert "产品查询" in s.text()
    for english in ("List ", "Search", "Add Filter"):
        assert english not in s.text()


def test_admin_edits_and_locks_dictionary_item(session):
    s = session("admin")
    s.goto("/dictitem/add")
    s.page.fill("#type", "行业")
    s.page.fill("#item", "制造业")
    s.page.fill("#value", "1")
    s.page.click("button[type=submit], input[type=submit]")
    s.page.wait_for_load_state()
    assert "保存成功" in s.text()
    s.goto("/dictitem/list/?_flt_0_type=行业")
    row = s.page.locator("tr", has_text="制造业")
    row.locator("a[href*='/dictitem/edit/']").first.click()
    s.page.wait_for_load_state()
    s.page.fill("#value", "2")
    s.page.click("button[type=submit], input[type=submit]")
    s.page.wait_for_load_state()
    assert "保存成功" in s.text()
    # lock it through the list action
    s.goto("/dictitem/list/?_flt_0_type=行业")
    s.page.locator("tr", has_text="制造业").locator("input[type=checkbox]").check()
    s.page.click("text='操作'")
    s.page.click("a:has-text('设为不可编辑')")
    s.page.click("#modal-confirm-ok")
    # the confirm dialog submits a form: wait for the page it leads to, not the old one
    s.page.wait_for_selector(".alert-success:has-text('已设为不可编辑')")
    assert "已设为不可编辑" in s.text()
    # the edit page of a locked item answers 409 in Chinese
    href = s.page.locator("tr", has_text="制造业").locator("a[href*='/show/']").first.get_attribute("href")
    pk = re.search(r"/show/(\d+)", href).group(1)
    s.allowed_statuses.add(409)
    s.goto(f"/dictitem/edit/{pk}")
    assert "不可编辑" in s.text()
