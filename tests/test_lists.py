"""Lists people can work from (app/views/lists.py): quick search, tabs remembered per
user, sorting every declared column, Chinese filter operators, searchable pick lists."""
import json
import re
from urllib.parse import quote

import pytest
from sqlalchemy import delete, select

from app.models.list_prefs import ListPreference

from . import factories as f

# every list with the mechanism: (url, view name)
LISTS = [("/customer/list/", "CustomerView"), ("/opportunity/list/", "OpportunityView"),
         ("/myplan/list/", "MyPlanView"), ("/dictitem/list/", "DictItemView"),
         ("/product/list/", "ProductView"), ("/stock/list/", "StockView"),
         ("/order/list/", "OrderView"), ("/audit/list/", "AuditView")]
NASTY = ["%", "_", "'", "\\", "\\%", "%_'\"", "a" * 500, "北京 %", "<script>", "' OR 1=1 --",
         "　", "🙂"]


def _user(username):
    return "manager1" if username is None else username


def _viewer(view):
    return "manager1" if view == "MyPlanView" else "admin"


@pytest.mark.parametrize("url,view", LISTS)
def test_quick_search_box_on_every_list_and_nasty_input(web, url, view):
    w = web(_viewer(view))
    page = w.get(url)
    assert page.status_code == 200, page.text[:300]
    assert 'name="q"' in page.text and "crm-quick-search" in page.text
    for text in NASTY:
        r = w.get(f"{url}?q={quote(text)}")
        assert r.status_code == 200, (text, r.status_code, r.text[:300])
    # combined with the list's own sorting/paging arguments
    r = w.get(f"{url}?q=%25&page_{view}=0&psize_{view}=25")
    assert r.status_code == 200


def _names(html, names):
    return {n for n in names if n in html}


def test_customer_quick_search_name_number_phone_and_escaping(web, dbs, user_id, uniq):
    tag = uniq("快搜")
    with dbs() as s:
        a = f.customer(s, user_id("manager1"), name=f"北京{tag}科技有限公司", phone="010-55501234")
        b = f.customer(s, user_id("manager1"), name=f"上海{tag}100%_公司")
        c = f.customer(s, user_id("manager2"), name=f"深圳{tag}100x公司")
        s.commit()
        na, nb, nc, num_a = a.name, b.name, c.name, a.number
    w = web("supervisor")
    names = {na, nb, nc}
    # Chinese substring
    assert _names(w.get(f"/customer/list/?q={quote(tag + '科技')}").text, names) == {na}
    # % and _ are literal: "100%_" matches only b, not "100x"
    assert _names(w.get(f"/customer/list/?q={quote(tag + '100%_')}").text, names) == {nb}
    assert _names(w.get(f"/customer/list/?q={quote(tag + '100_')}").text, names) == set()
    # number and phone
    assert na in w.get(f"/customer/list/?q={quote(num_a)}").text
    assert na in w.get(f"/customer/list/?q={quote('55501234')}").text
    # several words: all must match (in any of the columns)
    assert _names(w.get(f"/customer/list/?q={quote('北京 ' + tag)}").text, names) == {na}
    # combined with FAB's filters: 客户经理 = manager2
    page = w.get(f"/customer/list/?q={quote(tag)}&_flt_0_manager={user_id('manager2')}")
    assert _names(page.text, names) == {nc}
    # the search box keeps the text; the export follows it
    assert f'value="{tag}"' in w.get(f"/customer/list/?q={quote(tag)}").text
    csv = w.get(f"/customer/export/csv/?q={quote(tag + '科技')}").data.decode("utf-8-sig")
    assert na in csv and nb not in csv


