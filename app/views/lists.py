"""Lists people can work from (issue 21 item 2): quick search, tabs (saved views),
sorting by related columns and Chinese filter operators for every FAB list.

Mix ``ListMixin`` into a ModelView, first among the bases, and declare per list::

    class OpportunityView(ListMixin, ExportMixin, GuardedModelView):
        quick_search_columns = ["customer_name", "summary"]        # 快速搜索
        list_tabs = [Tab("mine", _l("我的"), mine("created_by_fk", "assignee_id")),
                     Tab("unassigned", _l("未指派"), equals("status", "unassigned")),
                     Tab("all", _l("全部"))]
        default_tab = "all"
        sort_columns = {"assignee": "assignee.first_name"}        # sortable relations

* **快速搜索** ``?q=``: every word must occur (case-insensitive substring, ``%``, ``_``
  and ``\\`` taken literally) in one of ``quick_search_columns`` (``rel.col`` searches a
  many-to-one relation's column). At most ``MAX_QUERY`` characters are used.
* **Tabs** ``?tab=<key>``: a named filter (``Tab(key, label, where)``, ``where(model)``
  returns an SQL condition; ``mine``/``equals``/``is_null`` build the usual ones). An
  explicit ``?tab=`` wins and is remembered per user and list (``crm_list_preference``,
  ``app/workflows/list_prefs.py``); without it the remembered tab, else ``default_tab``.
* Both combine with FAB's filters (``_flt_…``), sorting and paging; they are kept in
  the URL by the tab links, the quick-search form and FAB's search form (its template
  override carries ``q`` and ``tab``), and apply to the list's export too.
* **Sorting**: ``sort_columns`` maps a list column to the column it sorts by (a
  relation's ``rel.col``); those list columns are added to ``order_columns``.
* **Filter operators** in Chinese (``CrmFilterConverter``): 开头是, 包含, 等于, 早于 …;
  the order (and so the ``_flt_<n>_`` index in URLs) is FAB's.

The conditions are added to the view's ``_base_filters`` for the list and export
requests only, so FAB's list, the export and the row rules all see the same rows.
"""
import copy
from urllib.parse import urlencode

from flask import after_this_request, g, has_request_context, request, url_for
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.models.sqla.filters import SQLAFilterConverter
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import aliased

from ..extensions import db
from ..workflows import list_prefs, quick_search

MAX_QUERY = quick_search.MAX_QUERY      # characters of ?q= that are searched
MAX_TERMS = quick_search.MAX_TERMS      # words of ?q= (each must match)


# ---- tabs ----------------------------------------------------------------------------------

class Tab:
    """A named filter of a list: ``where(model)`` → SQL condition (None: every row)."""

    def __init__(self, key, label, where=None):
        self.key, self.label, self.where = key, label, where

    def __repr__(self):
        return f"Tab({self.key!r})"


def mine(*columns):
    """Rows where any of ``columns`` is the signed-in user's id."""
    return lambda model: or_(*[getattr(model, c) == g.user.id for c in columns])


def equals(column, *values):
    """Rows whose ``column`` is one of ``values``."""
    def where(model):
        col = getattr(model, column)
        return col == values[0] if len(values) == 1 else col.in_(values)
    return where


def is_null(column):
    return lambda model: getattr(model, column).is_(None)


def both(*wheres):
    """All of the conditions (e.g. ``both(mine("manager_id"), equals("status", "normal"))``)."""
    return lambda model: and_(*[w(model) for w in wheres])


def chosen_tab(list_key, asked, keys, default=None):
    """The tab key of this request on list ``list_key`` (``keys``: its tabs in order):
    ``asked`` (the URL's choice, then remembered for the user) when it is one of
    ``keys``, else the user's remembered choice, else ``default`` (else the first).
    Also for lists that are not FAB ModelViews (e.g. 客户流失's ``?status=``)."""
    cached = g.setdefault("crm_list_tab", {})
    if list_key in cached:
        return cached[list_key]
    user_id = getattr(getattr(g, "user", None), "id", None)
    remembered = list_prefs.remembered_tab(db.session, user_id, list_key) if user_id else None
    if asked in keys:
        key = asked
        if user_id and asked != remembered:
            _remember(user_id, list_key, asked)
    elif remembered in keys:
        key = remembered
    else:
        key = default if default in keys else keys[0]
    cached[list_key] = key
    return key


