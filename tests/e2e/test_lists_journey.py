"""Lists in Chromium (issue 21 item 2): quick search + tabs on a list, and pick lists
with a search field (FAB's select2 fields and our own <select>s, via crm.js)."""
from urllib.parse import quote

from .conftest import ARTIFACTS


def test_opportunity_list_quick_search_and_tabs(session):
    s = session("supervisor")
    s.goto("/opportunity/list/?tab=all")
    assert s.page.locator(".crm-list-tabs li.active a").inner_text().strip() == "全部"
    box = s.page.locator("#crm-list-q")
    assert box.is_visible()
    # type in the box, Enter: the list is searched, the tab stays
    first = s.page.locator("table.crm-opportunity-list tbody tr td").nth(3).inner_text()
    word = first.strip()[:2]
    box.fill(word)
    with s.page.expect_navigation():
        box.press("Enter")
    assert f"q={quote(word)}" in s.page.url and "tab=all" in s.page.url
    assert s.page.locator("#crm-list-q").input_value() == word
    # 我的: the tab link keeps the search
    with s.page.expect_navigation():
        s.page.click(".crm-list-tabs a[data-tab=unassigned]")
    assert "tab=unassigned" in s.page.url and f"q={quote(word)}" in s.page.url
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    s.page.screenshot(path=str(ARTIFACTS / "lists-opportunity-quick-search-tabs.png"))
    # remembered: the plain list opens on 未指派
    s.goto("/opportunity/list/")
    assert s.page.locator(".crm-list-tabs li.active a").inner_text().strip() == "未指派"
    s.goto("/opportunity/list/?tab=all")
    assert not s.errors, s.errors


def test_pick_lists_are_searchable(session):
    s = session("supervisor")
    # a FAB form field (Select2Widget): 地区 on 新建客户
    s.goto("/customer/add")
    s.page.click("#s2id_region, #region + .select2-container")
    field = s.page.locator(".select2-container--open .select2-search__field")
    assert field.is_visible()
    field.fill("华北")
    results = s.page.locator(".select2-results__option")
    assert results.count() == 1 and results.first.inner_text() == "华北"
    field.press("Enter")
    assert s.page.locator("#region option:checked").inner_text() == "华北"
    # one of our own pages: a plain <select> with enough options becomes searchable
    s.goto("/search/?q=%E5%85%AC%E5%8F%B8")
    kind = s.page.locator("#crm-search-page-kind")
    assert "crm-searchable" in (kind.get_attribute("class") or "")
    s.page.click("#crm-search-page-kind + .select2-container")
    field = s.page.locator(".select2-container--open .select2-search__field")
    field.fill("客户")
    texts = [t.strip() for t in s.page.locator(".select2-results__option").all_inner_texts()]
    assert texts and all("客户" in t for t in texts), texts
    field.press("Escape")
    # Playwright (and so the other journeys) can still pick on the native select
    s.page.select_option("#crm-search-page-kind", index=1)
    assert s.page.locator("#crm-search-page-kind").input_value() != ""
    assert not s.errors, s.errors


def test_service_archive_search_and_remembered_tab(session):
    """A custom list (服务归档, app/views/service.py): type in the search, switch tab,
    the tab link keeps the search and the plain list reopens on the chosen tab."""
    s = session("supervisor")
    s.goto("/service/archive/?tab=all")
    assert s.page.locator(".crm-list-tabs li.active a").inner_text().strip() == "全部"
    number = s.page.locator("table tbody tr td a").first.inner_text().strip()
    box = s.page.locator("#search")
    box.fill(number.lower())
    with s.page.expect_navigation():
        box.press("Enter")
    assert "search=" in s.page.url and "tab=all" in s.page.url
    rows = s.page.locator("table tbody tr")
    assert rows.count() == 1 and number in rows.first.inner_text()
    with s.page.expect_navigation():
        s.page.click(".crm-list-tabs a[data-tab=open]")
    assert "tab=open" in s.page.url and "search=" in s.page.url
    s.goto("/service/archive/?tab=all&search=" + quote(number))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    s.page.screenshot(path=str(ARTIFACTS / "lists-service-archive-search-tabs.png"))
    with s.page.expect_navigation():
        s.page.click(".crm-list-tabs a[data-tab=open]")
    s.goto("/service/archive/")
    assert s.page.locator(".crm-list-tabs li.active a").inner_text().strip() == "处理中"
    s.goto("/service/archive/?tab=archived")
    assert not s.errors, s.errors
