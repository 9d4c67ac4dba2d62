"""In-process measurements on one data set (steps 1–5 and their raw-SQL references).

Run by bench.py as ``python bench/inproc.py <label> <db> <out.json> [--requests N]
[--budget S]``. Server time = wall time of one request through ``app.test_client()``
after a warm-up; raw time = the equivalent SQL through the DBAPI connection of the
same engine (rows fetched). App and raw runs are **interleaved** (app, raw, raw, app,
…), so a machine that gets busier or quieter during the run affects both alike.
"""
import argparse
import json
import os
import sys
import time
from datetime import date, datetime, timedelta
from urllib.parse import quote

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import PASSWORD, app_config, summary, target  # noqa: E402

SEARCH = "科技"
LIST_PAGE_SIZE = 20


class Timer:
    """Repeat a callable: warm-up, then up to ``n`` timed calls within ``budget`` seconds
    (at least ``min_n``). Also counts SQL statements of the last call."""

    def __init__(self, n, budget, min_n=5, warm=2):
        self.n, self.budget, self.min_n, self.warm = n, budget, min_n, warm
        self.statements = 0

    def run(self, fn):
        for i in range(self.warm):
            fn(i)
        times = []
        started = time.perf_counter()
        for i in range(self.n):
            before = STATEMENTS[0]
            t0 = time.perf_counter()
            fn(i)
            times.append(time.perf_counter() - t0)
            self.statements = STATEMENTS[0] - before
            if len(times) >= self.min_n and time.perf_counter() - started > self.budget:
                break
        out = summary(times)
        out["statements"] = self.statements
        return out


STATEMENTS = [0]


class Pair:
    """App and raw reference, interleaved: after one warm-up call of each, up to ``n``
    rounds of (app, raw) — the order alternating every round — within ``budget``
    seconds (at least ``min_n`` rounds). Returns (app summary, raw summary)."""

    def __init__(self, n, budget, min_n=3, warm=1):
        self.n, self.budget, self.min_n, self.warm = n, budget, min_n, warm

    def run(self, app_fn, raw_fn):
        for i in range(self.warm):
            app_fn(i)
            raw_fn(i)
        app_t, raw_t = [], []
        statements = 0
        started = time.perf_counter()
        for i in range(self.n):
            def timed_app():
                nonlocal statements
                before = STATEMENTS[0]
                t0 = time.perf_counter()
                app_fn(i)
                app_t.append(time.perf_counter() - t0)
                statements = STATEMENTS[0] - before

            def timed_raw():
                t0 = time.perf_counter()
                raw_fn(i)
                raw_t.append(time.perf_counter() - t0)
            for step in ((timed_app, timed_raw) if i % 2 == 0 else (timed_raw, timed_app)):
                step()
            if len(app_t) >= self.min_n and time.perf_counter() - started > self.budget:
                break
        a = summary(app_t)
        a["statements"] = statements
        return a, summary(raw_t)


def _count_statements(engines):
    from sqlalchemy import event

    for engine in engines:
        @event.listens_for(engine, "before_cursor_execute")
        def _count(*_a, **_k):
            STATEMENTS[0] += 1


# ---- raw SQL --------------------------------------------------------------------------

class Raw:
    """Plain SQL on the DBAPI connection of an engine (no ORM, no Flask)."""

    def __init__(self, engine):
        self.engine = engine
        self.dialect = engine.dialect.name
        self.conn = engine.raw_connection()

    def q(self, sql, params=()):
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        cur = self.conn.cursor()
        cur.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
        cur.close()
        return rows

    def rollback(self):
        self.conn.rollback()

    def close(self):
        self.conn.close()


LIST_SELECT_HTML = """
SELECT c.*, r.id, r.item, l.id, l.item, u.id, u.first_name, u.last_name, u.username
FROM crm_customer c
LEFT OUTER JOIN crm_dict_item r ON r.id = c.region_id
LEFT OUTER JOIN crm_dict_item l ON l.id = c.level_id
LEFT OUTER JOIN ab_user u ON u.id = c.manager_id
{where} ORDER BY {order} LIMIT 20 OFFSET 0"""
LIST_SELECT_API = "SELECT c.* FROM crm_customer c {where} ORDER BY {order} LIMIT 20 OFFSET 0"