def test_opportunity_quick_search_and_tabs(web, dbs, user_id, uniq):
    tag = uniq("机会")
    m1, m2 = user_id("manager1"), user_id("manager2")
    sup = user_id("supervisor")
    with dbs() as s:
        mine = f.opportunity(s, m1, customer_name=f"甲{tag}", summary="采购打印机")
        unassigned = f.opportunity(s, sup, customer_name=f"乙{tag}", summary="服务器")
        assigned = f.opportunity(s, sup, status="assigned", assignee_id=m1,
                                 customer_name=f"丙{tag}", summary="交换机")
        other = f.opportunity(s, sup, status="assigned", assignee_id=m2,
                              customer_name=f"丁{tag}", summary="交换机")
        s.commit()
        names = {o.customer_name for o in (mine, unassigned, assigned, other)}
        n_mine, n_un, n_as, n_other = (mine.customer_name, unassigned.customer_name,
                                       assigned.customer_name, other.customer_name)
    with dbs() as s:
        s.execute(delete(ListPreference))
        s.commit()
    w = web("manager1")
    q = f"?q={quote(tag)}"
    assert _names(w.get(f"/opportunity/list/{q}").text, names) == names      # default 全部
    assert _names(w.get(f"/opportunity/list/{q}&tab=mine").text, names) == {n_mine, n_as}
    # remembered: the next visit without ?tab= shows 我的
    page = w.get(f"/opportunity/list/{q}")
    assert _names(page.text, names) == {n_mine, n_as}
    assert re.search(r'<li role="presentation" class="active">\s*<a href="[^"]*tab=mine', page.text)
    with dbs() as s:
        assert s.scalar(select(ListPreference.tab).where(
            ListPreference.user_id == m1, ListPreference.list_key == "OpportunityView")) == "mine"
    # another user's choice is his own
    assert _names(web("manager2").get(f"/opportunity/list/{q}").text, names) == names
    # explicit choice wins over the remembered one
    assert _names(w.get(f"/opportunity/list/{q}&tab=unassigned").text, names) == {n_mine, n_un}
    assert _names(w.get(f"/opportunity/list/{q}&tab=developing").text, names) == {n_as, n_other}
    # quick search inside a tab
    page = w.get(f"/opportunity/list/?q={quote(tag + ' 交换机')}&tab=developing")
    assert _names(page.text, names) == {n_as, n_other}
    # an unknown tab is ignored (the remembered one applies), never a 5xx
    for bad in ("nope", "a" * 500, "'", "%"):
        r = w.get(f"/opportunity/list/{q}&tab={quote(bad)}")
        assert r.status_code == 200
        assert _names(r.text, names) == {n_as, n_other}
    # the tab links keep the search; FAB's search form carries q and tab
    page = w.get(f"/opportunity/list/{q}&tab=all")
    assert f'name="q" value="{tag}"' in page.text
    assert re.search(r'href="/opportunity/list/\?q=[^"]*&amp;tab=mine"', page.text)
    form = page.text.split('id="filter_form"', 1)[1].split("</form>", 1)[0]
    assert 'name="tab" value="all"' in form and f'name="q" value="{tag}"' in form
    # export follows the tab
    w.get("/opportunity/list/?tab=mine")
    csv = w.get(f"/opportunity/export/csv/{q}").data.decode("utf-8-sig")
    assert n_mine in csv and n_un not in csv
    w.get("/opportunity/list/?tab=all")


def test_customer_tabs_mine_and_all(web, dbs, user_id, uniq):
    tag = uniq("我的")
    with dbs() as s:
        a = f.customer(s, user_id("supervisor"), name=f"主管{tag}")
        b = f.customer(s, user_id("manager1"), name=f"经理{tag}")
        s.commit()
        names = {a.name, b.name}
        na, nb = a.name, b.name
    w = web("supervisor")
    assert _names(w.get(f"/customer/list/?q={tag}&tab=mine").text, names) == {na}
    assert _names(w.get(f"/customer/list/?q={tag}").text, names) == {na}
    assert _names(w.get(f"/customer/list/?q={tag}&tab=all").text, names) == names
    assert _names(w.get(f"/customer/list/?q={tag}").text, names) == names


def test_tab_memory_is_not_written_for_a_failing_list(web, dbs, user_id):
    """A 400 list (bad argument) remembers nothing."""
    w = web("exec")
    w.get("/opportunity/list/?tab=all")
    r = w.get("/opportunity/list/?tab=mine&_oc_OpportunityView=nope")
    assert r.status_code == 400
    with dbs() as s:
        assert s.scalar(select(ListPreference.tab).where(
            ListPreference.user_id == user_id("exec"),
            ListPreference.list_key == "OpportunityView")) == "all"


