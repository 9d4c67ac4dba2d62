"""导出 CSV / XLSX for any FAB ModelView list — streamed, exactly the rows the list shows.

Usage (two lines, see docs/modules/exports.md)::

    from .export import ExportMixin

    class CustomerView(ExportMixin, GuardedModelView):
        export_formatters = {"status": {"normal": "正常", "lost": "已流失"}}

The mixin adds ``GET <route_base>/export/<csv|xlsx>`` (permission: the view's
``can_list``, so whoever sees the list may export it) and the two buttons on the
list page. The export:

* applies the same search/filters as the list (the ``_flt_*`` args of the current
  URL, parsed into a *fresh* Filters object — FAB's shared ``self._filters`` is
  not thread-safe, FAB #2366), the view's ``base_filters`` (row-level rights) and
  the list's sort order (``_oc_/_od_`` args or ``base_order``); no paging;
* streams: a generator under ``stream_with_context`` reads the query with
  ``yield_per`` and writes a few hundred rows per chunk, so memory stays flat for
  100k+ rows. CSV is UTF-8 with BOM (Excel shows Chinese). XLSX uses openpyxl's
  write-only mode (rows go to a temporary file), then the file is streamed;
* headers are the view's Chinese ``label_columns``; a column's values go through
  ``export_formatters[col]`` (a dict code → Chinese name, or a callable);
* the cells are written by app/workflows/spreadsheet.py: text that a spreadsheet
  would read as a formula is neutralised, numbers and dates stay typed, the XLSX
  sheet title is valid, columns are sized from the content, the header is frozen
  and filtered.
"""
from datetime import date

from flask import Response, abort, current_app, request, stream_with_context
from flask_appbuilder import expose
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_appbuilder.urltools import get_filter_args, get_order_args
from flask_babel import LazyString
from sqlalchemy.orm import joinedload, lazyload

from ..reports.common import content_disposition
from ..workflows.spreadsheet import CSV_MIME, XLSX_MIME, csv_stream, xlsx_stream


def _attr(item, col):
    value = item
    for part in col.split("."):
        if value is None:
            return None
        value = getattr(value, part, None)
    if callable(value):
        value = value()
    return value


def export_response(fmt, stem, ascii_stem, headers, rows):
    """A streamed download of ``rows`` (an iterable of value lists) under ``headers``.

    ``fmt``: ``csv`` (UTF-8 with BOM) or ``xlsx``; anything else → 404. The file is
    named 「<stem>_<YYYY-MM-DD>.<fmt>」 (ASCII fallback ``<ascii_stem>_<date>.<fmt>``).
    Custom (non-ModelView) lists call this from their own ``export_list`` endpoint
    with a generator over the same query their list pages, without the paging.
    """
    if fmt not in ("csv", "xlsx"):
        abort(404)
    day = date.today().strftime("%Y-%m-%d")
    headers = [str(h) for h in headers]
    zone = current_app.config.get("BABEL_DEFAULT_TIMEZONE")
    if fmt == "csv":
        body, mime = csv_stream(headers, rows, zone=zone), CSV_MIME
    else:  # widths from the header and the first rows (write-only mode can't resize later)
        body, mime = xlsx_stream(stem, headers, rows, zone=zone), XLSX_MIME
    resp = Response(stream_with_context(body))
    resp.content_type = mime  # exactly one charset (mimetype= would add a second)
    resp.headers["Content-Disposition"] = content_disposition(
        f"{stem}_{day}.{fmt}", f"{ascii_stem}_{day}.{fmt}")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def chunked(iterable, size=500):
    """Lists of up to ``size`` items: lets an export fetch per-chunk extras (names,
    measures…) in one query per chunk instead of one per row."""
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class ExportMixin:
    """Mix into a ModelView (before it in the bases) to add 导出 CSV / XLSX."""

    #: columns to export (default: ``list_columns``)
    export_columns = None
    #: {column: {code: 中文} | callable(value) -> value}
    export_formatters = {}
    #: loader options for the export query (default: joinedload of the
    #: many-to-one relations named in export_columns, lazyload of the rest)
    export_load_options = None
    #: file name stem (default: ``list_title``)
    export_name = None
    #: ORM rows fetched per round trip
    export_chunk = 1000
    list_template = "reports/export_list.html"

    # ---- the rows -----------------------------------------------------------------
    def export_base_query(self):
        """The list's query, filtered and sorted like the list, without paging."""
        dm = self.datamodel
        filters = dm.get_filters(self.search_columns)
        get_filter_args(filters)
        joined = filters.get_joined_filters(self._base_filters)
        order_column, order_direction = get_order_args().get(self.__class__.__name__, ("", ""))
        if order_column not in (self.order_columns or []):
            order_column, order_direction = "", ""
        if not order_column and self.base_order:
            order_column, order_direction = self.base_order
        return dm.apply_all(dm.session.query(dm.obj), joined, order_column, order_direction)

    def export_query(self):
        """:meth:`export_base_query` with the loader options, fetched in chunks."""
        return (self.export_base_query().options(*self._export_options())
                .yield_per(self.export_chunk))

    def _export_options(self):
        if self.export_load_options is not None:
            return list(self.export_load_options)
        dm = self.datamodel
        opts = []
        roots = {c.split(".")[0] for c in self._export_columns()}
        for root in roots:
            if dm.is_relation(root) and (dm.is_relation_many_to_one(root)
                                         or dm.is_relation_one_to_one(root)):
                opts.append(joinedload(getattr(dm.obj, root)))
        opts.append(lazyload("*"))
        return opts

    def _export_columns(self):
        return list(self.export_columns or self.list_columns)

    def export_headers(self):
        return [str(self.label_columns.get(c, c)) for c in self._export_columns()]

    def export_value(self, item, col):
        value = _attr(item, col)
        fmt = self.export_formatters.get(col)
        if isinstance(fmt, dict):
            value = fmt.get(value, value)
        elif fmt is not None:
            value = fmt(value)
        if isinstance(value, LazyString):
            value = str(value)
        elif value is not None and not isinstance(
                value, (str, int, float, bool, date)) and type(value).__name__ != "Decimal":
            value = str(value)  # related objects → their __str__
        return value

    def export_rows(self):
        cols = self._export_columns()
        for item in self.export_query():
            yield [self.export_value(item, c) for c in cols]

    # ---- the endpoint -------------------------------------------------------------
    @expose("/export/<fmt>/")
    @has_access
    @permission_name("list")
    def export_list(self, fmt):
        if fmt not in ("csv", "xlsx"):
            abort(404)
        stem = str(self.export_name or self.list_title or self.__class__.__name__)
        ascii_stem = self.__class__.__name__.replace("View", "").lower() or "export"
        return export_response(fmt, stem, ascii_stem, self.export_headers(), self.export_rows())

    def export_url(self, fmt):
        """URL of the export for the current list request (same query string)."""
        from flask import url_for
        url = url_for(f"{self.__class__.__name__}.export_list", fmt=fmt)
        qs = request.query_string.decode("utf-8", "replace")
        return f"{url}?{qs}" if qs else url
