"""Shared pieces of the reports: filter parsing, percentages, file output.

No Flask request here: the views pass the query args in as a plain mapping.
"""
import csv
import io
import os
import tempfile
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import quote

from flask_babel import lazy_gettext as _l

from ..workflows.errors import ValidationError

CENT = Decimal("0.01")
BOM = "\ufeff"
FORMATS = ("json", "csv", "xlsx")
BY_CHOICES = {"level": _l("按等级"), "credit": _l("按信用度"), "satisfaction": _l("按满意度")}


def money2(value):
    """Decimal rounded to cents (None → 0.00)."""
    return Decimal(value or 0).quantize(CENT, rounding=ROUND_HALF_UP)


def _text(args, key, label, max_len=128):
    value = (args.get(key) or "").strip()
    if len(value) > max_len:
        raise ValidationError(_l("%(field)s太长（最多 %(n)d 个字）。", field=label, n=max_len),
                              field=key)
    return value or None


def parse_year(args):
    raw = (args.get("year") or "").strip()
    if not raw:
        return None
    if not (raw.isdigit() and len(raw) == 4 and 1900 <= int(raw) <= 2100):
        raise ValidationError(_l("年份必须是 1900 到 2100 之间的四位数字，例如 2025。"),
                              field="year")
    return int(raw)


def parse_params(args):
    """Validate every filter a report understands; unknown args are ignored."""
    by = (args.get("by") or "level").strip()
    if by not in BY_CHOICES:
        raise ValidationError(
            _l("统计方式 by 只能是 level（按等级）、credit（按信用度）或 satisfaction（按满意度）。"),
            field="by")
    fmt = (args.get("format") or "json").strip().lower()
    if fmt not in FORMATS:
        raise ValidationError(_l("导出格式 format 只能是 json、csv 或 xlsx。"), field="format")
    return {
        "customer": _text(args, "customer", _l("客户名称")),
        "manager": _text(args, "manager", _l("客户经理"), 64),
        "year": parse_year(args),
        "by": by,
        "format": fmt,
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

def content_disposition(filename, ascii_fallback):
    """RFC 6266/5987: an ASCII fallback plus the UTF-8 Chinese name."""
    return f"attachment; filename=\"{ascii_fallback}\"; filename*=UTF-8''{quote(filename)}"


def cell_text(value):
    """A value as CSV text: dates YYYY-MM-DD, money two decimals, None empty."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, bool):
        return str(_l("是") if value else _l("否"))
    return str(value)


def cell_xlsx(value):
    """A value for openpyxl: numbers and dates stay typed, the rest is text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(_l("是") if value else _l("否"))
    if isinstance(value, (int, float, Decimal, date, datetime)):
        return value
    return str(value)


def csv_stream(header, rows, chunk_rows=500):
    """Yield a UTF-8 CSV with BOM, a few hundred rows per chunk (flat memory)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    yield (BOM + buf.getvalue()).encode("utf-8")
    buf.seek(0)
    buf.truncate()
    n = 0
    for row in rows:
        writer.writerow([cell_text(v) for v in row])
        n += 1
        if n % chunk_rows == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode("utf-8")


def xlsx_stream(sheet_title, header, rows, widths=None, chunk_bytes=64 * 1024):
    """Yield an XLSX built with openpyxl's write-only mode (rows go to a temporary
    file as they come, not into memory), then the file in chunks."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title=str(sheet_title)[:31])
    for i, w in enumerate(widths or [18] * len(header)):
        ws.column_dimensions[_col_letter(i)].width = w
    head = []
    for h in header:
        c = WriteOnlyCell(ws, value=str(h))
        c.font = Font(bold=True)
        head.append(c)
    ws.append(head)
    for row in rows:
        cells = []
        for v in row:
            v = cell_xlsx(v)
            if isinstance(v, Decimal):
                c = WriteOnlyCell(ws, value=v)
                c.number_format = "#,##0.00"
                cells.append(c)
            elif isinstance(v, datetime):
                c = WriteOnlyCell(ws, value=v)
                c.number_format = "yyyy-mm-dd hh:mm:ss"
                cells.append(c)
            elif isinstance(v, date):
                c = WriteOnlyCell(ws, value=v)
                c.number_format = "yyyy-mm-dd"
                cells.append(c)
            else:
                cells.append(v)
        ws.append(cells)
    fd, path = tempfile.mkstemp(suffix=".xlsx")
    os.close(fd)
    try:
        wb.save(path)
        with open(path, "rb") as fh:
            while True:
                data = fh.read(chunk_bytes)
                if not data:
                    break
                yield data
    finally:
        os.unlink(path)


def _col_letter(i):
    from openpyxl.utils import get_column_letter
    return get_column_letter(i + 1)
