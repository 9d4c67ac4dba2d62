"""全局搜索 in Chromium (issue 21 item 1): "/" focuses the navbar box, Enter submits, the
results are reached with Tab and lead to the record; on a 390 px phone (navbar collapsed
behind its toggle) "/" opens the menu and focuses the box."""
from .test_journeys import manager1_customer

PHONE = {"width": 390, "height": 844}


def _search_by_keyboard(s, q):
    s.page.evaluate("document.activeElement && document.activeElement.blur && document.activeElement.blur()")
    s.page.keyboard.press("/")
    assert s.page.evaluate("document.activeElement && document.activeElement.id") == "crm-search-q"
    assert s.page.locator("#crm-search-q").is_visible()
    s.page.keyboard.type(q)
    with s.page.expect_navigation():
        s.page.keyboard.press("Enter")
    assert "/search/" in s.page.url


def test_slash_enter_tab_to_the_customer(session, server):
    _base, env = server
    cid, number, name = manager1_customer(env)
    s = session("manager1")
    s.goto(f"/customer/show/{cid}")
    _search_by_keyboard(s, number)
    assert name in s.text() and number in s.text()
    # Tab from the page's own search form onto the first hit of the first group
    link = s.page.locator(f'a.crm-search-hit[href="/customer/show/{cid}"]')
    assert link.count() == 1
    s.page.focus("#crm-search-page-q")
    for _ in range(40):
        s.page.keyboard.press("Tab")
        if s.page.evaluate("document.activeElement.classList.contains('crm-search-hit')"):
            break
    assert s.page.evaluate("document.activeElement.classList.contains('crm-search-hit')")
    link.focus()
    with s.page.expect_navigation():
        s.page.keyboard.press("Enter")
    assert s.page.url.endswith(f"/customer/show/{cid}")
    assert not s.errors, s.errors


def test_slash_opens_the_collapsed_navbar_on_a_phone(session, server, browser):
    _base, env = server
    _cid, _number, name = manager1_customer(env)
    s = session()
    s.context.close()
    s.context = browser.new_context(viewport=PHONE, locale="zh-CN")
    s.page = s.context.new_page()
    s.page.on("pageerror", lambda e: s.errors.append(f"pageerror: {e}"))
    s.login("manager1")
    s.goto("/")
    assert not s.page.locator("#crm-search-q").is_visible()   # behind the toggle
    _search_by_keyboard(s, name[:2])
    assert s.page.locator("#crm-search-page-q").input_value() == name[:2]
    assert not s.errors, s.errors
