"""Shared pieces of the reports: filter parsing, percentages, file output.

No Flask request here: the views pass the query args in as a plain mapping.
"""
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import quote

from flask_babel import lazy_gettext as _l

from ..workflows.errors import ValidationError
from ..workflows.spreadsheet import (  # noqa: F401
    BOM, CSV_MIME, XLSX_MIME, cell_text, csv_stream, csv_value, xlsx_bytes, xlsx_stream,
)

CENT = Decimal("0.01")
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
# The file rules (formula neutralisation, typed cells, sheet titles, widths) live once
# in app/workflows/spreadsheet.py (imported above for the existing callers).


def content_disposition(filename, ascii_fallback):
    """RFC 6266/5987: an ASCII fallback plus the UTF-8 Chinese name (every reserved
    character percent-encoded, so a customer name with ``/`` stays one file name)."""
    return f"attachment; filename=\"{ascii_fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
