"""Demo data for ``crm seed-demo``: users, customers, contacts, activities,
opportunities and tickets in every status, and the sales system's products,
stock and orders over the last three years.

Fast at scale: rows are generated from pools made once with Faker (zh_CN) and
written with bulk Core INSERTs in chunks, never one ORM object per row.
"""
import random
import time
from datetime import date, datetime, timedelta
from decimal import Decimal

from faker import Faker
from flask import current_app
from sqlalchemy import func, insert, select

from .extensions import db
from .models import (
    Activity, ChurnWarning, Contact, Customer, DictItem, NumberSequence, Opportunity,
    Order, OrderLine, PlanItem, Product, ServiceTicket, Stock, sales_metadata,
)
from .models.dictionary import LEVEL, REGION, SERVICE_TYPE
from .workflows.actors import ADMIN, EXECUTIVE, MANAGER, SUPERVISOR
from .workflows.numbering import PREFIX_CUSTOMER, PREFIX_OPPORTUNITY, PREFIX_SERVICE, format_number

DEMO_USERS = [
    # (username, 姓 = FAB first_name, 名 = FAB last_name, role, email)
    ("admin", "系统", "管理员", ADMIN, "admin@demo.crm"),
    ("exec", "王", "总", EXECUTIVE, "exec@demo.crm"),
    ("supervisor", "李", "主管", SUPERVISOR, "supervisor@demo.crm"),
    ("manager1", "张", "伟", MANAGER, "manager1@demo.crm"),
    ("manager2", "刘", "芳", MANAGER, "manager2@demo.crm"),
]
CHUNK = 5000


def _chunks(rows, size=CHUNK):
    buf = []
    for r in rows:
        buf.append(r)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def ensure_demo_users(password):
    sm = current_app.appbuilder.sm
    ids = {}
    for username, first, last, role_name, email in DEMO_USERS:
        user = sm.find_user(username=username)
        if user is None:
            role = sm.find_role(role_name)
            user = sm.add_user(username, first, last, email, [role], password=password)
            if not user:
                raise RuntimeError(f"cannot create demo user {username}")
        ids[username] = user.id
    return ids


class _Progress:
    def __init__(self, echo):
        self.echo = echo
        self.t0 = time.perf_counter()

    def __call__(self, what, n):
        self.echo(f"  [{time.perf_counter() - self.t0:6.1f}s] {what}: {n:,}")


