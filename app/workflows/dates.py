"""The one parser of dates typed by users (forms, JSON, query strings).

A date is written ``YYYY-MM-DD`` (e.g. 2007-12-13). Anything else given — a number
such as ``20261201``, a list, ``2026/12/01`` — is a *format* error, not an empty
field: only a missing value, ``None`` or blank text is "empty".
"""
import re
from datetime import date, datetime

from flask_babel import lazy_gettext as _l

from .errors import ValidationError

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def is_empty(value):
    return value is None or (isinstance(value, str) and not value.strip())


def parse_ymd(value, label, field, required=True):
    """``value`` → a ``date``; ``None`` when empty and not ``required``.

    Raises ValidationError (field ``field``): "<label>不能为空" for an empty value,
    "<label>格式不正确，应为 YYYY-MM-DD" for anything else that is not such a date."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if is_empty(value):
        if required:
            raise ValidationError(_l("%(field)s不能为空。", field=label), field=field)
        return None
    text = value.strip() if isinstance(value, str) else None
    try:
        if text is None or not DATE_RE.match(text):
            raise ValueError(value)
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            _l("%(field)s格式不正确，应为 YYYY-MM-DD，例如 2007-12-13。", field=label),
            field=field)