LIST_CASES = [  # (key, label, html query args, api rison, where, order)
    ("page1", "page 1", "", "(page:0,page_size:20)", "", "c.id DESC"),
    ("search", f"name contains {SEARCH}", f"_flt_2_name={quote(SEARCH)}",
     f"(filters:!((col:name,opr:ct,value:{SEARCH})),page:0,page_size:20)",
     "WHERE lower(c.name) LIKE lower(?)", "c.id DESC"),
    ("sorted", "sorted by name", "_oc_CustomerView=name&_od_CustomerView=asc",
     "(order_column:name,order_direction:asc,page:0,page_size:20)", "", "c.name ASC"),
]


def raw_list(raw, where, order, api=False):
    params = (f"%{SEARCH}%",) if where else ()
    raw.q(f"SELECT count(*) FROM crm_customer c {where}", params)
    sql = (LIST_SELECT_API if api else LIST_SELECT_HTML).format(where=where, order=order)
    rows = raw.q(sql, params)
    if api:  # the API then maps region/level ids to their texts
        raw.q("SELECT id, item FROM crm_dict_item WHERE type IN ('地区', '客户等级')")
    return rows


RAW_MANAGER_DASHBOARD = """
SELECT
 (SELECT count(*) FROM crm_plan_item p JOIN crm_opportunity o ON o.id = p.opportunity_id
   WHERE o.assignee_id = ? AND o.status = 'assigned' AND (p.result IS NULL OR p.result = '') AND p.date = ?),
 (SELECT count(*) FROM crm_plan_item p JOIN crm_opportunity o ON o.id = p.opportunity_id
   WHERE o.assignee_id = ? AND o.status = 'assigned' AND (p.result IS NULL OR p.result = '') AND p.date < ?),
 (SELECT count(*) FROM crm_plan_item p JOIN crm_opportunity o ON o.id = p.opportunity_id
   WHERE o.assignee_id = ? AND o.status = 'assigned' AND (p.result IS NULL OR p.result = '')
   AND p.date > ? AND p.date <= ?),
 (SELECT count(*) FROM crm_opportunity o WHERE o.assignee_id = ? AND o.status = 'assigned'
   AND NOT EXISTS (SELECT 1 FROM crm_plan_item p WHERE p.opportunity_id = o.id)),
 (SELECT count(*) FROM crm_service t WHERE t.assignee_id = ? AND t.status = 'assigned'),
 (SELECT count(*) FROM crm_churn_warning w JOIN crm_customer c ON c.id = w.customer_id
   WHERE c.manager_id = ? AND w.status IN ('warning', 'delaying')),
 (SELECT count(*) FROM crm_notification n WHERE n.user_id = ? AND n.read_on IS NULL)"""

RAW_SUPERVISOR_DASHBOARD = """
SELECT
 (SELECT count(*) FROM crm_opportunity WHERE status = 'unassigned'),
 (SELECT count(*) FROM crm_service WHERE status = 'created'),
 (SELECT count(*) FROM crm_service WHERE status = 'assigned' AND satisfaction < 3),
 (SELECT count(*) FROM crm_service t JOIN ab_user u ON u.id = t.assignee_id
   WHERE t.status = 'assigned' AND u.active IS NOT TRUE)"""


def raw_dashboard(raw, raw_sales, role, user_id, today):
    from datetime import timedelta

    if role == "manager":
        d = today.isoformat()
        week = (today + timedelta(days=7)).isoformat()
        return raw.q(RAW_MANAGER_DASHBOARD, (user_id, d, user_id, d, user_id, d, week, user_id,
                                             user_id, user_id, user_id))
    rows = raw.q(RAW_SUPERVISOR_DASHBOARD)
    # the KPI tiles: new customers by month, churn by quarter, tickets by age; the order
    # totals by month are cached per process in the app (see docs/modules/dashboard.md)
    raw.q("SELECT substr(CAST(created_on AS TEXT), 1, 7), count(*) FROM crm_customer "
          "WHERE created_on >= ? GROUP BY 1", ((today.replace(day=1) - timedelta(days=335)).isoformat(),))
    raw.q("SELECT confirmed_on FROM crm_churn_warning WHERE status = 'lost' AND confirmed_on >= ?",
          (f"{today.year - 3}-01-01",))
    raw.q("SELECT count(*) FROM crm_service WHERE status IN ('created', 'assigned', 'handled')")
    return rows