def _remember(user_id, list_key, tab):
    """Store the choice once the list has answered (its own step: commit on success,
    nothing when the page is an error)."""
    from ..api.base import html_step

    @after_this_request
    def save(response):
        return html_step(lambda: (list_prefs.remember_tab(db.session, user_id, list_key, tab),
                                  response)[1])()


# ---- the bar of a custom list (not a ModelView) -------------------------------------------

def url_with(drop=(), **values):
    """This request's URL with ``values`` set (None/"": removed) and ``drop`` removed,
    without page arguments (a new search or tab starts on the first page)."""
    args = [(k, v) for k, v in request.args.items(multi=True)
            if k not in values and k not in drop and k != "page" and not k.startswith("page_")]
    args += [(k, v) for k, v in values.items() if v not in (None, "")]
    base = url_for(request.endpoint, **(request.view_args or {}))
    return f"{base}?{urlencode(args)}" if args else base


def list_bar(tabs, tab, text, labels, name="q", keep=None):
    """The tabs and the 快速搜索 box of a custom list (the FAB lists' ``lists/_bar.html``):
    ``tabs`` [(key, label)], ``tab`` the current key, ``text`` the search, ``labels``
    the searched columns' names, ``name`` the search argument; ``keep`` the other
    arguments the search form carries (default: the request's, but page and search)."""
    from flask import render_template

    links = [(k, label, url_with(tab=k), k == tab) for k, label in tabs or ()]
    if keep is None:
        keep = [(k, v) for k, v in request.args.items(multi=True)
                if k not in (name, "tab", "page") and not k.startswith("page_")]
    hidden = list(keep) + ([("tab", tab)] if tabs and tab else [])
    return Markup(render_template(
        "lists/_bar.html", tabs=links, q=text, hidden=hidden, labels=[str(x) for x in labels],
        searchable=bool(labels), too_long=False, max_query=MAX_QUERY, q_name=name,
        clear_url=url_with(drop=(name,)),
        action=url_for(request.endpoint, **(request.view_args or {}))))


# ---- quick search ----------------------------------------------------------------------------
# The match itself is app/workflows/quick_search.py, shared with the custom lists
# (服务处理/反馈/归档, 文档, 邮件, 联系人), whose workflows build the same condition.

_escape_like = quick_search.escape_like
quick_search_terms = quick_search.terms


def quick_search_clause(model, columns, query, dialect="postgresql"):
    """Every word of ``query`` occurs in one of ``columns``: ILIKE '%word%' (escaped)
    on PostgreSQL, served by the trigram indexes of 全局搜索; LIKE on SQLite (which
    already ignores ASCII case: no lower() per row). None when there is nothing to
    search. (SQLite's FTS5 trigram tables were measured too: faster for rare words,
    twice as slow for common ones, whose exact count reads every match.)"""
    return quick_search.model_clause(model, columns, query, dialect)


class _ClauseFilter(BaseFilter):
    """A ready SQL condition as a FAB filter (value = the condition)."""

    name = "condition"

    def apply(self, query, value):
        return query.filter(value)


class _OrderFilter(BaseFilter):
    """Sorting by a related column as a FAB filter (value = (expression, direction)):
    FAB's own ``rel.col`` sorting joins the related table only when it does not see
    it in the query already — and the quick search's EXISTS on it fooled it."""

    name = "order"

    def apply(self, query, value):
        expression, direction = value
        return query.order_by(expression.desc() if direction == "desc" else expression.asc())


def related_sort_expression(model, column):
    """``rel.col`` of a many-to-one relation as a correlated scalar subquery."""
    rel, leaf = column.split(".", 1)
    prop = getattr(model, rel).property
    target = aliased(prop.mapper.class_)
    where = [getattr(target, remote.key) == local for local, remote in prop.local_remote_pairs]
    return select(getattr(target, leaf)).where(*where).correlate(model).scalar_subquery()


# ---- filter operators in Chinese ------------------------------------------------------------

