"""Request-argument validation for every FAB list: no malformed argument reaches FAB.

FAB reads its list arguments without checking them: ``page_<View>=abc`` and
``psize_<View>=abc`` are ``int()``-ed (ValueError → 500), ``_flt_<n>_<col>``
indexes a list with ``n`` (IndexError → 500), filter values go to the database as
they are (PostgreSQL refuses ``'abc'`` for an integer column → 500), huge pages
overflow the OFFSET; the REST ``q`` (rison) is checked by FAB only in part and
answered in English, unknown operators and ``page_size:-1`` are silently ignored.

``validate_request_args`` runs before every request (``install``) and answers
400 with a Chinese message saying which argument is wrong and what is allowed:

* HTML: any route of a FAB ModelView (``BaseModelView``: our lists and the
  security lists) — the Chinese error page; a page size beyond the list's limit
  is capped to it (a full page), not refused;
* REST: the GET routes of every ModelRestApi (``get_list``, ``get``, ``info``) —
  ``{"message": "…"}``.

Arguments that are well-formed go on to FAB unchanged.
"""
import json
import math
import re
import urllib.parse

from flask import current_app, request
from flask_babel import gettext as _

INT32_MAX = 2**31 - 1
MAX_PAGE = 100_000          # 100,000 pages × 100 rows: far beyond any table here
MAX_PAGE_SIZE = 100         # the HTML lists offer 25…100 (FAB's page-size menu)
MAX_TEXT = 1000             # a filter text longer than this is not a search

_FLT = re.compile(r"_flt_(\d+)_(.+)")
_INT = re.compile(r"[+-]?\d{1,12}")