def raw_contribution(raw_crm, raw_sales, year, per_order):
    year_sql = ""
    params = ()
    if year:
        year_sql = " AND o.date >= ? AND o.date < ?"
        params = (date(year, 1, 1).isoformat(), date(year + 1, 1, 1).isoformat())
    if per_order:
        sql = ("SELECT o.customer_number, sum(p.amount) FROM sales_order o JOIN "
               "(SELECT order_id, sum(quantity * price) AS amount FROM sales_order_line "
               "GROUP BY order_id) p ON p.order_id = o.id WHERE o.status IN (5, 6)"
               f"{year_sql} GROUP BY o.customer_number")
    else:
        sql = ("SELECT o.customer_number, sum(l.quantity * l.price) FROM sales_order o "
               "JOIN sales_order_line l ON l.order_id = o.id WHERE o.status IN (5, 6)"
               f"{year_sql} GROUP BY o.customer_number")
    rows = raw_sales.q(sql, params)
    names = raw_crm.q("SELECT number, name FROM crm_customer")
    return len(rows), len(names)


def raw_composition(raw, by):
    col = {"level": "level_id", "credit": "credit"}[by]
    raw.q(f"SELECT {col}, count(id) FROM crm_customer WHERE status = 'normal' GROUP BY {col}")
    raw.q("SELECT id, item FROM crm_dict_item WHERE type = '客户等级' ORDER BY id")


def raw_service(raw, year):
    """The same work as 客户服务分析 (app/reports/service.py), by hand: one GROUP BY
    (type, priority) over the tickets of the range with the main table's counts, the
    type × priority hours and the open tickets by age (conditional sums), one GROUP BY
    month of the rated tickets, and the service types. (Until session 11 this was the
    count per type only — the report of issue 11 — which made the report look 4–15×
    its raw SQL while it did the work of issue 22 as well.)"""
    pg = raw.dialect == "postgresql"
    now = datetime.now().replace(microsecond=0)

    def ts(d):
        return d.strftime("%Y-%m-%d %H:%M:%S")

    def hours(later, earlier):
        return (f"date_part('epoch', {later} - {earlier}) / 3600.0" if pg else
                f"(julianday({later}) - julianday({earlier})) * 24.0")
    n = "?"
    params = []
    ages = []
    for lo, hi in ((0, 1), (1, 3), (3, 7), (7, 30), (30, None)):
        cond = f"status <> 'archived' AND created_on <= {n}"
        params.append(ts(now - timedelta(days=lo)))
        if hi is not None:
            cond += f" AND created_on > {n}"
            params.append(ts(now - timedelta(days=hi)))
        ages.append(f"sum(CASE WHEN {cond} THEN 1 ELSE 0 END)")
    missed = (f"(response_due IS NOT NULL AND (first_response_on > response_due OR "
              f"(first_response_on IS NULL AND response_due < {n}))) OR "
              f"(resolution_due IS NOT NULL AND (resolved_on > resolution_due OR "
              f"(resolved_on IS NULL AND resolution_due < {n})))")
    head = [ts(now), ts(now)]
    created = "created_on" if pg else "+created_on"
    where, wparams = "", []
    if year:
        where = f" WHERE {created} >= ? AND {created} < ?"
        wparams = [f"{year}-01-01 00:00:00", f"{year + 1}-01-01 00:00:00"]
    resp = f"CASE WHEN first_response_on IS NOT NULL THEN {hours('first_response_on', 'created_on')} END"
    reso = f"CASE WHEN resolved_on IS NOT NULL THEN {hours('resolved_on', 'created_on')} END"
    raw.q("SELECT service_type_id, priority, min(priority_rank), count(*), "
          f"sum(CASE WHEN {missed} THEN 1 ELSE 0 END), "
          "sum(CASE WHEN response_due IS NOT NULL THEN 1 ELSE 0 END), "
          f"sum({resp}), count({resp}), sum({reso}), count({reso}), "
          "sum(CASE WHEN resolved_on IS NOT NULL AND resolution_due IS NOT NULL THEN 1 ELSE 0 END), "
          "sum(CASE WHEN resolved_on IS NOT NULL AND resolution_due IS NOT NULL "
          "AND resolved_on <= resolution_due THEN 1 ELSE 0 END), "
          + ", ".join(ages) + ", sum(CASE WHEN status <> 'archived' THEN 1 ELSE 0 END) "
          f"FROM crm_service{where} GROUP BY service_type_id, priority",
          tuple(head + params + wparams))
    month = "date_trunc('month', created_on)" if pg else "substr(created_on, 1, 7)"
    where2 = " AND created_on >= ? AND created_on < ?" if year else ""
    raw.q(f"SELECT {month}, count(satisfaction), sum(satisfaction) FROM crm_service "
          f"WHERE satisfaction IS NOT NULL{where2} GROUP BY {month} ORDER BY {month}",
          tuple(wparams))
    raw.q("SELECT id, item FROM crm_dict_item WHERE type = '服务类型' ORDER BY id")


