"""统计报表 in headless Chromium: every report page draws its chart (with a comparison)
under the CSP without a console error, pages its table, and a click on a bar opens
the list behind it. Screenshots go to tests/e2e/artifacts/ (git-ignored)."""
import threading
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from app.models import ChurnWarning

from . import factories as f
from .conftest import PASSWORD

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts"


@pytest.fixture
def live_server(app):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


@pytest.fixture
def world(dbs, user_id, uniq):
    prefix = uniq("浏览器报表")
    m1, m2 = user_id("manager1"), user_id("manager2")
    with dbs() as s:
        p = f.product(s)
        for i in range(55):   # 55 customers: two pages of 50
            c = f.customer(s, m1 if i % 2 else m2, name=f"{prefix}{i:02d}号科技有限公司",
                           created_on=datetime(1984 if i % 4 else 1983, 3, 5), credit=1 + i % 5)
            f.order(s, c.number, [(p, i + 1, "100.00")], day=date(1984, 3, 1 + i % 28))
            f.order(s, c.number, [(p, 60 - i, "100.00")], day=date(1983, 3, 1 + i % 28))
            if i < 12:
                t0 = datetime(1984, 3, 1 + i, 9)
                f.service(s, c, m1, status="archived", service_type=("咨询", "投诉", "建议")[i % 3],
                          priority=("普通", "紧急")[i % 2], created_on=t0, changed_on=t0,
                          first_response_on=t0 + timedelta(hours=2 + i),
                          resolved_on=t0 + timedelta(hours=20 + i), satisfaction=1 + i % 5,
                          response_due=t0 + timedelta(hours=24),
                          resolution_due=t0 + timedelta(hours=26))
            if i < 9:
                lost = f.customer(s, m1 if i % 3 else m2, name=f"{prefix}流失{i}", status="lost")
                s.add(ChurnWarning(customer_id=lost.id, manager_id=m1 if i % 3 else m2,
                                   warned_on=datetime(1984, 1, 1), status="lost",
                                   confirmed_on=datetime(1984 if i < 6 else 1983, 3, 2 + i),
                                   reason="价格原因", created_by_fk=m1, changed_by_fk=m1))
        s.commit()
    return prefix


def test_report_pages_in_chromium(live_server, browser, world):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems = []
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    try:
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(f"{live_server}/login/")
        page.fill("input[name=username]", "supervisor")
        page.fill("input[name=password]", PASSWORD)
        page.click("[type=submit]")
        page.wait_for_load_state("networkidle")
        rng = "from=1984-03-01&to=1984-03-31&compare=last_year"
        for name, extra in (("contribution", f"&customer={world}"), ("composition", "&by=level"),
                            ("service", ""), ("churn", f"&customer={world}")):
            page.goto(f"{live_server}/reports/{name}/?{rng}{extra}")
            try:
                page.wait_for_selector("#crm-report-chart[data-ready='1']", timeout=20000)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / f"report-{name}-failed.png"), full_page=True)
                raise AssertionError((name, problems))
            assert page.locator("#crm-report-chart canvas").count() >= 1
            assert "1983-03-01 至 1983-03-31" in page.inner_text(".crm-report-period")
            page.wait_for_timeout(600)   # the chart's animation
            page.screenshot(path=str(ARTIFACTS / f"report-{name}.png"), full_page=True)
        # contribution: 55 rows, 50 on the first page, a second page
        page.goto(f"{live_server}/reports/contribution/?{rng}&customer={world}")
        assert page.locator("table[data-table=main] tbody tr").count() == 50
        assert "第 1 / 2 页" in page.inner_text(".crm-report-pager")
        # sort by name: a click on the header
        page.click("table[data-table=main] thead a.crm-sort >> nth=0")
        page.wait_for_load_state("networkidle")
        first = page.inner_text("table[data-table=main] tbody tr >> nth=0")
        assert f"{world}54号" in first or f"{world}00号" in first
        # service: click the first bar → the archive with every status of that type
        page.goto(f"{live_server}/reports/service/?from=1984-03-01&to=1984-03-31")
        page.wait_for_selector("#crm-report-chart[data-ready='1']")
        page.wait_for_timeout(600)
        xy = page.evaluate("""() => {
            const el = document.getElementById('crm-report-chart');
            const c = echarts.getInstanceByDom(el);
            const opt = c.getOption();
            const data = opt.series[0].data;
            const i = data.findIndex(v => v > 0);
            const p = c.convertToPixel({seriesIndex: 0}, [i, data[i] / 2]);
            const r = el.getBoundingClientRect();
            return [r.left + p[0], r.top + p[1], opt.xAxis[0].data[i]];
        }""")
        with page.expect_navigation():
            page.mouse.click(xy[0], xy[1])
        assert "/service/archive/" in page.url and "status=all" in page.url
        page.screenshot(path=str(ARTIFACTS / "report-service-drill.png"), full_page=False)
        assert page.locator(".crm-all-status").count() == 1
        assert not problems, problems
    finally:
        context.close()
