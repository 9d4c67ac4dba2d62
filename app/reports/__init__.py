"""统计报表: the four reports (DESIGN.md §5.8).

Each report module has NAME, TITLE, COLUMNS (JSON key → Chinese label), FILTERS,
KEY / MEASURES (the row key and the figures compared with another period), CENTS
(money columns held as integer cents), DEFAULT_SORT / TIE_BREAK,
``run(session, params) -> DataFrame`` (aggregated in SQL, shaped with pandas; the
columns are the JSON keys of DESIGN.md §8, helper columns start with ``_``),
``total(df)``, ``chart(df)`` and ``link(row, params)`` (the list behind a row).

``build(session, name, args)`` validates the args (date range, comparison, sort,
page: app/reports/period.py, common.py), runs the report (twice with a comparison)
and returns a ``Report``: the whole sorted frame, the totals, the chart data and the
extra tables. Only the page that is shown is converted cell by cell
(:meth:`Report.page_rows`); the exports (:meth:`Report.to_csv` / ``to_xlsx``) carry
every row, the range and the comparison.
"""
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pandas as pd
from flask_babel import LazyString, lazy_gettext as _l

from ..workflows.errors import NotFound, ValidationError
from . import churn, composition, contribution, service
from .common import (  # noqa: F401
    BY_CHOICES, cell_text, content_disposition, csv_stream, parse_params, xlsx_bytes, xlsx_stream,
)
from .period import COMPARE_CHOICES

REPORTS = {m.NAME: m for m in (contribution, composition, service, churn)}
ASCII_NAMES = {"contribution": "customer-contribution", "composition": "customer-composition",
               "service": "customer-service", "churn": "customer-churn"}
CHANGE_LABEL = _l("变化（%）")
PERIOD_LABEL, COMPARE_PERIOD_LABEL = _l("统计期间"), _l("对比期间")

# how a column is shown / serialised, by its key
PCT2 = {"percent"}
PCT1 = {"on_time_percent", "within_percent"}
NUM1 = {"response_hours", "resolution_hours"}
NUM2 = {"satisfaction"}
DATES = {"last_order_date", "confirmed_on"}


def kind_of(key, cents=()):
    if key.endswith("_change"):
        return "change"
    if key in cents or key.removesuffix("_compare") in cents:
        return "money"
    if key in PCT2:
        return "pct2"
    if key in PCT1:
        return "pct1"
    if key in NUM1:
        return "num1"
    if key in NUM2:
        return "num2"
    if key in DATES:
        return "date"
    if key in ("count", "overdue", "rated", "open") or key.endswith("_compare"):
        return "int"
    return "text"


def get_module(name):
    module = REPORTS.get(name)
    if module is None:
        raise NotFound(_l("没有这个报表：%(name)s（可用：contribution、composition、service、churn）。",
                          name=name))
    return module


@dataclass
class Table:
    key: str
    title: object
    columns: dict               # key → label (the visible columns, in order)
    df: pd.DataFrame
    total: dict = None
    chart: dict = None
    cents: tuple = ()
    links: list = None          # one URL (or None) per row of df (small tables), or
    link_fn: object = None      # row → URL, applied to the rows shown only (links_for)

    def links_for(self, df):
        if self.link_fn is None:
            return None
        return [self.link_fn(r) for r in _link_records(df)]

    def kind(self, key):
        return kind_of(key, self.cents)

    def value(self, key, v):
        """A cell as a typed Python value (files): money → Decimal, NaN → None."""
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        kind = self.kind(key)
        if kind == "money":
            return (Decimal(int(v)) / 100).quantize(Decimal("0.01"))
        if isinstance(v, LazyString):
            return str(v)
        if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalar
            v = v.item()
        if kind == "change":
            return round(float(v), 1)
        return v

    def json_value(self, key, v):
        v = self.value(key, v)
        if isinstance(v, Decimal):
            return f"{v:.2f}"
        if isinstance(v, (datetime, date)):
            return v.strftime("%Y-%m-%d")
        return v

    def records(self, df=None):
        df = self.df if df is None else df
        keys = list(self.columns)
        cols = [df[k].tolist() for k in keys]
        return [dict(zip(keys, values)) for values in zip(*cols)] if keys else []

    def json_rows(self, df=None, links=None):
        out = [{k: self.json_value(k, v) for k, v in r.items()} for r in self.records(df)]
        if links is not None:
            for row, link in zip(out, links):
                row["link"] = link
        return out

    def json_total(self):
        if not self.total:
            return None
        return {k: self.json_value(k, self.total.get(k)) for k in self.columns}

    def file_rows(self, extra=()):
        """Every row (plus the total), typed, with the ``extra`` cells appended."""
        keys = list(self.columns)
        for r in self.records():
            yield [self.value(k, r[k]) for k in keys] + list(extra)
        if self.total:
            yield [self.value(k, self.total.get(k)) for k in keys] + list(extra)

    def to_json(self):
        return {"title": str(self.title), "columns": {k: str(v) for k, v in self.columns.items()},
                "rows": self.json_rows(links=self.links), "total": self.json_total()}