def raw_churn_report(raw, customer=None):
    where = " AND c.name LIKE ?" if customer else ""
    raw.q("SELECT c.name, u.first_name, u.last_name, u.username, w.last_order_date, "
          "w.confirmed_on, w.reason FROM crm_churn_warning w JOIN crm_customer c "
          "ON c.id = w.customer_id LEFT JOIN ab_user u ON u.id = w.manager_id "
          f"WHERE w.status = 'lost'{where} ORDER BY w.confirmed_on DESC, w.id DESC",
          (f"%{customer}%",) if customer else ())


# ---- raw churn check: last orders → temp table → recover UPDATE, anti-join INSERT, events

def raw_churn_check(t, crm_engine, sales_engine, as_of, cutoff, actor_id):
    """The physical work of the churn check, in one transaction that is rolled back.
    Returns the number of warnings it would open."""
    now = datetime.now().replace(microsecond=0)
    cutoff_dt = datetime.combine(cutoff, datetime.min.time())
    if crm_engine.dialect.name == "sqlite":
        import sqlite3
        path = t["crm_uri"][len("sqlite:///"):]
        sales_path = t["sales_uri"][len("sqlite:///"):]
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=15000")
            conn.execute(f"ATTACH DATABASE '{sales_path}' AS s")
            conn.execute("BEGIN")
            conn.execute("CREATE TEMP TABLE t (customer_number VARCHAR(32) PRIMARY KEY, "
                         "last_date DATE NOT NULL)")
            conn.execute("INSERT INTO t SELECT customer_number, max(date) FROM s.sales_order "
                         "WHERE status IN (5, 6) AND date <= ? GROUP BY customer_number",
                         (as_of.isoformat(),))
            opened = _raw_churn_statements(conn.execute, "?", now, cutoff, cutoff_dt, actor_id)
            conn.execute("ROLLBACK")
            conn.execute("DETACH DATABASE s")
        finally:
            conn.close()
        return opened
    import io
    sconn = sales_engine.raw_connection()
    try:
        cur = sconn.cursor()
        cur.execute("SELECT customer_number, max(date) FROM sales_order WHERE status IN (5, 6) "
                    "AND date <= %s GROUP BY customer_number", (as_of,))
        buf = io.StringIO("".join(f"{n}\t{d.isoformat()}\n" for n, d in cur.fetchall()))
        cur.close()
    finally:
        sconn.close()
    conn = crm_engine.raw_connection()
    try:
        cur = conn.cursor()
        cur.execute("CREATE TEMP TABLE t (customer_number VARCHAR(32) PRIMARY KEY, "
                    "last_date DATE NOT NULL) ON COMMIT DROP")
        cur.copy_from(buf, "t", columns=("customer_number", "last_date"))
        cur.execute("ANALYZE t")

        def execute(sql, params=()):
            cur.execute(sql, params)
            return cur
        opened = _raw_churn_statements(execute, "%s", now, cutoff, cutoff_dt, actor_id)
        conn.rollback()
        cur.close()
    finally:
        conn.close()
    return opened


