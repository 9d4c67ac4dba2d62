"""Test data builders. Each takes an open session (``with dbs() as s``), adds
rows with sensible defaults, flushes and returns the object; commit yourself."""
import itertools
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from app.models import (
    Activity, Contact, Customer, DictItem, Opportunity, Order, OrderLine, PlanItem,
    Product, ServiceTicket,
)
from app.workflows.service import priority_rank
from app.workflows.numbering import (
    PREFIX_CUSTOMER, PREFIX_OPPORTUNITY, PREFIX_SERVICE, next_number,
)

_seq = itertools.count(1)


def _audit(obj, actor_id, when=None):
    obj.created_by_fk = obj.changed_by_fk = actor_id
    if when is not None:
        obj.created_on = obj.changed_on = when
    return obj


def dict_item(s, type_, item):
    return s.scalar(select(DictItem).where(DictItem.type == type_, DictItem.item == item))


def customer(s, manager_id, name=None, created_on=None, status="normal", **kw):
    values = dict(
        number=next_number(s, PREFIX_CUSTOMER), name=name or f"测试客户{next(_seq)}有限公司",
        manager_id=manager_id, region=dict_item(s, "地区", "北京"),
        level=dict_item(s, "客户等级", "大客户"), satisfaction=4, credit=4,
        address="北京市海淀区中关村大街1号", zip_code="100080", phone="010-62345678",
        legal_person="王五", bank="中国银行", bank_account="6216600000000000001",
        status=status,
    )
    values.update(kw)
    c = _audit(Customer(**values), manager_id, created_on)
    s.add(c)
    s.flush()
    return c


def contact(s, customer_obj, actor_id, **kw):
    values = dict(name="李四", gender="男", position="采购经理", office_phone="010-88886666",
                  mobile="13800138000", email=f"li{next(_seq)}@example.com")
    values.update(kw)
    c = _audit(Contact(customer_id=customer_obj.id, **values), actor_id)
    s.add(c)
    s.flush()
    return c


def activity(s, customer_obj, actor_id, **kw):
    values = dict(date=date.today(), place="客户公司", summary="拜访", detail="介绍新产品")
    values.update(kw)
    a = _audit(Activity(customer_id=customer_obj.id, **values), actor_id)
    s.add(a)
    s.flush()
    return a


def opportunity(s, creator_id, status="unassigned", assignee_id=None, **kw):
    values = dict(number=next_number(s, PREFIX_OPPORTUNITY), source="网站",
                  customer_name=f"意向客户{next(_seq)}公司", success_rate=50,
                  summary="采购打印机", contact="赵六", contact_phone="13900139000",
                  description="客户计划采购一批打印机", status=status,
                  assignee_id=assignee_id,
                  assigned_on=datetime.now() if assignee_id else None)
    values.update(kw)
    o = _audit(Opportunity(**values), creator_id)
    s.add(o)
    s.flush()
    return o


def plan_item(s, opp, actor_id, **kw):
    values = dict(date=date.today(), content="电话联系")
    values.update(kw)
    p = _audit(PlanItem(opportunity_id=opp.id, **values), actor_id)
    s.add(p)
    s.flush()
    return p


def service(s, customer_obj, creator_id, status="created", service_type="咨询", **kw):
    values = dict(number=next_number(s, PREFIX_SERVICE),
                  service_type=dict_item(s, "服务类型", service_type),
                  summary="咨询价格", customer_id=customer_obj.id, request="请报价",
                  status=status)
    values.update(kw)
    if "priority" in kw and "priority_rank" not in kw:
        # the rank lists sort by, as the workflow stores it at creation
        values["priority_rank"] = priority_rank(dict_item(s, "服务优先级", kw["priority"]))
    t = _audit(ServiceTicket(**values), creator_id)
    s.add(t)
    s.flush()
    return t


def product(s, name="激光打印机", price="100.00"):
    """A product in the sales bind."""
    p = Product(name=name, model="P1", batch="一等品", unit="台", price=Decimal(price))
    s.add(p)
    s.flush()
    return p


def order(s, customer_number, lines, status=6, day=None, number=None):
    """An order in the sales bind; ``lines`` = [(product, quantity, price)]."""
    o = Order(number=number or f"T{next(_seq):08d}{customer_number[-4:]}",
              customer_number=customer_number, date=day or date.today(),
              address="北京市朝阳区", status=status)
    s.add(o)
    s.flush()
    for prod, qty, price in lines:
        s.add(OrderLine(order_id=o.id, product_id=prod.id, quantity=qty, unit="台",
                        price=Decimal(str(price))))
    s.flush()
    return o


def days_ago(n):
    return date.today() - timedelta(days=n)