def seed_demo(scale=200, password=None, seed=2026, echo=print):
    import secrets

    generated = password is None
    if generated:
        password = secrets.token_urlsafe(9)
    progress = _Progress(echo)
    users = ensure_demo_users(password)
    db.session.commit()
    rnd = random.Random(seed)
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    if db.session.scalar(select(func.count()).select_from(Customer)):
        # The CRM part is one transaction and the sales part another: if a run was
        # killed between them, finish the sales part for the existing customers.
        numbers = db.session.scalars(select(Customer.number).order_by(Customer.id)).all()
        seed_sales(numbers, rnd, fake, date.today(), progress)
        seed_churn(rnd, progress)
        echo("演示数据已存在，跳过生成。")
        _print_logins(echo, password, existing=True)
        return users
    admin = users["admin"]
    managers = [users["manager1"], users["manager2"]]
    today = date.today()
    now = datetime.now().replace(microsecond=0)

    dict_ids = {t: [d.id for d in db.session.scalars(select(DictItem).where(DictItem.type == t))]
                for t in (REGION, LEVEL, SERVICE_TYPE)}
    if not all(dict_ids.values()):
        raise RuntimeError("数据字典为空：请先运行 flask crm init")

    # pools made once with Faker
    companies = sorted({fake.company() for _ in range(min(6000, max(400, scale * 3)))})
    rnd.shuffle(companies)
    people = [fake.name() for _ in range(2000)]
    addresses = [fake.address().split(" ")[0] for _ in range(1000)]
    phones = [fake.phone_number() for _ in range(2000)]
    places = ["客户公司会议室", "我司展厅", "电话沟通", "视频会议", "行业展会", "餐厅"]
    summaries = ["产品介绍", "价格洽谈", "回访", "需求调研", "合同签订", "售后沟通", "技术交流"]
    positions = ["总经理", "副总经理", "采购经理", "财务经理", "技术主管", "销售经理"]

    audit = lambda ts, who=admin: {"created_on": ts, "changed_on": ts,  # noqa: E731
                                   "created_by_fk": who, "changed_by_fk": who}

    # ---- customers ----------------------------------------------------------
    per_day = {}
    cust_rows = []
    cust_numbers = []
    for i in range(scale):
        created = now - timedelta(days=rnd.randint(0, 3 * 365), minutes=rnd.randint(0, 1440))
        d = created.date()
        per_day[d] = per_day.get(d, 0) + 1
        number = format_number(PREFIX_CUSTOMER, d, per_day[d])
        cust_numbers.append(number)
        mgr = managers[i % len(managers)]
        name = companies[i % len(companies)]
        if i >= len(companies):
            name = f"{name}（{addresses[i % len(addresses)][:2]}{i // len(companies)}分公司）"
        cust_rows.append({
            "number": number, "name": name, "region_id": rnd.choice(dict_ids[REGION]),
            "manager_id": mgr, "level_id": rnd.choice(dict_ids[LEVEL]),
            "satisfaction": rnd.randint(1, 5), "credit": rnd.randint(1, 5),
            "address": addresses[i % len(addresses)], "zip_code": f"{rnd.randint(100000, 899999)}",
            "phone": phones[i % len(phones)], "fax": None, "website": f"https://www.c{i}.com.cn",
            "license_no": f"91{rnd.randint(10**15, 10**16 - 1)}",
            "legal_person": people[(i * 7) % len(people)],
            "registered_capital": Decimal(rnd.choice([50, 100, 500, 1000, 5000])),
            "annual_turnover": Decimal(rnd.randint(100, 100000) * 1000),
            "bank": rnd.choice(["中国工商银行", "中国建设银行", "中国银行", "招商银行", "中国农业银行"]),
            "bank_account": f"62{rnd.randint(10**16, 10**17 - 1)}",
            "local_tax_no": None, "national_tax_no": None, "status": "normal",
            **audit(created, mgr),
        })
    for chunk in _chunks(cust_rows):
        db.session.execute(insert(Customer), chunk)
    seq_rows = [{"name": f"{PREFIX_CUSTOMER}{d:%Y%m%d}", "value": n} for d, n in per_day.items()]
    for chunk in _chunks(seq_rows):
        db.session.execute(insert(NumberSequence), chunk)
    progress("客户", scale)
    cust_ids = db.session.scalars(select(Customer.id).order_by(Customer.id)).all()
    cust_mgr = dict(db.session.execute(select(Customer.id, Customer.manager_id)).all())
    del cust_rows

    # ---- contacts (3 per customer) and activities (1 per customer) ---------------
    def contacts():
        for n, cid in enumerate(cust_ids):
            for k in range(3):
                j = n * 3 + k
                yield {"customer_id": cid, "name": people[j % len(people)],
                       "gender": "男" if j % 2 else "女", "position": positions[j % len(positions)],
                       "office_phone": phones[j % len(phones)],
                       "mobile": f"1{rnd.choice('3589')}{rnd.randint(10**8, 10**9 - 1)}",
                       "email": f"c{j}@example.com", "memo": None,
                       **audit(now, cust_mgr[cid])}
    total = 0
    for chunk in _chunks(contacts()):
        db.session.execute(insert(Contact), chunk)
        total += len(chunk)
    progress("联系人", total)

    def activities():
        for n, cid in enumerate(cust_ids):
            d = today - timedelta(days=rnd.randint(0, 700))
            yield {"customer_id": cid, "date": d, "place": places[n % len(places)],
                   "summary": summaries[n % len(summaries)],
                   "detail": f"与客户就{summaries[(n + 1) % len(summaries)]}进行了沟通，客户反馈积极。",
                   "memo": None, **audit(now, cust_mgr[cid])}
    total = 0
    for chunk in _chunks(activities()):
        db.session.execute(insert(Activity), chunk)
        total += len(chunk)
    progress("交往记录", total)

    # ---- opportunities in every status (scale/2) and plan items ----------------------
    n_opp = max(8, scale // 2)
    statuses = ["unassigned", "assigned", "succeeded", "failed"]
    opp_rows = []
    opp_day = {}
    for i in range(n_opp):
        st = statuses[i % 4]
        created = now - timedelta(days=rnd.randint(1, 365))
        d = created.date()
        opp_day[d] = opp_day.get(d, 0) + 1
        creator = managers[i % 2] if i % 3 else users["supervisor"]
        assignee = managers[(i // 4) % 2] if st != "unassigned" else None
        opp_rows.append({
            "number": format_number(PREFIX_OPPORTUNITY, d, opp_day[d]),
            "source": rnd.choice(["电话咨询", "网站", "展会", "老客户介绍"]),
            "customer_name": companies[(i * 13) % len(companies)] + ("" if i < len(companies) else f"（{i}）"),
            "success_rate": rnd.randint(10, 90), "summary": f"{rnd.choice(summaries)}：采购意向",
            "contact": people[i % len(people)], "contact_phone": phones[i % len(phones)],
            "description": "客户有采购意向，需要进一步跟进。", "status": st,
            "assignee_id": assignee, "assigned_on": created + timedelta(days=1) if assignee else None,
            "customer_id": None, **audit(created, creator),
        })
    for chunk in _chunks(opp_rows):
        db.session.execute(insert(Opportunity), chunk)
    for chunk in _chunks([{"name": f"{PREFIX_OPPORTUNITY}{d:%Y%m%d}", "value": n}
                          for d, n in opp_day.items()]):
        db.session.execute(insert(NumberSequence), chunk)
    opps = db.session.execute(select(Opportunity.id, Opportunity.status, Opportunity.assignee_id,
                                     Opportunity.created_on)).all()

    def plan_items():
        for oid, st, assignee, created in opps:
            if st == "unassigned":
                continue
            for k in range(2):
                yield {"opportunity_id": oid, "date": (created + timedelta(days=3 + 7 * k)).date(),
                       "content": ["电话回访，了解需求", "上门拜访，演示产品"][k],
                       "result": None if st == "assigned" and k else "客户有兴趣",
                       **audit(created, assignee)}
    total = 0
    for chunk in _chunks(plan_items()):
        db.session.execute(insert(PlanItem), chunk)
        total += len(chunk)
    progress("销售机会", n_opp)

    # ---- service tickets in every status (2 per customer) -----------------------------
    n_srv = max(8, scale * 2)
    sv_day = {}

    def services():
        sts = ["created", "assigned", "handled", "archived"]
        for i in range(n_srv):
            st = sts[i % 4]
            cid = cust_ids[i % len(cust_ids)]
            created = now - timedelta(days=rnd.randint(0, 3 * 365), minutes=rnd.randint(0, 1440))
            d = created.date()
            sv_day[d] = sv_day.get(d, 0) + 1
            mgr = cust_mgr[cid]
            assigned = st != "created"
            handled = st in ("handled", "archived")
            yield {"number": format_number(PREFIX_SERVICE, d, sv_day[d]),
                   "service_type_id": dict_ids[SERVICE_TYPE][i % len(dict_ids[SERVICE_TYPE])],
                   "summary": rnd.choice(["咨询产品价格", "建议增加功能", "投诉送货延迟", "咨询售后政策"]),
                   "customer_id": cid, "request": "客户来电，请尽快处理。",
                   "assignee_id": mgr if assigned else None,
                   "assigned_on": created + timedelta(hours=2) if assigned else None,
                   "handling": "已电话联系客户并解决。" if handled else None,
                   "handler_id": mgr if handled else None,
                   "handled_on": created + timedelta(days=1) if handled else None,
                   "result": "客户满意" if st == "archived" else None,
                   "satisfaction": rnd.randint(3, 5) if st == "archived" else None,
                   "status": st, **audit(created, mgr)}
    total = 0
    for chunk in _chunks(services()):
        db.session.execute(insert(ServiceTicket), chunk)
        total += len(chunk)
    for chunk in _chunks([{"name": f"{PREFIX_SERVICE}{d:%Y%m%d}", "value": n}
                          for d, n in sv_day.items()]):
        db.session.execute(insert(NumberSequence), chunk)
    progress("客户服务", total)
    db.session.commit()

    # ---- sales system: products, stock, orders ----------------------------------------------
    seed_sales(cust_numbers, rnd, fake, today, progress)
    seed_churn(rnd, progress)
    analyze()
    progress("ANALYZE", 1)
    _print_logins(echo, password)
    return users


CHURN_MEASURES = ["电话回访，了解停止采购的原因", "提供老客户九折优惠", "安排技术人员上门检修设备",
                  "邀请参加新品发布会", "总经理带队拜访"]
CHURN_REASONS = ["客户经营困难，暂停采购", "被竞争对手以低价抢走", "客户业务转型，不再需要我司产品",
                 "对售后服务不满意", "客户公司已注销"]
CHURN_WORKED = 300  # warnings given measures / confirmed through the workflow (the rest stay 预警)


def seed_churn(rnd, progress):
    """客户流失: the real churn check on the demo orders (about 1 customer in 5 has not
    ordered for 6 months), then the 客户经理 work on some warnings through the workflow:
    a third get a 暂缓措施, a third a measure and 确认流失 — so the churn list, the
    customer pages and the 客户流失分析 report have data. One transaction; skipped
    when warnings exist (a re-run after an interrupted seed)."""
    from .scheduler import run_churn_check
    from .workflows import churn as churn_wf
    from .workflows.actors import MANAGER, Actor

    if db.session.scalar(select(func.count()).select_from(ChurnWarning)):
        return
    summary = run_churn_check(as_of=date.today())
    opened = [wid for wid, _ in summary["opened"]]
    try:
        for i, wid in enumerate(opened[:CHURN_WORKED]):
            if i % 3 == 2:
                continue
            w = db.session.get(ChurnWarning, wid)
            actor = Actor(id=w.customer.manager_id, roles=frozenset({MANAGER}))
            churn_wf.add_measure(db.session, actor, wid, rnd.choice(CHURN_MEASURES))
            if i % 3 == 0:
                churn_wf.confirm(db.session, actor, wid, rnd.choice(CHURN_REASONS))
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    progress("流失预警", len(opened))


def analyze():
    """Refresh planner statistics after bulk loads (both databases)."""
    from sqlalchemy import text

    for engine in (db.engines[None], db.engines["sales"]):
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()


def seed_sales(cust_numbers, rnd, fake, today, progress):
    engine = db.engines["sales"]
    sales_metadata.create_all(engine)
    with engine.begin() as conn:
        if conn.scalar(select(func.count()).select_from(Product)):
            return
        units = ["台", "套", "件", "箱"]
        products = [{"id": i + 1, "name": f"{rnd.choice(['智能', '工业', '商用', '家用'])}"
                     f"{rnd.choice(['打印机', '服务器', '路由器', '显示器', '扫描仪', '投影仪', '交换机'])}",
                     "model": f"{rnd.choice('ABCDEFGH')}{rnd.randint(100, 999)}",
                     "batch": rnd.choice(["一等品", "二等品", "2025批", "2026批"]),
                     "unit": rnd.choice(units), "price": Decimal(rnd.randint(100, 20000)),
                     "memo": None} for i in range(200)]
        conn.execute(insert(Product), products)
        stock = [{"product_id": p["id"], "warehouse": w, "location": f"{rnd.choice('ABC')}-{rnd.randint(1, 30)}",
                  "quantity": rnd.randint(0, 500), "memo": None}
                 for p in products for w in ("北京一号仓", "上海中心仓", "广州南方仓")]
        conn.execute(insert(Stock), stock)
        prices = {p["id"]: p["price"] for p in products}
        addresses = [fake.address().split(" ")[0] for _ in range(500)]

        # ~10 orders per customer; 15% of customers silent for > 6 months, 5% never ordered
        order_id = 0
        line_rows = []
        order_rows = []
        n_lines = 0
        for ci, number in enumerate(cust_numbers):
            r = ci % 20
            if r == 0:
                continue  # never ordered
            silent = r in (1, 2, 3)
            newest = 200 if silent else 0
            for k in range(10):
                order_id += 1
                days = rnd.randint(newest, 3 * 365)
                status = 6 if k % 3 else (5 if k % 2 else rnd.randint(1, 6))
                order_rows.append({"id": order_id, "number": f"DD{order_id:09d}",
                                   "customer_number": number, "date": today - timedelta(days=days),
                                   "address": addresses[(ci + k) % len(addresses)], "status": status})
                for _ in range(3):
                    pid = rnd.randint(1, len(products))
                    line_rows.append({"order_id": order_id, "product_id": pid,
                                      "quantity": rnd.randint(1, 20), "unit": "台",
                                      "price": prices[pid]})
            if len(order_rows) >= 20000:
                conn.execute(insert(Order), order_rows)
                conn.execute(insert(OrderLine), line_rows)
                n_lines += len(line_rows)
                order_rows, line_rows = [], []
                progress("订单", order_id)
        if order_rows:
            conn.execute(insert(Order), order_rows)
            conn.execute(insert(OrderLine), line_rows)
            n_lines += len(line_rows)
        progress("订单", order_id)
        progress("订单明细", n_lines)


def _print_logins(echo, password, existing=False):
    echo("")
    echo("演示账号 (demo logins) — http://127.0.0.1:5000/login/")
    for username, first, last, role, _ in DEMO_USERS:
        pw = password
        echo(f"  {username:<11} {role:<6} 密码: {pw}")


__all__ = ["seed_demo", "DEMO_USERS", "ChurnWarning"]