def _raw_churn_statements(execute, ph, now, cutoff, cutoff_dt, actor_id):
    p = ph
    if p == "?":  # SQLite stores dates/datetimes as ISO text
        now_v, cutoff_v, cutoff_dt_v = (now.isoformat(" "), cutoff.isoformat(),
                                        cutoff_dt.isoformat(" "))
    else:
        now_v, cutoff_v, cutoff_dt_v = now, cutoff, cutoff_dt
    execute(f"UPDATE crm_churn_warning SET status = 'recovered', recovered_on = {p} "
            f"WHERE status IN ('warning', 'delaying') AND EXISTS (SELECT 1 FROM crm_customer c "
            f"JOIN t ON t.customer_number = c.number WHERE c.id = crm_churn_warning.customer_id "
            f"AND t.last_date >= {p})", (now_v, cutoff_v))
    max_id = execute("SELECT coalesce(max(id), 0) FROM crm_churn_warning").fetchone()[0]
    execute(
        "INSERT INTO crm_churn_warning (customer_id, manager_id, last_order_date, warned_on, "
        "status, created_on, changed_on, created_by_fk, changed_by_fk) "
        f"SELECT c.id, c.manager_id, t.last_date, {p}, 'warning', {p}, {p}, {p}, {p} "
        "FROM crm_customer c LEFT JOIN t ON t.customer_number = c.number "
        "WHERE c.status = 'normal' AND NOT EXISTS (SELECT 1 FROM crm_churn_warning w "
        "WHERE w.customer_id = c.id AND w.status IN ('warning', 'delaying')) "
        f"AND (t.last_date < {p} OR (t.last_date IS NULL AND c.created_on < {p}))",
        (now_v, now_v, now_v, actor_id, actor_id, cutoff_v, cutoff_dt_v))
    execute(
        "INSERT INTO crm_workflow_event (entity, entity_id, action, from_status, to_status, "
        "note, created_on, changed_on, created_by_fk, changed_by_fk) "
        f"SELECT 'churn', id, 'open', NULL, 'warning', {p}, {p}, {p}, {p}, {p} "
        f"FROM crm_churn_warning WHERE id > {p}",
        ("截止日期", now_v, now_v, actor_id, actor_id, max_id))
    return execute(f"SELECT count(*) FROM crm_churn_warning WHERE id > {p}",
                   (max_id,)).fetchone()[0]


# ---- the steps --------------------------------------------------------------------------

SEARCH_KINDS = {  # kind → (crm_search_gram code, table, searched columns): app/workflows/search.py
    "customer": (1, "crm_customer", ("name", "number", "phone", "legal_person")),
    "contact": (2, "crm_contact", ("name", "office_phone", "mobile", "email")),
    "opportunity": (3, "crm_opportunity", ("customer_name", "summary")),
    "ticket": (4, "crm_service", ("number", "summary")),
    "document": (5, "crm_document", ("name",)),
    "mail": (6, "crm_mail", ("subject",)),
}


def raw_search_path(q):
    from app.workflows.search import gram_query

    if gram_query(q):
        return "crm_search_gram lookup"
    return "trigram index" if len(q) >= 3 else "scan, newest first"


def raw_search(raw, q):
    """The newest 1001 matching ids of every kind, by hand, on the path the app takes."""
    from app.workflows.search import caseless, gram_query

    like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    pg = raw.dialect == "postgresql"
    for kind, (code, tbl, cols) in SEARCH_KINDS.items():
        if gram_query(q):
            where, params = ("id IN (SELECT id FROM crm_search_gram WHERE kind = ? AND gram = ?)",
                             (code, q))
        elif len(q) >= 3 and not pg:
            where, params = (f"id IN (SELECT rowid FROM crm_search_{kind} WHERE crm_search_{kind} "
                             "MATCH ?)", ('"' + q.replace('"', '""') + '"',))
        elif len(q) >= 3:
            where = " OR ".join(f"{c} ILIKE ? ESCAPE '\\'" for c in cols)
            params = (like,) * len(cols)
        elif not pg:
            where = " OR ".join((f"instr({c}, ?) > 0" if caseless(q) else f"{c} LIKE ? ESCAPE '\\'")
                                for c in cols)
            params = (q if caseless(q) else like,) * len(cols)
        else:
            op = 'COLLATE "C" LIKE' if caseless(q) else "ILIKE"
            where = " OR ".join(f"{c} {op} ? ESCAPE '\\'" for c in cols)
            params = (like,) * len(cols)
        raw.q(f"SELECT id FROM {tbl} WHERE {where} ORDER BY id DESC LIMIT 1001", params)


def login_html(client, username):
    import re
    page = client.get("/login/")
    token = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', page.text).group(1)
    r = client.post("/login/", data={"csrf_token": token, "username": username,
                                     "password": PASSWORD})
    assert r.status_code == 302, f"login of {username} failed: {r.status_code}"