@pytest.mark.parametrize("url,view", LISTS)
def test_every_declared_column_sorts(app, web, dbs, user_id, url, view):
    with dbs() as s:   # at least one row with empty relations/values in the lists that allow it
        f.opportunity(s, user_id("supervisor"))
        s.commit()
    target = next(v for v in app.appbuilder.baseviews if type(v).__name__ == view)
    w = web(_viewer(view))
    for col in target.order_columns:
        for direction in ("asc", "desc"):
            r = w.get(f"{url}?_oc_{view}={quote(col)}&_od_{view}={direction}&q=%25")
            assert r.status_code == 200, (view, col, direction, r.text[:300])
            r = w.get(f"{url}?_oc_{view}={quote(col)}&_od_{view}={direction}")
            assert r.status_code == 200, (view, col, direction)
        if hasattr(target, "export_list"):
            r = w.get(url.replace("/list/", "/export/csv/") + f"?_oc_{view}={quote(col)}&_od_{view}=desc")
            assert r.status_code == 200, (view, col, "export")


def test_customer_sorted_by_manager_and_region(web, dbs, user_id, uniq):
    tag = uniq("排序")
    with dbs() as s:
        f.customer(s, user_id("manager1"), name=f"{tag}一")
        f.customer(s, user_id("supervisor"), name=f"{tag}二",
                   region=f.dict_item(s, "地区", "上海"))
        s.commit()
    w = web("admin")
    for col in ("manager", "region", "level"):
        page = w.get(f"/customer/list/?q={tag}&_oc_CustomerView={col}&_od_CustomerView=asc")
        assert page.status_code == 200
        asc = [m.start() for m in (re.search(f"{tag}一", page.text), re.search(f"{tag}二", page.text))]
        page = w.get(f"/customer/list/?q={tag}&_oc_CustomerView={col}&_od_CustomerView=desc")
        desc = [m.start() for m in (re.search(f"{tag}一", page.text), re.search(f"{tag}二", page.text))]
        if col != "level":
            assert (asc[0] < asc[1]) != (desc[0] < desc[1]), col
        # the header of a related column links to its sorting
        assert f"_oc_CustomerView={col}" in page.text


def _search_filters(html):
    m = re.search(r"new AdminFilters\(\s*'#filter_form',\s*(.*?),\s*(\{.*?\}),\s*(\{.*?\}),\s*(\[.*?\])\s*\);",
                  html, re.S)
    assert m, "no AdminFilters in the page"
    return json.loads(m.group(3))


def test_search_form_operators_are_natural_chinese(web):
    w = web("admin")
    ops = _search_filters(w.get("/customer/list/").text)
    assert ops["name"][:4] == ["开头是", "结尾是", "包含", "等于"]
    assert "以开始" not in json.dumps(ops, ensure_ascii=False)
    assert ops["manager"] == ["等于", "不等于"]
    ops = _search_filters(w.get("/audit/list/").text)
    assert ops["created_on"] == ["等于", "晚于", "早于", "不等于"]
    ops = _search_filters(w.get("/order/list/").text)
    assert ops["date"] == ["等于", "晚于", "早于", "不等于"]
    # the filter itself still works by index (URLs keep their meaning)
    assert w.get("/customer/list/?_flt_2_name=x").status_code == 200


def test_search_form_operators_in_english(web):
    w = web("admin")
    ops = _search_filters(w.get("/customer/list/?_l_=en").text)
    assert ops["name"][:4] == ["Starts with", "Ends with", "Contains", "Equal to"]


def test_no_list_bar_outside_lists(web, dbs, user_id):
    with dbs() as s:
        c = f.customer(s, user_id("manager1"))
        s.commit()
        pk = c.id
    page = web("manager1").get(f"/customer/show/{pk}?q=x&tab=mine")
    assert page.status_code == 200 and "crm-quick-search" not in page.text


def test_anonymous_gets_login_not_list(web):
    r = web().get("/customer/list/?q=x&tab=mine")
    assert r.status_code in (302, 401)


def test_churn_tab_is_remembered(web, dbs, user_id):
    """客户流失 (not a ModelView) remembers its ?status= tab through lists.chosen_tab."""
    w = web("manager2")
    page = w.get("/churn/list/?status=lost")
    assert page.status_code == 200
    with dbs() as s:
        assert s.scalar(select(ListPreference.tab).where(
            ListPreference.user_id == user_id("manager2"),
            ListPreference.list_key == "ChurnView")) == "lost"
    assert re.search(r'<li class="active"><a href="[^"]*status=lost', w.get("/churn/list/").text)
    for bad in ("nope", "%", "a" * 500):
        assert w.get(f"/churn/list/?status={quote(bad)}").status_code == 200
    page = w.get("/churn/list/?status=open")
    assert re.search(r'<li class="active"><a href="[^"]*status=open', w.get("/churn/list/").text)
