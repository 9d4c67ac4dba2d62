"""客户服务分析: number of service tickets by 服务类型 (tickets of every status),
optionally of one year (by the created date). Every 服务类型 is listed, also with 0."""
from datetime import datetime

import pandas as pd
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from ..models import DictItem, ServiceTicket
from ..models.dictionary import SERVICE_TYPE

NAME = "service"
TITLE = _l("客户服务分析")
COLUMNS = {"service_type": _l("服务类型"), "count": _l("服务数量")}
FILTERS = ("year",)


def run(session, params):
    stmt = (select(ServiceTicket.service_type_id, func.count(ServiceTicket.id))
            .group_by(ServiceTicket.service_type_id))
    year = params.get("year")
    if year:
        stmt = stmt.where(ServiceTicket.created_on >= datetime(year, 1, 1),
                          ServiceTicket.created_on < datetime(year + 1, 1, 1))
    counted = dict(session.execute(stmt).all())
    types = session.execute(select(DictItem.id, DictItem.item)
                            .where(DictItem.type == SERVICE_TYPE).order_by(DictItem.id)).all()
    rows = [(item, counted.pop(type_id, 0)) for type_id, item in types]
    if counted:
        extra = dict(session.execute(select(DictItem.id, DictItem.item)
                                     .where(DictItem.id.in_(list(counted)))).all())
        rows += [(extra.get(k, str(k)), v) for k, v in counted.items()]
    df = pd.DataFrame(rows, columns=["service_type", "count"])
    df["count"] = df["count"].astype(int)
    return df


def total(df):
    return {"service_type": _l("合计"), "count": int(df["count"].sum())}


def chart(df):
    return {
        "type": "bar",
        "title": _l("各类服务数量"),
        "categories": df["service_type"].tolist(),
        "values": [int(v) for v in df["count"]],
        "series_name": _l("服务数量"),
    }