def login_api(client, username):
    r = client.post("/api/v1/security/login", json={"username": username, "password": PASSWORD,
                                                     "provider": "db"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json['access_token']}"}


def check(resp, url, expect=200):
    if resp.status_code != expect:
        raise RuntimeError(f"{url}: HTTP {resp.status_code} {resp.get_data(as_text=True)[:300]}")
    return resp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("label")
    ap.add_argument("db")
    ap.add_argument("out")
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--budget", type=float, default=30.0)
    ap.add_argument("--steps", default="list,api,page,reports,dashboard,rollup,search")
    args = ap.parse_args()
    t = target(args.label, args.db)
    os.environ["CRM_INSTANCE_DIR"] = t["instance"]

    from app import create_app
    from app.extensions import db

    app = create_app(app_config(t))
    steps = set(args.steps.split(","))
    results = {"db": args.db, "label": args.label, "rows": []}

    def add(step, case, app_s=None, raw_s=None, **extra):
        results["rows"].append({"step": step, "case": case, "app": app_s, "raw": raw_s, **extra})
        msg = f"  [{args.db}] {step} / {case}:"
        if app_s:
            msg += (f" app median {app_s['median'] * 1000:.1f} ms, p95 {app_s['p95'] * 1000:.1f} ms,"
                    f" n={app_s['n']}, sql/req={app_s.get('statements')}")
        if raw_s:
            msg += f"; raw median {raw_s['median'] * 1000:.1f} ms"
            if app_s:
                msg += f", ratio {app_s['median'] / raw_s['median']:.2f}"
        print(msg, flush=True)
        save()

    def save():
        # after every case: a run that dies later (killed for memory, a crash) still
        # leaves what it measured for bench.py to print
        tmp = args.out + ".part"
        with open(tmp, "w") as fh:
            json.dump(results, fh, ensure_ascii=False, indent=1, default=str)
        os.replace(tmp, args.out)

    timer = Timer(args.requests, args.budget)
    pair = Pair(args.requests, args.budget)
    web = app.test_client()
    api = app.test_client()        # manager1's JWT
    api_sup = app.test_client()    # supervisor's JWT (separate cookie jars: the APIs allow
    #                                browser login, so a session cookie would win over the JWT)
    # log in outside any app context: a request inside an outer context shares its g and
    # its database session, so the login's session row would sit in an open transaction
    login_html(web, "manager1")
    m1 = login_api(api, "manager1")
    sup = login_api(api_sup, "supervisor")
    with app.app_context():
        engines = [db.engines[None], db.engines["sales"]]
        _count_statements(engines)
        raw = Raw(db.engines[None])
        raw_sales = Raw(db.engines["sales"])
        from sqlalchemy import text
        ids = [r[0] for r in db.session.execute(text(
            "SELECT id FROM crm_customer WHERE status = 'normal' ORDER BY id")).all()]
        db.session.remove()
    sample = ids[:: max(1, len(ids) // 97)][:97]

    # framework floor: a protected JSON endpoint that does no database work of its own
    floor = timer.run(lambda i: check(api_sup.get("/api/v1/report/none", headers=sup), "floor", 404))
    results["floor"] = floor
    add("floor", "protected API request, no query (404)", floor)

    # requests run outside any app context: an outer context would be reused by every
    # request (Flask keeps g, so g.user would leak from one client to the next)
    if True:
        if "list" in steps or "api" in steps:
            for key, label, qs, rison, where, order in LIST_CASES:
                if "list" in steps:
                    url = "/customer/list/" + (f"?{qs}" if qs else "")
                    check(web.get(url), url)
                    a, r = pair.run(lambda i: check(web.get(url), url),
                                    lambda i: raw_list(raw, where, order))
                    add("1 list HTML", label, a, r)
                if "api" in steps:
                    url = f"/api/v1/customer/?q={quote(rison)}"
                    check(api.get(url, headers=m1), url)
                    a, r = pair.run(lambda i: check(api.get(url, headers=m1), url),
                                    lambda i: raw_list(raw, where, order, api=True))
                    add("2 list API", label, a, r)
        if "page" in steps:
            url0 = f"/customer/show/{sample[0]}"
            check(web.get(url0), url0)
            a = timer.run(lambda i: check(web.get(f"/customer/show/{sample[i % len(sample)]}"),
                                          "customer page"))
            add("3 customer page", "all sections (97 different customers)", a)
        if "reports" in steps:
            year = date.today().year - 1
            cases = [
                ("contribution", "", lambda: best_of(raw_contribution, raw, raw_sales, None)),
                ("contribution", f"year={year}",
                 lambda: best_of(raw_contribution, raw, raw_sales, year)),
                ("contribution", f"year={year}&compare=previous",
                 lambda: (best_of(raw_contribution, raw, raw_sales, year),
                          best_of(raw_contribution, raw, raw_sales, year - 1))),
                ("contribution", "sort=customer_name&page=3",
                 lambda: best_of(raw_contribution, raw, raw_sales, None)),
                ("contribution", f"from={year}-03-01&to={year}-10-31",
                 lambda: best_of(raw_contribution, raw, raw_sales, year)),
                ("contribution", f"from={year}-03-10&to={year}-10-20",
                 lambda: best_of(raw_contribution, raw, raw_sales, year)),
                # the same ranges compared (several grains on both sides)
                ("contribution", f"from={year}-03-01&to={year}-10-31&compare=previous",
                 lambda: (best_of(raw_contribution, raw, raw_sales, year),
                          best_of(raw_contribution, raw, raw_sales, year - 1))),
                ("contribution", f"from={year}-03-10&to={year}-10-20&compare=last_year",
                 lambda: (best_of(raw_contribution, raw, raw_sales, year),
                          best_of(raw_contribution, raw, raw_sales, year - 1))),
                # 本季度 (a whole quarter) and the same compared with the quarter before;
                # raw reference: the year's scan, as for the ranges above
                ("contribution", f"from={year}-04-01&to={year}-06-30",
                 lambda: best_of(raw_contribution, raw, raw_sales, year)),
                ("contribution", f"from={year}-04-01&to={year}-06-30&compare=previous",
                 lambda: best_of(raw_contribution, raw, raw_sales, year)),
                ("composition", "", lambda: raw_composition(raw, "level")),
                ("composition", "by=credit", lambda: raw_composition(raw, "credit")),
                ("service", "", lambda: raw_service(raw, None)),
                ("service", f"year={year}", lambda: raw_service(raw, year)),
                ("churn", "", lambda: raw_churn_report(raw)),
                ("churn", f"customer={SEARCH}", lambda: raw_churn_report(raw, SEARCH)),
            ]
            for name, qs, rawfn in cases:
                url = f"/api/v1/report/{name}" + (f"?{qs}" if qs else "")
                check(api_sup.get(url, headers=sup), url)
                a, r = pair.run(lambda i: check(api_sup.get(url, headers=sup), url),
                                lambda i: rawfn())
                add("4 report JSON", f"{name} {qs or '(default)'}".strip(), a, r)
        if "dashboard" in steps:
            from app.scheduler import business_today

            today = business_today(app)
            with app.app_context():
                m1_id = app.appbuilder.sm.find_user(username="manager1").id
                db.session.remove()
            home = app.test_client()
            login_html(home, "manager1")
            check(home.get("/"), "/")
            a, r = pair.run(lambda i: check(home.get("/"), "工作台 manager1"),
                            lambda i: raw_dashboard(raw, raw_sales, "manager", m1_id, today))
            add("8 工作台", "客户经理 (HTML /)", a, r)
            url = "/api/v1/dashboard/"
            check(api.get(url, headers=m1), url)
            a, r = pair.run(lambda i: check(api.get(url, headers=m1), url),
                            lambda i: raw_dashboard(raw, raw_sales, "manager", m1_id, today))
            add("8 工作台", "客户经理 (API)", a, r)
            check(api_sup.get(url, headers=sup), url)
            a, r = pair.run(lambda i: check(api_sup.get(url, headers=sup), url),
                            lambda i: raw_dashboard(raw, raw_sales, "supervisor", None, today))
            add("8 工作台", "销售主管 (API, with KPI; order totals cached)", a, r)
        if "search" in steps:
            # 全局搜索 (docs/modules/search.md): every kind for 客户经理; 3+ characters use the
            # trigram index (FTS5 / pg_trgm), 1–2 汉字 the piece index crm_search_gram
            # (migration 0012), other 1–2 character strings the scan that stops early; a rare
            # 2-character word (no hit) is the scan's worst case. Raw: the same per-kind
            # SQL by hand (newest 1001 ids of each kind, no rights filter).
            for q in ("星辰科技", SEARCH, "科", "鑫淼", "qz"):
                url = f"/api/v1/search/?q={quote(q)}"
                check(api.get(url, headers=m1), url)
                a, r = pair.run(lambda i: check(api.get(url, headers=m1), url),
                                lambda i: raw_search(raw, q))
                add("9 全局搜索", f"API q={q} (all kinds; raw: {raw_search_path(q)})", a, r)
            url = f"/search/?q={quote(SEARCH)}"
            check(web.get(url), url)
            a = timer.run(lambda i: check(web.get(url), url))
            add("9 全局搜索", f"HTML q={SEARCH}", a)
        if "rollup" in steps:
            with app.app_context():
                rollup_step(add, args.requests)
        raw.close()
        raw_sales.close()

    results["complete"] = True
    save()


_BEST = {}


def best_of(fn, raw, raw_sales, year):
    """The contribution reference: the faster of the two plain SQL shapes (per order
    first, or the direct join), chosen once per year filter."""
    key = year
    if key not in _BEST:
        times = {}
        for per_order in (True, False):
            t0 = time.perf_counter()
            fn(raw, raw_sales, year, per_order)
            times[per_order] = time.perf_counter() - t0
        _BEST[key] = min(times, key=times.get)
        print(f"    contribution raw shapes (year={year}): per-order {times[True] * 1000:.0f} ms,"
              f" direct join {times[False] * 1000:.0f} ms", flush=True)
    return fn(raw, raw_sales, year, _BEST[key])


def rollup_step(add, repeats):
    """订单汇总 refresh (the function behind ``crm rollup refresh`` and the hourly job)
    beside the raw aggregate it is built from (the same GROUP BY on the sales
    database, rows fetched), interleaved, ≥ 3 rounds. The refresh rebuilds the rollup
    from the same sales data, so the data set is left as it was (only its
    ``refreshed_at`` moves)."""
    from app.extensions import db
    from app.workflows import rollup

    sales = db.engines["sales"]
    sql = rollup.raw_aggregate_sql(sales.dialect.name)

    def raw_fn(_i):
        conn = sales.raw_connection()
        try:
            cur = conn.cursor()
            cur.execute(sql)
            n = len(cur.fetchall())
            cur.close()
            conn.rollback()
        finally:
            conn.close()
        return n

    state = {}

    def refresh(full):
        def app_fn(_i):
            state.update(rollup.refresh(db.session, full=full))
            db.session.remove()
        return app_fn

    rounds = max(3, min(repeats, 3))
    a, r = Pair(rounds, 0, min_n=3, warm=0).run(refresh(True), raw_fn)
    add("10 rollup refresh", f"full rebuild + swap ({state['months']:,} customer-months, "
        f"{state['customers']:,} customers)", a, r)
    a, r = Pair(rounds, 0, min_n=3, warm=1).run(refresh(False), raw_fn)
    assert state["changed"] == 0, state
    add("10 rollup refresh", "incremental, no order changed since the last refresh", a, r)
    # an hour's changes: CHANGED shipped orders (of as many customers) cancelled, then
    # shipped again, before each timed refresh (untimed); restored at the end, the
    # rollup refreshed again: the data set is left as found
    from sqlalchemy import text
    with sales.connect() as conn:
        ids = [r[0] for r in conn.execute(text(
            "SELECT min(id) FROM sales_order WHERE status = 5 GROUP BY customer_number "
            "ORDER BY 1 LIMIT :n"), {"n": CHANGED})]
    marks = ",".join(str(i) for i in ids)

    def set_status(status):
        with sales.begin() as conn:
            conn.execute(text(f"UPDATE sales_order SET status = :s WHERE id IN ({marks})"),
                         {"s": status})

    app_t, raw_t = [], []
    try:
        for i in range(rounds):
            set_status(4 if i % 2 == 0 else 5)
            for step in ("app", "raw") if i % 2 == 0 else ("raw", "app"):
                t0 = time.perf_counter()
                if step == "app":
                    state.update(rollup.refresh(db.session))
                    db.session.remove()
                    assert state["changed"] == len(ids), state
                    app_t.append(time.perf_counter() - t0)
                else:
                    raw_fn(i)
                    raw_t.append(time.perf_counter() - t0)
    finally:
        set_status(5)
        rollup.refresh(db.session)
        db.session.remove()
    a = summary(app_t)
    a["statements"] = 0
    add("10 rollup refresh", f"incremental, {len(ids):,} orders of as many customers "
        f"changed status", a, summary(raw_t))


CHANGED = 1000


if __name__ == "__main__":
    main()