OPERATOR_NAMES = {
    "sw": _l("开头是"), "nsw": _l("开头不是"), "ew": _l("结尾是"), "new": _l("结尾不是"),
    "ct": _l("包含"), "nct": _l("不包含"), "eq": _l("等于"), "neq": _l("不等于"),
    "gt": _l("大于"), "lt": _l("小于"), "in": _l("属于"), "not_in": _l("不属于"),
    "rel_o_m": _l("等于"), "nrel_o_m": _l("不等于"), "rel_m_m": _l("包括"),
}
DATE_OPERATOR_NAMES = {"gt": _l("晚于"), "lt": _l("早于")}


class CrmFilterConverter(SQLAFilterConverter):
    """FAB's filters (same classes, same order) named in natural Chinese.

    The filters of a column are made once per datamodel and reused: FAB builds a new
    ``Filters`` — converting every column of the model — for each joined filter set,
    several times per list request (the filter instances hold no request state;
    FAB's own ``_filters`` already reuses them across requests)."""

    def convert(self, col_name):
        cache = self.datamodel.__dict__.setdefault("_crm_filter_cache", {})
        if col_name not in cache:
            cache[col_name] = self._convert(col_name)
        return cache[col_name]

    def _convert(self, col_name):
        filters = super().convert(col_name)
        if not filters:
            return filters
        dm = self.datamodel
        dated = dm.is_date(col_name) or dm.is_datetime(col_name)
        for flt in filters:
            arg = flt.arg_name
            name = (DATE_OPERATOR_NAMES.get(arg) if dated else None) or OPERATOR_NAMES.get(arg)
            if name is not None:
                flt.name = name
        return filters


# ---- the mixin --------------------------------------------------------------------------------

