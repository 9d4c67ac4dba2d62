"""The company's sales system (bind ``sales``), read by the CRM, never written.

Only ``crm seed-demo`` fills it (for demos and benchmarks). Orders reference the
CRM customer by its customer number. The CRM only counts orders with status 5
(已发货) or 6 (已回款); amount = Σ 数量 × 单价.
"""
from sqlalchemy import Column, Date, ForeignKey, Index, Integer, Numeric, SmallInteger, String, Text
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import relationship

from .base import SalesBase

ORDER_STATUSES = {1: _l("已下单"), 2: _l("已审核"), 3: _l("备货中"), 4: _l("已取消"), 5: _l("已发货"),
                  6: _l("已回款")}
COUNTED_ORDER_STATUSES = (5, 6)


class Product(SalesBase):
    __tablename__ = "sales_product"
    id = Column(Integer, primary_key=True)
    name = Column(String(128), nullable=False, index=True)
    model = Column(String(64), index=True)
    batch = Column(String(64), index=True)
    unit = Column(String(16))
    price = Column(Numeric(12, 2), nullable=False)
    memo = Column(Text)

    def __str__(self):
        return self.name or ""


class Stock(SalesBase):
    __tablename__ = "sales_stock"
    id = Column(Integer, primary_key=True)
    product_id = Column(Integer, ForeignKey("sales_product.id"), nullable=False, index=True)
    product = relationship("Product", lazy="joined")
    warehouse = Column(String(64), nullable=False, index=True)
    location = Column(String(64))
    quantity = Column(Integer, nullable=False, default=0)
    memo = Column(Text)


class Order(SalesBase):
    __tablename__ = "sales_order"
    __table_args__ = (
        Index("ix_sales_order_customer_date", "customer_number", "date"),
        Index("ix_sales_order_status_date", "status", "date"),
    )
    id = Column(Integer, primary_key=True)
    number = Column(String(32), nullable=False, unique=True)
    customer_number = Column(String(32), nullable=False)
    date = Column(Date, nullable=False)
    address = Column(String(255))
    status = Column(SmallInteger, nullable=False)

    lines = relationship("OrderLine", back_populates="order", lazy="selectin",
                         order_by="OrderLine.id")

    @property
    def status_label(self):
        return str(ORDER_STATUSES.get(self.status, self.status))

    @property
    def total(self):
        return sum((ln.quantity * ln.price for ln in self.lines), 0)


class OrderLine(SalesBase):
    __tablename__ = "sales_order_line"
    id = Column(Integer, primary_key=True)
    order_id = Column(Integer, ForeignKey("sales_order.id"), nullable=False, index=True)
    order = relationship("Order", back_populates="lines")
    product_id = Column(Integer, ForeignKey("sales_product.id"), nullable=False)
    product = relationship("Product")
    quantity = Column(Integer, nullable=False)
    unit = Column(String(16))
    price = Column(Numeric(12, 2), nullable=False)
