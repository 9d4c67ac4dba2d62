"""工作台 journeys in Chromium (issue 20): the bell lights up for manager1 when the
supervisor assigns, the notice leads to the opportunity; the pages a 客户经理 uses at a
customer's site work on a 390 px phone; the admin's navbar never wraps."""
import re

from .test_journeys import db_rows, manager1_customer, user_id

PHONE = {"width": 390, "height": 844}


def bell_count(s):
    s.goto("/")
    badge = s.page.locator("#crm-bell .crm-bell-count")
    return int(badge.inner_text().replace("+", "")) if badge.count() else 0


def test_bell_lights_up_when_the_supervisor_assigns(session, server):
    _base, env = server
    m = session("manager1")
    before = bell_count(m)
    sup = session("supervisor")
    sup.goto("/")
    with sup.page.expect_navigation():
        sup.page.click("a.crm-tile[data-key='opps_unassigned']")
    assert "待指派的销售机会" in sup.text()
    with sup.page.expect_navigation():
        sup.page.locator(".crm-worklist a").first.click()
    opp_id = re.search(r"/opportunity/assign/(\d+)", sup.page.url).group(1)
    sup.page.select_option("#assignee_id", str(user_id(env, "manager1")))
    with sup.page.expect_navigation():
        sup.page.click("button[type=submit]:has-text('指派')")
    assert bell_count(m) == before + 1
    with m.page.expect_navigation():
        m.page.click("#crm-bell")
    assert "通知" in m.text() and "指派给您开发" in m.text()
    with m.page.expect_navigation():
        m.page.locator(".crm-notice-open", has_text="指派给您开发").first.click()
    assert m.page.url.endswith(f"/opportunity/plan/{opp_id}")
    assert bell_count(m) == before


def _fits_the_phone(s, path):
    s.goto(path)
    s.page.wait_for_load_state()
    width = s.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1, f"{path}: horizontal scrolling ({width} px wide)"
    small = s.page.evaluate("""() => Array.from(document.querySelectorAll(
        '.container button, .container .btn, .container input[type=submit], .crm-tile, .crm-tap'))
        .filter(e => e.offsetParent !== null)
        .map(e => [e.innerText.trim() || e.value || e.className, e.getBoundingClientRect().height])
        .filter(([, h]) => h < 40)""")
    assert not small, f"{path}: tap targets under 40 px: {small[:5]}"
    assert s.page.locator(".navbar-toggle").is_visible(), f"{path}: the navbar did not collapse"


def test_manager_pages_work_on_a_390px_phone(session, server, browser):
    _base, env = server
    cid, _number, _name = manager1_customer(env)
    opp = db_rows(env, "SELECT o.id FROM crm_opportunity o JOIN ab_user u ON u.id = o.assignee_id "
                       "WHERE u.username = 'manager1' AND o.status = 'assigned' ORDER BY o.id")
    ticket = db_rows(env, "SELECT t.id FROM crm_service t JOIN ab_user u ON u.id = t.assignee_id "
                          "WHERE u.username = 'manager1' AND t.status = 'assigned' ORDER BY t.id")
    s = session()
    s.context.close()
    s.context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True, has_touch=True)
    s.page = s.context.new_page()
    s.page.on("pageerror", lambda e: s.errors.append(f"pageerror: {e}"))
    s.page.on("response", s._on_response)
    s.login("manager1")
    paths = ["/", f"/customer/show/{cid}", f"/activities/customer/{cid}/add"]
    if opp:
        paths.append(f"/opportunity/execute/{opp[0][0]}")
    if ticket:
        paths.append(f"/service/handle/{ticket[0][0]}")
    for path in paths:
        _fits_the_phone(s, path)
    s.screenshot("phone-dashboard")


def test_admin_navbar_collapses_instead_of_wrapping(session):
    s = session("admin")
    s.page.set_viewport_size({"width": 1400, "height": 900})
    s.goto("/")
    height = s.page.evaluate("document.querySelector('.navbar').getBoundingClientRect().height")
    assert height < 70, f"the navbar wrapped onto two lines ({height} px)"
