"""Customer page sections contributed by the modules.

A module adds a section to the customer page (基本信息, 联系人, 交往记录,
历史订单, 客户服务, 流失记录, 文档, 邮件) with::

    from .sections import customer_section

    @customer_section(order=50, key="service", title=_l("客户服务"))
    def service_section(customer, actor):
        return Markup(render_template("service/_customer_section.html", ...)) or None

The function returns HTML (Markup) or None when it has nothing to show (then the
section is not shown at all). It must query with a bounded number of queries
(paged, no N+1).
"""
from dataclasses import dataclass
from typing import Callable

CUSTOMER_SECTIONS = []


@dataclass(frozen=True)
class Section:
    order: int
    key: str
    title: object
    render: Callable


def customer_section(order, key, title):
    def deco(fn):
        if not any(s.key == key for s in CUSTOMER_SECTIONS):
            CUSTOMER_SECTIONS.append(Section(order, key, title, fn))
            CUSTOMER_SECTIONS.sort(key=lambda s: s.order)
        return fn
    return deco


def render_sections(customer, actor):
    """[(section, html)] for the sections that have something to show."""
    out = []
    for s in CUSTOMER_SECTIONS:
        html = s.render(customer, actor)
        if html:
            out.append((s, html))
    return out
