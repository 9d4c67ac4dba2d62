"""Shared pieces of the reports: filter parsing, percentages, file output.

No Flask request here: the views pass the query args in as a plain mapping.
"""
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import quote

from flask_babel import lazy_gettext as _l

from ..workflows.errors import ValidationError
from .period import parse_period, parse_year  # noqa: F401
from ..workflows.spreadsheet import (  # noqa: F401
    BOM, CSV_MIME, XLSX_MIME, cell_text, csv_stream, csv_value, xlsx_bytes, xlsx_stream,
)

CENT = Decimal("0.01")
FORMATS = ("json", "csv", "xlsx")
BY_CHOICES = {"level": _l("按等级"), "credit": _l("按信用度"), "satisfaction": _l("按满意度"),
              "region": _l("按地区")}
PAGE_SIZE, MAX_PAGE_SIZE = 50, 500


def money2(value):
    """Decimal rounded to cents (None → 0.00)."""
    return Decimal(value or 0).quantize(CENT, rounding=ROUND_HALF_UP)


def _text(args, key, label, max_len=128):
    value = (args.get(key) or "").strip()
    if len(value) > max_len:
        raise ValidationError(_l("%(field)s太长（最多 %(n)d 个字）。", field=label, n=max_len),
                              field=key)
    return value or None


def _int_arg(args, key, default, low, high, message):
    raw = args.get(key)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return default
    raw = str(raw).strip()
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not (low <= int(raw) <= high):
        raise ValidationError(message, field=key)
    return int(raw)


def parse_params(args):
    """Validate every filter a report understands; unknown args are ignored.
    The date range and comparison: app/reports/period.py."""
    by = (args.get("by") or "level").strip()
    if by not in BY_CHOICES:
        raise ValidationError(
            _l("统计方式 by 只能是 level（按等级）、credit（按信用度）、satisfaction（按满意度）"
               "或 region（按地区）。"), field="by")
    fmt = (args.get("format") or "json").strip().lower()
    if fmt not in FORMATS:
        raise ValidationError(_l("导出格式 format 只能是 json、csv 或 xlsx。"), field="format")
    period, compare, compare_period = parse_period(args)
    order = (args.get("order") or "").strip().lower() or None
    if order not in (None, "asc", "desc"):
        raise ValidationError(_l("排序方向 order 只能是 asc（从小到大）或 desc（从大到小）。"),
                              field="order")
    return {
        "customer": _text(args, "customer", _l("客户名称")),
        "manager": _text(args, "manager", _l("客户经理"), 64),
        "year": parse_year(args),
        "by": by,
        "format": fmt,
        "period": period, "start": period.start, "stop": period.stop,
        "compare": compare, "compare_period": compare_period,
        "sort": (args.get("sort") or "").strip() or None,
        "order": order,
        "page": _int_arg(args, "page", 0, 0, 10 ** 6,
                         _l("页码 page 必须是 0 或正整数（0 为第一页）。")),
        "page_size": _int_arg(args, "page_size", PAGE_SIZE, 1, MAX_PAGE_SIZE,
                              _l("每页行数 page_size 必须是 1 到 500 之间的整数。")),
    }


def percents(counts):
    """Shares in percent with two decimals that add up to exactly 100 (largest
    remainder); all zeros when the total is 0."""
    total = sum(counts)
    if not total:
        return [0.0 for _ in counts]
    parts = [divmod(c * 10000, total) for c in counts]
    hundredths = [q for q, _ in parts]
    missing = 10000 - sum(hundredths)
    order = sorted(range(len(counts)), key=lambda i: (-parts[i][1], i))
    for i in order[:missing]:
        hundredths[i] += 1
    return [h / 100 for h in hundredths]


# ---- output ---------------------------------------------------------------------
# The file rules (formula neutralisation, typed cells, sheet titles, widths) live once
# in app/workflows/spreadsheet.py (imported above for the existing callers).


def content_disposition(filename, ascii_fallback):
    """RFC 6266/5987: an ASCII fallback plus the UTF-8 Chinese name (every reserved
    character percent-encoded, so a customer name with ``/`` stays one file name)."""
    return f"attachment; filename=\"{ascii_fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def csv_sections(tables, zone=None):
    """One UTF-8 CSV (with BOM) of several tables [(title, header, rows)]: the first
    table's header is the first line; each further table follows an empty line and
    a line with its title."""
    from ..workflows.spreadsheet import csv_text
    parts = []
    for i, (title, header, rows) in enumerate(tables):
        if i:
            parts.append("\r\n" + csv_text([title], bom=False))
        parts.append(csv_text(header, rows, zone=zone, bom=(i == 0)))
    return "".join(parts).encode("utf-8")


def xlsx_sheets(tables, zone=None):
    """One XLSX with a sheet per table [(title, header, rows)] (the rules of
    app/workflows/spreadsheet.py: typed cells, text never a formula, widths from the
    content, bold frozen header, autofilter)."""
    import os
    import tempfile

    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    from ..workflows.spreadsheet import _XlsxCells, column_widths, sheet_title

    wb = Workbook(write_only=True)
    used = set()
    for title, header, rows in tables:
        rows = [list(r) for r in rows]
        name = sheet_title(title)
        while name in used:
            name = sheet_title(f"{name[:28]}_{len(used)}")
        used.add(name)
        ws = wb.create_sheet(title=name)
        header = [str(h) for h in header]
        for i, w in enumerate(column_widths(header, rows[:200], zone)):
            ws.column_dimensions[get_column_letter(i + 1)].width = w
        ws.freeze_panes = "A2"
        cells = _XlsxCells(ws, zone)
        ws.append([cells.text(h, bold=True) for h in header])
        for row in rows:
            ws.append([cells.cell(v) for v in row])
        ws.auto_filter.ref = f"A1:{get_column_letter(max(len(header), 1))}{len(rows) + 1}"
    fd, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(fd)
    try:
        wb.save(path)
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        os.unlink(path)