class BadArgument(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


# ---- where a request goes --------------------------------------------------------------

def _views_by_blueprint(appbuilder):
    cache = getattr(appbuilder, "_crm_views_by_blueprint", None)
    if cache is None:
        cache = {}
        for view in appbuilder.baseviews:
            bp = getattr(view, "blueprint", None)
            if bp is not None:
                cache[bp.name] = view
        appbuilder._crm_views_by_blueprint = cache
    return cache


def target_view():
    """(view instance, method name) the current request is routed to, or (None, None)."""
    endpoint = request.endpoint or ""
    if "." not in endpoint:
        return None, None
    appbuilder = getattr(current_app, "appbuilder", None)
    if appbuilder is None:
        return None, None
    blueprint, method = endpoint.rsplit(".", 1)
    return _views_by_blueprint(appbuilder).get(blueprint), method


# ---- typed values --------------------------------------------------------------------------

def _label(view, col):
    labels = getattr(view, "label_columns", None) or {}
    text = labels.get(col)
    return f"{text}（{col}）" if text else col


def _column_kind(datamodel, col):
    """'int' | 'float' | 'date' | 'datetime' | 'relation' | None (text/other)."""
    checks = (("relation", "is_relation"), ("int", "is_integer"), ("float", "is_float"),
              ("float", "is_numeric"), ("datetime", "is_datetime"), ("date", "is_date"))
    for kind, name in checks:
        try:
            if getattr(datamodel, name)(col):
                return kind
        except Exception:   # dotted names, properties: FAB treats them as text
            continue
    return None


def _check_int(text):
    text = str(text).strip()
    if _INT.fullmatch(text) and abs(int(text)) <= INT32_MAX:
        return int(text)
    raise ValueError


def check_value(datamodel, col, value, what):
    """Raise BadArgument unless ``value`` suits column ``col`` (``what`` names it)."""
    if isinstance(value, bool):
        return
    kind = _column_kind(datamodel, col)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = repr(value)
    else:
        text = str(value)
    if len(text) > MAX_TEXT:
        raise BadArgument(_("%(what)s 的值太长（最多 %(n)d 个字符），请缩短后重试。",
                            what=what, n=MAX_TEXT))
    if kind in ("int", "relation"):
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            _check_int(int(value) if isinstance(value, float) else text)
        except (ValueError, OverflowError):
            hint = _("所选记录的编号") if kind == "relation" else _("整数")
            raise BadArgument(_(
                "%(what)s 的值“%(value)s”无效：应为%(hint)s（-%(max)d 到 %(max)d 之间），"
                "请改正后重试。", what=what, value=text[:50], hint=hint, max=INT32_MAX))
    elif kind == "float":
        try:
            number = float(text)
            if not math.isfinite(number) or abs(number) > 1e15:
                raise ValueError
        except ValueError:
            raise BadArgument(_("%(what)s 的值“%(value)s”无效：应为数字，例如 12.5。",
                                what=what, value=text[:50]))
    elif kind in ("date", "datetime"):
        from dateutil import parser

        try:
            if not text.strip():
                raise ValueError
            parser.parse(text)
        except (ValueError, OverflowError, TypeError):
            example = "2026-01-31" if kind == "date" else "2026-01-31 08:30:00"
            raise BadArgument(_("%(what)s 的值“%(value)s”不是有效的日期，请按 %(example)s 的格式填写。",
                                what=what, value=text[:50], example=example))


# ---- HTML: FAB's list arguments ------------------------------------------------------------

def _bounded_int(name, raw, low, high, meaning):
    try:
        number = _check_int(raw)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise BadArgument(_("参数 %(name)s 的值“%(value)s”无效：%(meaning)s应为 %(low)d 到 %(high)d 之间的整数，"
                            "请改正地址中的参数或回到列表第一页。", name=name, value=str(raw)[:50],
                            meaning=meaning, low=low, high=high))
    return number


def _list_views(view):
    """The view and the related lists drawn on its pages."""
    views = [view]
    views.extend(getattr(view, "_related_views", None) or [])
    return views


def _page_size_limit(view):
    return max(MAX_PAGE_SIZE, int(getattr(view, "page_size", 0) or 0))


def check_model_view_args(view, args):
    """Raise BadArgument for a malformed argument; returns {name: value} of page
    sizes beyond the list's limit, which are capped (asking for more rows than a
    page holds is not an error: you get a full page)."""
    views = {type(v).__name__: v for v in _list_views(view)}
    capped = {}
    for name in args:
        values = args.getlist(name)
        if name.startswith("page_"):
            for raw in values:
                _bounded_int(name, raw, 0, MAX_PAGE, _("页码"))
        elif name.startswith("psize_"):
            target = views.get(name[len("psize_"):], view)
            limit = _page_size_limit(target)
            for raw in values:
                if _bounded_int(name, raw, 1, INT32_MAX, _("每页条数")) > limit:
                    capped[name] = str(limit)
        elif name.startswith("_oc_"):
            target = views.get(name[len("_oc_"):])
            if target is None:
                raise BadArgument(_("参数 %(name)s 指的列表不存在，请去掉该参数后重试。", name=name))
            allowed = list(getattr(target, "order_columns", None) or [])
            for raw in values:
                if raw not in allowed:
                    raise BadArgument(_(
                        "不能按“%(col)s”排序：可排序的列为 %(cols)s。请点击列表的列标题排序。",
                        col=str(raw)[:50],
                        cols="、".join(_label(target, c) for c in allowed) or _("（无）")))
        elif name.startswith("_od_"):
            for raw in values:
                if raw not in ("asc", "desc"):
                    raise BadArgument(_("参数 %(name)s 的值“%(value)s”无效：排序方向只能是 asc（升序）"
                                        "或 desc（降序）。", name=name, value=str(raw)[:50]))
        elif name.startswith("_flt_"):
            _check_filter_arg(view, list(views.values()), name, values)
    return capped


def _check_filter_arg(view, views, name, values):
    m = _FLT.fullmatch(name)
    if not m:
        raise BadArgument(_("筛选参数 %(name)s 的格式不对：应为 _flt_<序号>_<列名>，请用列表上方的"
                            "“搜索”添加筛选条件。", name=name))
    index, col = int(m.group(1)), m.group(2)
    owners = [v for v in views if col in v._filters.get_search_filters()]
    if not owners:
        cols = list(view._filters.get_search_filters())
        raise BadArgument(_("不能按“%(col)s”筛选：可筛选的列为 %(cols)s。", col=col[:50],
                            cols="、".join(_label(view, c) for c in cols) or _("（无）")))
    for owner in owners:
        filters = owner._filters._all_filters.get(col) or []
        if index >= len(filters) or index >= 10:   # FAB reads one digit
            names = "、".join(f"{i}（{f.name}）" for i, f in enumerate(filters[:10]))
            raise BadArgument(_("筛选参数 %(name)s 的序号 %(n)d 无效：“%(col)s”可用的筛选方式为 %(names)s。",
                                name=name, n=index, col=_label(owner, col), names=names))
        for raw in values:
            check_value(owner.datamodel, col, raw, _("筛选条件“%(col)s”", col=_label(owner, col)))


# ---- REST: the rison ``q`` --------------------------------------------------------------------

_TYPES = {"integer": "整数", "string": "文字", "array": "列表 !(…)", "object": "对象 (…)",
          "number": "数字", "boolean": "!t 或 !f"}


def parse_rison(value):
    import prison

    try:
        return prison.loads(value)
    except Exception:
        if current_app.config.get("FAB_API_ALLOW_JSON_QS", True):
            try:
                return json.loads(urllib.parse.parse_qs(f"q={value}").get("q")[0])
            except Exception:
                pass
    raise BadArgument(_("参数 q 不是有效的 rison 表达式（括号、引号或逗号不完整？）。"
                        "示例：q=(page:0,page_size:20,order_column:id,order_direction:desc)"))


def _schema_error(error):
    where = "q" + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
    if error.validator == "type":
        want = error.validator_value
        want = "或".join(_TYPES.get(t, t) for t in (want if isinstance(want, list) else [want]))
        return _("参数 %(where)s 的值类型不对：应为%(want)s。", where=where, want=want)
    if error.validator == "enum":
        return _("参数 %(where)s 的值“%(value)s”无效：只能是 %(allowed)s 之一。", where=where,
                 value=str(error.instance)[:50],
                 allowed="、".join(str(v) for v in error.validator_value))
    if error.validator == "required":
        return _("参数 %(where)s 缺少必填项：每个筛选条件都要有 col、opr 和 value，"
                 "例如 (col:name,opr:ct,value:北京)。", where=where)
    return _("参数 %(where)s 的值无效，请对照接口文档（/api/v1/_openapi）改正。", where=where)


def _check_schema(data, schema):
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise BadArgument(_schema_error(errors[0]))


def _check_page(data, page_limit, where="q"):
    page = data.get("page")
    if page is not None and not 0 <= page <= MAX_PAGE:
        raise BadArgument(_("参数 %(where)s.page 的值 %(value)s 无效：页码应为 0 到 %(max)d 之间的整数。",
                            where=where, value=page, max=MAX_PAGE))
    size = data.get("page_size")
    if size is not None and not 1 <= size <= page_limit:
        raise BadArgument(_("参数 %(where)s.page_size 的值 %(value)s 无效：每页条数应为 1 到 %(max)d 之间的"
                            "整数（更多数据请翻页）。", where=where, value=size, max=page_limit))


def check_rest_args(view, method, args):
    from flask_appbuilder.api.schemas import get_info_schema, get_item_schema, get_list_schema

    schemas = {"get_list": get_list_schema, "get": get_item_schema, "info": get_info_schema}
    raw = args.get("q")
    if method not in schemas or raw is None:
        return
    if raw == "":
        return
    data = parse_rison(raw)
    if not isinstance(data, dict):
        raise BadArgument(_("参数 q 应为 rison 对象，例如 q=(page:0,page_size:20)。"))
    _check_schema(data, schemas[method])
    limit = view.max_page_size or current_app.config.get("FAB_API_MAX_PAGE_SIZE", 100)
    if method == "info":
        for key in ("add_columns", "edit_columns"):
            for col, sub in (data.get(key) or {}).items():
                if isinstance(sub, dict):
                    for k in ("page", "page_size"):
                        if k in sub and (not isinstance(sub[k], int) or isinstance(sub[k], bool)):
                            raise BadArgument(_("参数 q.%(key)s.%(col)s.%(k)s 应为整数。",
                                                key=key, col=col, k=k))
                    _check_page(sub, limit, where=f"q.{key}.{col}")
        return
    if method != "get_list":
        return
    _check_page(data, limit)
    order = data.get("order_column")
    if order is not None and order not in (view.order_columns or []):
        raise BadArgument(_("不能按“%(col)s”排序：order_column 只能是 %(cols)s 之一。",
                            col=str(order)[:50], cols="、".join(view.order_columns or []) or _("（无）")))
    search = view._filters.get_search_filters()
    for i, flt in enumerate(data.get("filters") or []):
        col, opr, value = flt["col"], flt["opr"], flt["value"]
        if col not in search:
            raise BadArgument(_("q.filters[%(i)d]：不能按“%(col)s”筛选，可筛选的列为 %(cols)s。",
                                i=i, col=str(col)[:50], cols="、".join(search) or _("（无）")))
        oprs = [f.arg_name for f in search[col]]
        if opr not in oprs:
            raise BadArgument(_("q.filters[%(i)d]：列“%(col)s”不支持筛选方式“%(opr)s”，可用的为 %(oprs)s。",
                                i=i, col=col, opr=str(opr)[:50], oprs="、".join(oprs)))
        values = value if isinstance(value, list) else [value]
        for v in values:
            check_value(view.datamodel, col, v, _("q.filters[%(i)d]（%(col)s）", i=i, col=col))


# ---- any route: record ids and page numbers -----------------------------------------------------
# Our own pages and APIs read ``?customer_id=``, ``?page=``, ``?orders_page=``… with
# int() and a default; a number beyond the database's INTEGER went on to the query
# (OFFSET / id overflow → 500). Like ids in the path (app/__init__.py), a number that
# large names no record and no page: 400.
_ID_OR_PAGE = re.compile(r"(?:.*_)?(?:id|ids|page|page_size|epage|dpage|survivor|merged)")


def check_number_args(args):
    for name in args:
        if not _ID_OR_PAGE.fullmatch(name):
            continue
        for raw in args.getlist(name):
            text = str(raw).strip().lstrip("+-")
            if text.isascii() and text.isdigit() and (len(text) > 10 or int(text) > INT32_MAX):
                raise BadArgument(_("参数 %(name)s 的值“%(value)s”太大：编号和页码不超过 %(max)d，"
                                    "请改正地址中的参数。", name=name, value=str(raw)[:30],
                                    max=INT32_MAX))


# ---- the hook ----------------------------------------------------------------------------------

def _signed_in():
    from flask_login import current_user

    return bool(request.headers.get("Authorization")) or current_user.is_authenticated


def validate_request_args():
    """before_request: 400 for malformed list arguments of FAB lists (HTML and REST)."""
    if not request.args:
        return None
    from flask_appbuilder.api import ModelRestApi
    from flask_appbuilder.baseviews import BaseModelView

    view, method = target_view()
    try:
        check_number_args(request.args)
        if view is None or not _signed_in():
            return None      # FAB refuses the anonymous caller; tell it nothing about lists
        if isinstance(view, ModelRestApi):
            if request.method == "GET":
                check_rest_args(view, method, request.args)
        elif isinstance(view, BaseModelView):
            capped = check_model_view_args(view, request.args)
            if capped:
                from werkzeug.datastructures import ImmutableMultiDict

                args = request.args.copy()
                for name, value in capped.items():
                    args.setlist(name, [value])
                request.args = ImmutableMultiDict(args)   # the request's cached args
    except BadArgument as e:
        from .errors import error_response

        return error_response(400, e.message)
    return None


def install(app):
    app.before_request(validate_request_args)