class ListMixin:
    """Quick search, tabs, related sorting and Chinese operators for a FAB ModelView
    (put it first among the bases)."""

    # The declarations (no defaults here, so a columns class later in the bases, like
    # opportunities' _OpportunityColumns, may provide them):
    #   quick_search_columns  columns the quick search box searches (``rel.col``: a
    #                         many-to-one relation's column); none: no search box
    #   list_tabs             the list's tabs (``Tab``); none: no tabs
    #   default_tab           the tab shown when neither the URL nor the user's last
    #                         choice names one (default: the first)
    #   sort_columns          list column → the column it is sorted by
    list_template = "lists/list.html"

    def __init__(self, **kwargs):
        self.datamodel.filter_converter_class = CrmFilterConverter
        for name, default in (("quick_search_columns", ()), ("list_tabs", ()),
                              ("default_tab", None), ("sort_columns", {})):
            if getattr(self, name, None) is None:
                setattr(self, name, default)
        super().__init__(**kwargs)
        extra = [c for c in self.sort_columns if c not in (self.order_columns or [])]
        if extra:
            self.order_columns = list(self.order_columns or []) + extra

    # -- the conditions, for the list and its export only ------------------------------------
    @property
    def _base_filters(self):
        base = self.__dict__.get("_crm_base_filters")
        clauses = self._list_clauses() if base is not None else []
        if not clauses:
            return base
        joined = copy.copy(base)        # (Filters.copy() would convert every column again)
        joined.filters = list(base.filters) + [flt for flt, _value in clauses]
        joined.values = list(base.values) + [value for _flt, value in clauses]
        return joined

    @_base_filters.setter
    def _base_filters(self, value):
        self.__dict__["_crm_base_filters"] = value

    def _is_list_request(self):
        return has_request_context() and request.endpoint in (
            f"{self.endpoint}.list", f"{self.endpoint}.export_list")

    def _list_clauses(self):
        if not self._is_list_request():
            return []
        cache = g.setdefault("crm_list_clauses", {})
        if id(self) not in cache:
            clauses, model, dm = [], self.datamodel.obj, self.datamodel
            tab = self.current_tab()
            if tab is not None and tab.where is not None:
                clauses.append((_ClauseFilter("id", dm), tab.where(model)))
            search = quick_search_clause(model, self.quick_search_columns, self.quick_query(),
                                         dm.session.get_bind().dialect.name)
            if search is not None:
                clauses.append((_ClauseFilter("id", dm), search))
            sort = self._related_sort()
            if sort is not None:
                clauses.append((_OrderFilter("id", dm), sort))
            cache[id(self)] = clauses
        return cache[id(self)]

    # -- the request's choices -------------------------------------------------------------
    @staticmethod
    def quick_query():
        return (request.args.get("q") or "").strip()

    @property
    def list_key(self):
        return self.__class__.__name__

    def current_tab(self):
        """The tab of this request: ``?tab=`` (remembered), else the user's last
        choice, else ``default_tab``. An unknown ``?tab=`` is ignored."""
        tabs = {t.key: t for t in self.list_tabs or []}
        if not tabs:
            return None
        return tabs[chosen_tab(self.list_key, request.args.get("tab"), list(tabs),
                               self.default_tab)]

    # -- sorting ----------------------------------------------------------------------------
    def _requested_order(self):
        from flask_appbuilder.urltools import get_order_args

        column, direction = get_order_args().get(self.__class__.__name__, ("", ""))
        if column not in (self.order_columns or []):
            return "", ""
        return column, direction

    def _related_sort(self):
        """(expression, direction) when this list request sorts by a related column."""
        column, direction = self._requested_order()
        target = self.sort_columns.get(column) or column
        if "." not in target:
            return None
        return related_sort_expression(self.datamodel.obj, target), direction

    def _sort_column(self, column):
        """What FAB sorts by for list column ``column``: a related column is sorted
        by ``_OrderFilter`` (in ``_base_filters``), FAB then only adds the id."""
        target = self.sort_columns.get(column, column)
        if "." in target:
            return self.datamodel.get_pk_name()
        return target

    def _get_list_widget(self, filters, actions=None, order_column="", order_direction="",
                         page=None, page_size=None, widgets=None, **kwargs):
        widgets = super()._get_list_widget(
            filters, actions=actions, order_column=self._sort_column(order_column),
            order_direction=order_direction, page=page, page_size=page_size,
            widgets=widgets, **kwargs)
        if self._is_list_request():
            widgets["crm_list_bar"] = self._render_bar
            widgets["crm_export"] = hasattr(self, "export_list")
        return widgets

    def export_base_query(self):
        """ExportMixin's query with the related sort columns (and, through
        ``_base_filters``, the tab and the quick search)."""
        from flask_appbuilder.urltools import get_filter_args

        dm = self.datamodel
        filters = dm.get_filters(self.search_columns)
        get_filter_args(filters)
        joined = filters.get_joined_filters(self._base_filters)
        column, direction = self._requested_order()
        if not column and self.base_order:
            column, direction = self.base_order
        return dm.apply_all(dm.session.query(dm.obj), joined, self._sort_column(column),
                            direction)

    def order_query(self, query, column, direction):
        """``query`` (built from ``_base_filters``) sorted by list column ``column``,
        then by id."""
        dm = self.datamodel
        query = dm.apply_order_by(query, self._sort_column(column), direction)
        pk = getattr(dm.obj, dm.get_pk_name())
        return query.order_by(pk.desc() if direction == "desc" else pk.asc())

    # -- the bar above the list --------------------------------------------------------------
    def _url_with(self, drop=(), **values):
        args = [(k, v) for k, v in request.args.items(multi=True)
                if k not in values and k not in drop and not k.startswith("page_")]
        args += [(k, v) for k, v in values.items() if v not in (None, "")]
        base = url_for(request.endpoint, **(request.view_args or {}))
        return f"{base}?{urlencode(args)}" if args else base

    def _render_bar(self):
        from flask import render_template

        tab = self.current_tab()
        q = self.quick_query()
        tabs = [(t.key, t.label, self._url_with(tab=t.key), tab is not None and t.key == tab.key)
                for t in self.list_tabs or []]
        hidden = [(k, v) for k, v in request.args.items(multi=True)
                  if k not in ("q", "tab") and not k.startswith("page_")]
        if tab is not None:
            hidden.append(("tab", tab.key))
        labels = [str(self.label_columns.get(c, c)) for c in self.quick_search_columns or []]
        return Markup(render_template(
            "lists/_bar.html", tabs=tabs, q=q, hidden=hidden, labels=labels,
            searchable=bool(self.quick_search_columns), too_long=len(q) > MAX_QUERY,
            max_query=MAX_QUERY, clear_url=self._url_with(drop=("q",)),
            action=url_for(request.endpoint, **(request.view_args or {}))))
