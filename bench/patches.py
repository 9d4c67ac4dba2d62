"""Candidate fixes, applied by monkeypatching inside the benchmark process only
(``bench.py --patch NAME`` / ``inproc.py --patch NAME``), so their effect can be
measured before the owners change their modules. Each patch says which file and
function it stands for; docs/benchmarks.md has the proposed code.

* ``orders_page`` — app/workflows/sales.py ``orders_of_customer``: the order totals
  come from a GROUP BY over *all* order lines joined to the page (SQLite materialises
  2.85M lines per customer page). Total per order as a correlated scalar subquery, so
  only the page's lines are read.
* ``export_columns`` — app/views/export.py ``ExportMixin.export_rows`` (CustomerView):
  read only the exported columns (Core rows, outer joins for region/level/manager)
  instead of whole ORM objects with three joined entities, and translate the status
  label once per status instead of once per row.
* ``indexes`` — migrations: covering indexes for the report GROUP BYs
  (crm_service (service_type_id, created_on); crm_customer (status, level_id),
  (status, credit), (status, satisfaction)) plus ANALYZE. Created in the bench
  database and dropped again at exit.
"""
import atexit
from decimal import Decimal


def orders_page(app):
    from sqlalchemy import func, select

    from app.models import Order, OrderLine
    from app.models.sales import COUNTED_ORDER_STATUSES
    from app.workflows import sales

    def orders_of_customer(session, customer_number, page=0, page_size=20):
        where = (Order.customer_number == customer_number,
                 Order.status.in_(COUNTED_ORDER_STATUSES))
        count = session.scalar(select(func.count()).select_from(Order).where(*where))
        total = (select(func.coalesce(func.sum(OrderLine.quantity * OrderLine.price), 0))
                 .where(OrderLine.order_id == Order.id).correlate(Order).scalar_subquery())
        rows = session.execute(
            select(Order, total).where(*where).order_by(Order.date.desc(), Order.id.desc())
            .limit(page_size).offset(page * page_size)).all()
        return count, [(o, Decimal(t)) for o, t in rows]

    sales.orders_of_customer = orders_of_customer


def export_columns(app):
    from flask_appbuilder.security.sqla.models import User
    from flask_appbuilder.urltools import get_filter_args, get_order_args
    from sqlalchemy.orm import aliased

    from app.models import Customer, DictItem
    from app.views.customer import CustomerView
    from app.workflows import customers as wf

    def export_rows(self):
        dm = self.datamodel
        filters = dm.get_filters(self.search_columns)
        get_filter_args(filters)
        joined = filters.get_joined_filters(self._base_filters)
        oc, od = get_order_args().get(self.__class__.__name__, ("", ""))
        if oc not in (self.order_columns or []):
            oc, od = self.base_order
        query = joined.apply_all(dm.session.query(Customer))
        col = getattr(Customer, oc)
        query = query.order_by(col.desc() if od == "desc" else col.asc(), Customer.id.desc())
        R, L, U = aliased(DictItem), aliased(DictItem), aliased(User)
        query = (query.outerjoin(R, R.id == Customer.region_id)
                 .outerjoin(L, L.id == Customer.level_id)
                 .outerjoin(U, U.id == Customer.manager_id)
                 .with_entities(Customer.number, Customer.name, R.item, U.first_name,
                                U.last_name, U.username, L.item, Customer.satisfaction,
                                Customer.credit, Customer.status)
                 .execution_options(yield_per=self.export_chunk))
        labels = {}
        for number, name, region, fn, ln, un, level, sat, credit, status in query:
            label = labels.get(status)
            if label is None:
                label = labels[status] = str(wf.status_label(status))
            yield [number, name, region, f"{fn or ''}{ln or ''}" or un or "", level, sat, credit,
                   label]

    assert list(CustomerView.list_columns) == ["number", "name", "region", "manager", "level",
                                               "satisfaction", "credit", "status"]
    CustomerView.export_rows = export_rows


INDEXES = [
    ("bench_ix_service_type_created", "crm_service", "service_type_id, created_on"),
    ("bench_ix_customer_status_level", "crm_customer", "status, level_id"),
    ("bench_ix_customer_status_credit", "crm_customer", "status, credit"),
    ("bench_ix_customer_status_satisfaction", "crm_customer", "status, satisfaction"),
]


def indexes(app):
    from app.extensions import db

    with app.app_context():
        engine = db.engines[None]
        with engine.begin() as conn:
            for name, table, cols in INDEXES:
                conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({cols})")
            conn.exec_driver_sql("ANALYZE")

    def drop():
        with engine.begin() as conn:
            for name, _table, _cols in INDEXES:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
    atexit.register(drop)


PATCHES = {"orders_page": orders_page, "export_columns": export_columns, "indexes": indexes}


def apply(name, app):
    if name not in PATCHES:
        raise SystemExit(f"unknown patch {name!r}: {', '.join(PATCHES)}")
    PATCHES[name](app)
