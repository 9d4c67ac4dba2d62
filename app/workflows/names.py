"""Names that are shown to people and end up in mail headers or file lists.

Two rules, used everywhere a name is saved (user first/last name, customer and
contact names, uploaded file names) and everywhere one is written into a mail
header:

* ``check_name`` refuses control and format characters (Unicode categories Cc and
  Cf, plus the line/paragraph separators Zl/Zp); the ordinary space is fine. A
  CR/LF in a name once broke every mail its owner sent (header injection is refused
  by the mail library, so sending failed with 502).
* ``check_file_name_chars`` refuses the bidirectional controls that make
  ``合同\\u202egpj.pdf`` display as ``合同fdp.jpg`` (and every other Cc/Cf character).
* ``header_safe`` is the output side: whatever is stored (legacy rows, received
  mail), a header value built from it has no control/format characters, so a bad
  name can never break sending.
"""
import re
import unicodedata
from decimal import Decimal

from flask_babel import lazy_gettext as _l

from .errors import ValidationError

# bidirectional embedding/override/isolate marks and the implicit direction marks
BIDI_CONTROLS = frozenset([0x202A, 0x202B, 0x202C, 0x202D, 0x202E,
                           0x2066, 0x2067, 0x2068, 0x2069, 0x200E, 0x200F, 0x061C])
_BAD_CATEGORIES = ("Cc", "Cf", "Zl", "Zp", "Cs")

_CHAR_NAMES = {
    0x0A: "换行符 LF", 0x0D: "回车符 CR", 0x09: "制表符 TAB", 0x00: "空字符 NUL",
    0x202A: "从左到右嵌入 LRE", 0x202B: "从右到左嵌入 RLE", 0x202C: "方向格式结束 PDF",
    0x202D: "从左到右强制 LRO", 0x202E: "从右到左强制 RLO", 0x2066: "从左到右隔离 LRI",
    0x2067: "从右到左隔离 RLI", 0x2068: "首字符方向隔离 FSI", 0x2069: "方向隔离结束 PDI",
    0x200E: "从左到右标记 LRM", 0x200F: "从右到左标记 RLM", 0x061C: "阿拉伯字母标记 ALM",
    0x200B: "零宽空格", 0x200D: "零宽连接符", 0xFEFF: "零宽不换行空格 BOM",
}


def is_bad_char(ch):
    return ch != " " and unicodedata.category(ch) in _BAD_CATEGORIES


def first_bad_char(value):
    """The first control/format character in ``value`` (None when clean)."""
    for ch in value or "":
        if is_bad_char(ch):
            return ch
    return None


def describe_char(ch):
    """'U+202E（从右到左强制 RLO）' — how a message names an invisible character."""
    label = _CHAR_NAMES.get(ord(ch)) or unicodedata.name(ch, "") or unicodedata.category(ch)
    return f"U+{ord(ch):04X}（{label}）"


def check_name(value, field, label):
    """``value`` unchanged, or ValidationError naming the field and the character."""
    if value is None:
        return value
    ch = first_bad_char(str(value))
    if ch is not None:
        raise ValidationError(
            _l("%(label)s不能包含控制字符或不可见的格式字符（发现 %(char)s，常见于换行或从别处复制的文字），"
               "请删除该字符后重新输入。", label=label, char=describe_char(ch)), field=field)
    return value


def check_file_name_chars(name, field="file"):
    """File names: no control/format characters; bidirectional controls get their own
    message (they make a name display differently from what it is)."""
    for ch in name:
        if ord(ch) in BIDI_CONTROLS:
            raise ValidationError(
                _l("文件名“%(name)s”包含文字方向控制字符 %(char)s，它会让文件名显示得与实际不同"
                   "（例如把 .exe 显示成 .pdf），已拒绝。请把文件改名、去掉该字符后重新上传。",
                   name=header_safe(name), char=describe_char(ch)), field=field)
        if is_bad_char(ch):
            raise ValidationError(
                _l("文件名不能包含控制字符或不可见的格式字符（发现 %(char)s），请把文件改名后重新上传。",
                   char=describe_char(ch)), field=field)
    return name


def header_safe(value):
    """``value`` with every control/format character replaced by a space, runs of
    whitespace collapsed, stripped: safe in any mail header and on any page."""
    if not value:
        return ""
    text = "".join(" " if is_bad_char(ch) else ch for ch in str(value))
    return re.sub(r"\s+", " ", text).strip()


def clean_text(value, label, field, max_len):
    """A text field typed by a user (form or JSON): ``None`` stays ``None``; text or a
    number is stripped (blank → ``None``); anything else (a list, an object, a
    boolean) or more than ``max_len`` characters is a ValidationError on ``field``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ValidationError(_l("%(field)s格式不正确。", field=label), field=field)
    value = str(value).strip()
    if len(value) > max_len:
        raise ValidationError(_l("%(field)s太长（最多 %(n)d 个字）。", field=label, n=max_len),
                              field=field)
    return value or None


def display_name(user):
    """How a user is named on pages and in records: 姓 + 名 (``first_name`` holds the
    姓), else the user name; "" for no user. Works on a User or any row with those
    three attributes."""
    if user is None:
        return ""
    return f"{user.first_name or ''}{user.last_name or ''}" or user.username
