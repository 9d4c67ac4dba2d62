"""统计报表: the four reports (DESIGN.md §5.8).

Each report module has NAME, TITLE, COLUMNS (JSON key → Chinese label), FILTERS,
``run(session, params) -> DataFrame`` (aggregated in SQL, shaped with pandas, the
columns are the JSON keys of DESIGN.md §8), ``total(df)`` and ``chart(df)``.

``build(session, name, args)`` validates the filters and returns a ``Report``
that serialises to JSON rows, CSV (UTF-8 with BOM) and XLSX.
"""
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import pandas as pd
from flask_babel import LazyString, lazy_gettext as _l

from ..workflows.errors import NotFound
from . import churn, composition, contribution, service
from .common import (  # noqa: F401
    BY_CHOICES, cell_text, content_disposition, csv_stream, parse_params, xlsx_bytes, xlsx_stream,
)

REPORTS = {m.NAME: m for m in (contribution, composition, service, churn)}
ASCII_NAMES = {"contribution": "customer-contribution", "composition": "customer-composition",
               "service": "customer-service", "churn": "customer-churn"}


def get_module(name):
    module = REPORTS.get(name)
    if module is None:
        raise NotFound(_l("没有这个报表：%(name)s（可用：contribution、composition、service、churn）。",
                          name=name))
    return module


@dataclass
class Report:
    name: str
    title: str
    params: dict
    columns: dict          # key → Chinese label
    df: pd.DataFrame
    total: dict = None
    chart: dict = field(default_factory=dict)

    # ---- JSON -------------------------------------------------------------------
    def json_rows(self):
        return [{k: _json_value(row[k]) for k in self.columns}
                for row in self.df.to_dict("records")]

    def json_total(self):
        if not self.total:
            return None
        return {k: _json_value(v) for k, v in self.total.items()}

    # ---- files ------------------------------------------------------------------
    def filename(self, ext, today=None):
        day = (today or date.today()).strftime("%Y-%m-%d")
        return (f"{self.title}_{day}.{ext}", f"{ASCII_NAMES[self.name]}_{day}.{ext}")

    def content_disposition(self, ext):
        return content_disposition(*self.filename(ext))

    def export_frame(self):
        """The rows (plus the total row) with Chinese headers, values typed."""
        df = self.df[list(self.columns)].copy()
        if self.total:
            df = pd.concat([df, pd.DataFrame([{k: self.total.get(k) for k in self.columns}])],
                           ignore_index=True)
        for k in df.columns:
            df[k] = [(str(v) if isinstance(v, LazyString) else v) for v in df[k]]
        return df.rename(columns={k: str(v) for k, v in self.columns.items()})

    def to_csv(self, zone=None):
        """UTF-8 CSV with BOM; text cells neutralised (app/workflows/spreadsheet.py)."""
        df = self.export_frame()
        return b"".join(csv_stream(list(df.columns), df.itertuples(index=False, name=None),
                                   zone=zone))

    def to_xlsx(self, zone=None):
        """XLSX via openpyxl's write-only mode: numbers and dates stay typed, text is
        never a formula; widths from the content, header frozen, autofilter."""
        df = self.export_frame()
        return xlsx_bytes(self.title, list(df.columns), df.itertuples(index=False, name=None),
                          zone=zone)


def _json_value(v):
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return None
    if isinstance(v, Decimal):
        return f"{v:.2f}"
    if isinstance(v, (datetime, date)):
        return v.strftime("%Y-%m-%d")
    if isinstance(v, LazyString):
        return str(v)
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalar
        return v.item()
    return v


def build(session, name, args):
    """Validate ``args`` (a mapping of query args) and run report ``name``."""
    module = get_module(name)
    params = parse_params(args)
    df = module.run(session, params)
    columns = module.columns(params) if hasattr(module, "columns") else dict(module.COLUMNS)
    chart = module.chart(df, params) if module is composition else module.chart(df)
    return Report(name=name, title=str(module.TITLE), params=params, columns=columns, df=df,
                  total=module.total(df), chart=chart)