@dataclass
class Report:
    name: str
    title: str
    params: dict
    main: Table
    extras: list = field(default_factory=list)
    chart: dict = field(default_factory=dict)
    sort: str = None
    order: str = None
    # orders come from the rollup (客户贡献分析): when it was built; None = live data
    data_as_of: object = None
    # paged in SQL (客户贡献分析 over the rollup): main.df holds only the page shown;
    # ``row_count`` is the whole report's, ``frame_fn()`` gives every row (exports)
    row_count: int = None
    frame_fn: object = None

    # ---- compatibility -------------------------------------------------------------
    @property
    def df(self):
        return self.main.df

    @property
    def columns(self):
        return self.main.columns

    @property
    def total(self):
        return self.main.total

    @property
    def period(self):
        return self.params["period"]

    @property
    def compare(self):
        return self.params["compare"]

    @property
    def compare_period(self):
        return self.params["compare_period"]

    # ---- paging --------------------------------------------------------------------
    @property
    def count(self):
        return len(self.main.df) if self.row_count is None else self.row_count

    @property
    def page_size(self):
        return self.params["page_size"]

    @property
    def pages(self):
        return max(1, (self.count + self.page_size - 1) // self.page_size)

    @property
    def page(self):
        return min(self.params["page"], self.pages - 1)

    def page_slice(self):
        lo = self.page * self.page_size
        return slice(lo, lo + self.page_size)

    def page_frame(self):
        if self.row_count is not None:      # paged in SQL: the frame is the page
            return self.main.df
        return self.main.df.iloc[self.page_slice()]

    def page_links(self):
        """The drill-down links of the current page (computed for these rows only)."""
        return self.main.links_for(self.page_frame())

    def json_rows(self):
        """The rows of the current page (only they are converted cell by cell)."""
        return self.main.json_rows(self.page_frame(), self.page_links())

    def json_total(self):
        return self.main.json_total()

    def to_json(self):
        body = {"rows": self.json_rows(), "page": self.page, "page_size": self.page_size,
                "count": self.count, "sort": self.sort, "order": self.order,
                "period": self.period.to_json(), "compare": None,
                "data_as_of": (self.data_as_of.isoformat(timespec="seconds")
                               if self.data_as_of else None)}
        if self.compare:
            body["compare"] = dict(self.compare_period.to_json(), kind=self.compare)
        if self.main.total:
            body["total"] = self.json_total()
        if self.extras:
            body["tables"] = {t.key: t.to_json() for t in self.extras}
        return body

    # ---- files ---------------------------------------------------------------------
    def filename(self, ext, today=None):
        day = (today or date.today()).strftime("%Y-%m-%d")
        return (f"{self.title}_{day}.{ext}", f"{ASCII_NAMES[self.name]}_{day}.{ext}")

    def content_disposition(self, ext):
        return content_disposition(*self.filename(ext))

    def period_columns(self):
        """([labels], [cells]) appended to every exported row: the range (when one is
        set) and the comparison period (when comparing)."""
        labels, cells = [], []
        if self.period.start or self.period.end:
            labels.append(str(PERIOD_LABEL))
            cells.append(self.period.label())
        if self.compare:
            labels.append(str(COMPARE_PERIOD_LABEL))
            cells.append(f"{self.compare_period.label()}（{COMPARE_CHOICES[self.compare]}）")
        return labels, cells

    def file_tables(self):
        """[(title, header, rows)]: the main table (every row) then the extra tables."""
        if self.frame_fn is not None:       # paged in SQL: now read every row
            self.main.df, self.frame_fn, self.row_count = self.frame_fn(), None, None
        labels, cells = self.period_columns()
        main_labels, main_cells = labels, cells
        out = [(self.title, [str(v) for v in self.main.columns.values()] + main_labels,
                self.main.file_rows(main_cells))]
        plain_labels = [x for x in labels if x != str(COMPARE_PERIOD_LABEL)]
        plain_cells = cells[:len(plain_labels)]
        for t in self.extras:
            out.append((str(t.title), [str(v) for v in t.columns.values()] + plain_labels,
                        t.file_rows(plain_cells)))
        return out

    def to_csv(self, zone=None):
        """UTF-8 CSV with BOM; text cells neutralised (app/workflows/spreadsheet.py).
        The extra tables follow the main one, each after an empty line and its title."""
        from .common import csv_sections
        return csv_sections(self.file_tables(), zone=zone)

    def to_xlsx(self, zone=None):
        """XLSX via openpyxl's write-only mode: numbers and dates stay typed, text is
        never a formula; one sheet per table; header frozen, autofilter."""
        from .common import xlsx_sheets
        return xlsx_sheets(self.file_tables(), zone=zone)


# ---- building ------------------------------------------------------------------------------

def _change(cur, prev):
    """Change in percent (float, NaN where the comparison value is 0)."""
    cur = np.asarray(cur, dtype=float)
    prev = np.asarray(prev, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(prev != 0, np.round((cur - prev) * 100.0 / np.where(prev != 0, prev, 1), 1),
                       np.nan)
    return out


def merge_compare(cur, prev, module):
    """``cur`` with ``<m>_compare`` and ``<m>_change`` for every measure; rows only in
    ``prev`` (e.g. a customer without orders this period) are added with 0."""
    key, measures = module.KEY, list(module.MEASURES)
    right = prev[[key] + measures].rename(columns={m: f"{m}_compare" for m in measures})
    m = cur.merge(right, on=key, how="outer", sort=False)
    others = [c for c in cur.columns if c not in measures and c != key]
    if len(m) > len(cur):
        fill = prev.drop_duplicates(key).set_index(key)
        missing = m[measures[0]].isna()
        for c in others:
            if c in fill.columns:
                m.loc[missing, c] = m.loc[missing, key].map(fill[c])
    for c in measures:
        m[c] = m[c].fillna(0).astype(np.int64)
        m[f"{c}_compare"] = m[f"{c}_compare"].fillna(0).astype(np.int64)
        m[f"{c}_change"] = _change(m[c], m[f"{c}_compare"])
    for c in others:  # e.g. percent / 按时率 of a row only in the comparison
        if m[c].dtype == object:
            m[c] = m[c].astype(object).where(m[c].notna(), None)
    if "percent" in m.columns:
        m["percent"] = m["percent"].astype(float).fillna(0.0)
    if "_with_deadline" in m.columns:
        m["_with_deadline"] = m["_with_deadline"].fillna(0).astype(np.int64)
    return m.reset_index(drop=True)


def sort_frame(df, column, desc, tie=None):
    """Stable sort on ``column`` (numbers as numbers, empty cells last), then ``tie``."""
    if not len(df):
        return df
    s = df[column]
    if s.dtype == object:
        numeric = pd.to_numeric(s, errors="coerce")
        s = numeric if numeric.notna().sum() == s.notna().sum() and s.notna().any() else \
            s.map(lambda v: "" if v is None else str(v))
    order = pd.DataFrame({"k": s.to_numpy()}, index=np.arange(len(df)))
    by, asc = ["k"], [not desc]
    if tie and tie != column:
        order["t"] = df[tie].to_numpy()
        by.append("t")
        asc.append(True)
    idx = order.sort_values(by, ascending=asc, kind="mergesort", na_position="last").index
    return df.iloc[idx.to_numpy()].reset_index(drop=True)


def _chart(module, df, params, chart, table):
    """The chart data of the main table: the values (and the comparison's) of the
    rows ``chart["keys"]`` (positions in ``df``), with their drill-down links."""
    keys = chart.pop("keys")
    measure = chart.pop("measure")
    money = measure in module.CENTS

    def values(col):
        return [round(int(v) / 100, 2) if money else int(v) for v in df[col].iloc[keys]]
    chart["series"] = [(str(_l("本期")) if params["compare"] else str(chart["series_name"]),
                        values(measure))]
    if params["compare"] and f"{measure}_compare" in df.columns:
        chart["series"].append((str(COMPARE_CHOICES[params["compare"]]),
                                values(f"{measure}_compare")))
        chart["type"] = "bar" if chart["type"] == "pie" else chart["type"]
    chart["links"] = [table.links[i] for i in keys] if table.links else None
    return chart


def _columns(module, params):
    """The visible columns (key → label); comparing, each measure is followed by its
    comparison value and the change in %."""
    columns = module.columns(params) if hasattr(module, "columns") else dict(module.COLUMNS)
    if not (params["compare"] and module.MEASURES):
        return columns
    out = {}
    for k, label in columns.items():
        out[k] = label
        if k in module.MEASURES:
            out[f"{k}_compare"] = _l("%(label)s（%(kind)s）", label=label,
                                     kind=COMPARE_CHOICES[params["compare"]])
            out[f"{k}_change"] = CHANGE_LABEL
    return out


def _check_sort(params, columns):
    sort = params["sort"]
    if sort is not None and sort not in columns:
        raise ValidationError(
            _l("排序列 sort 只能是：%(keys)s。", keys="、".join(columns)), field="sort")


def build(session, name, args):
    """Validate ``args`` (a mapping of query args) and run report ``name``."""
    module = get_module(name)
    params = parse_params(args)
    columns = _columns(module, params)
    _check_sort(params, columns)
    query = module.paged(session, params) if hasattr(module, "paged") else None
    if query is not None:
        return _build_paged(session, module, name, params, columns, query)
    df = module.run(session, params)
    compare = params["compare"] and module.MEASURES
    if compare:
        cp = params["compare_period"]
        prev = module.run(session, dict(params, start=cp.start, stop=cp.stop))
        df = merge_compare(df, prev, module)
    sort, order = params["sort"], params["order"]
    default = module.DEFAULT_SORT
    if default:
        df = sort_frame(df, default[0], default[1] == "desc", module.TIE_BREAK)
    total = module.total(df)
    if total and compare:
        for m in module.MEASURES:
            total[f"{m}_compare"] = int(df[f"{m}_compare"].sum())
            total[f"{m}_change"] = float(_change([total[m]], [total[f"{m}_compare"]])[0])
    link = getattr(module, "link", None) or getattr(module, "row_link", None)
    main = Table("main", module.TITLE, columns, df, total, cents=module.CENTS)
    chart_df = df
    if module is churn:
        chart, extras = _churn_parts(session, params, main)
        link = module.row_link
    else:
        chart = (module.chart(df, params) if module is composition else module.chart(df))
        extras = []
    if sort is not None:
        desc = (order or ("desc" if main.kind(sort) != "text" else "asc")) == "desc"
        main.df = df = sort_frame(df, sort, desc, module.TIE_BREAK)
        order = "desc" if desc else "asc"
    else:
        sort, order = (default or (None, None))
    main.link_fn = (lambda r: link(r, params)) if link else None
    if module is not churn:
        chart_table = Table("chart", "", columns, chart_df, cents=module.CENTS)
        chart_table.links = ([link(r, params) for r in
                              _link_records(chart_df.iloc[chart["keys"]])]
                             if link else None)
        keys = chart["keys"]
        chart["keys"] = list(range(len(keys)))
        chart = _chart(module, chart_df.iloc[keys].reset_index(drop=True), params, chart,
                       chart_table)
    if module is service:
        extras = [Table(k, title, cols, tdf, tot, ch)
                  for k, title, cols, tdf, tot, ch in service.figures(session, params)]
    data_as_of = module.data_as_of(session) if hasattr(module, "data_as_of") else None
    return Report(name=name, title=str(module.TITLE), params=params, main=main, extras=extras,
                  chart=chart, sort=sort, order=order, data_as_of=data_as_of)


def _build_paged(session, module, name, params, columns, query):
    """The report paged in SQL (``module.paged``): only the page shown and the chart's
    top rows are read; the count and the totals come with the page."""
    default = module.DEFAULT_SORT
    sort = params["sort"] or default[0]
    kind = kind_of(sort, module.CENTS)
    if params["order"]:
        desc = params["order"] == "desc"
    elif params["sort"]:
        desc = kind != "text"
    else:
        desc = default[1] == "desc"
    size = params["page_size"]
    page = params["page"]
    df, count, total = query.page(sort, desc, page * size, size)
    pages = max(1, (count + size - 1) // size)
    if page > pages - 1:                  # past the last page: show the last one
        page = pages - 1
        df, count, total = query.page(sort, desc, page * size, size)
    total = dict(module.total(df), **total)
    if params["compare"]:
        for m in module.MEASURES:
            total[f"{m}_change"] = float(_change([total[m]], [total[f"{m}_compare"]])[0])
    main = Table("main", module.TITLE, columns, df, total, cents=module.CENTS)
    link = getattr(module, "link", None)
    main.link_fn = (lambda r: link(r, params)) if link else None
    is_default = (sort, desc) == (default[0], default[1] == "desc")
    top_n = module.CHART_TOP
    chart_df = (df.head(top_n) if is_default and page == 0 and size >= top_n
                else query.frame(default[0], default[1] == "desc", limit=top_n))
    chart_df = chart_df.reset_index(drop=True)
    chart = module.chart(chart_df, count)
    chart_table = Table("chart", "", columns, chart_df, cents=module.CENTS)
    keys = chart["keys"]
    chart_table.links = ([link(r, params) for r in _link_records(chart_df.iloc[keys])]
                         if link else None)
    chart["keys"] = list(range(len(keys)))
    chart = _chart(module, chart_df.iloc[keys].reset_index(drop=True), params, chart,
                   chart_table)
    report = Report(name=name, title=str(module.TITLE), params=dict(params, page=page),
                    main=main, chart=chart, sort=sort, order="desc" if desc else "asc",
                    data_as_of=module.data_as_of(session), row_count=count,
                    frame_fn=lambda: query.frame(sort, desc))
    return report


def _link_records(df):
    """The rows as dicts of the columns a link needs (the whole frame, no formatting)."""
    need = [c for c in ("_number", "key", "service_type", "_id") if c in df.columns]
    cols = [df[c].tolist() for c in need]
    return [dict(zip(need, values)) for values in zip(*cols)]


def _churn_parts(session, params, main):
    """The 按客户经理 table (compared when asked) and its chart with the links to the
    churn list."""
    mod = churn
    cur = mod.by_manager(session, params)
    cols = {"manager": _l("客户经理"), "count": _l("流失客户数")}
    if params["compare"]:
        cp = params["compare_period"]
        prev = mod.by_manager(session, dict(params, start=cp.start, stop=cp.stop))

        class _M:
            KEY, MEASURES = "key", ("count",)
        cur = merge_compare(cur, prev, _M)
        cols.update({"count_compare": _l("%(label)s（%(kind)s）", label=cols["count"],
                                         kind=COMPARE_CHOICES[params["compare"]]),
                     "count_change": CHANGE_LABEL})
    cur = sort_frame(cur, "count", True, "manager")
    total = {"manager": _l("合计"), "count": int(cur["count"].sum())}
    if params["compare"]:
        total["count_compare"] = int(cur["count_compare"].sum())
        total["count_change"] = float(_change([total["count"]], [total["count_compare"]])[0])
    links = [mod.manager_link(r, params) for r in cur[["key"]].to_dict("records")]
    table = Table("by_manager", _l("按客户经理"), cols, cur, total, links=links)
    chart = {"type": "bar", "title": _l("各客户经理的流失客户数"),
             "categories": cur["manager"].tolist(), "keys": list(range(len(cur))),
             "measure": "count", "series_name": _l("流失客户数")}

    class _C:
        CENTS = ()
    chart = _chart(_C, cur, params, chart, table)
    return chart, [table]
