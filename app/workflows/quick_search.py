"""快速搜索 (issue 21): the one substring match every list's search box uses.

Every word of the search text (blank-separated, at most ``MAX_TERMS``; control
characters count as blanks) must occur in one of the list's key columns —
case-insensitive (``ILIKE`` on PostgreSQL; SQLite's ``LIKE`` already ignores ASCII
case), with ``%``, ``_`` and ``\\`` taken literally (``ESCAPE '/'``); quotes are
bound parameters like any text.

* the FAB lists (``app/views/lists.py`` ``ListMixin``) build their condition with
  :func:`model_clause` and search the first ``MAX_QUERY`` characters;
* the custom lists (服务处理/反馈/归档, 文档, 邮件, 联系人 — their workflows) check the
  text with :func:`parse` (longer than ``MAX_QUERY``: a Chinese 400, as the 服务分配
  search always did) and build their condition with :func:`condition`.
"""
import re

from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, or_
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ClauseElement

from .errors import ValidationError

MAX_QUERY = 100          # characters searched
MAX_TERMS = 5            # words (each must match)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean(text):
    """``text`` without control characters (they become blanks), stripped; not a
    string → ""."""
    if not isinstance(text, str):
        return ""
    return _CONTROL.sub(" ", text).strip()


def terms(text):
    """The words of a search (the first MAX_QUERY characters, MAX_TERMS words)."""
    return clean(text)[:MAX_QUERY].split()[:MAX_TERMS]


def parse(text, field="search"):
    """The search text of a custom list, checked: "" for nothing; longer than
    ``MAX_QUERY`` characters → ValidationError (400) naming ``field``."""
    text = clean(text)
    if len(text) > MAX_QUERY:
        raise ValidationError(_l("搜索内容太长（最多 %(n)d 个字）。", n=MAX_QUERY), field=field)
    return text


def escape_like(text):
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def like(column, word, sqlite):
    """``column`` contains ``word`` (escaped, case-insensitive)."""
    pattern = f"%{escape_like(word)}%"
    # SQLite's LIKE already ignores ASCII case: no lower() on every row
    return column.like(pattern, escape="/") if sqlite else column.ilike(pattern, escape="/")


def condition(columns, text, dialect="postgresql"):
    """Every word of ``text`` occurs in one of ``columns``; None when there is nothing
    to search. A column is an SQL expression, or a callable ``(word, sqlite) →
    condition`` (e.g. a related table's column: ``lambda w, s: Model.customer_id.in_(
    select(Customer.id).where(like(Customer.name, w, s)))``)."""
    words = terms(text)
    if not words or not columns:
        return None
    sqlite = dialect == "sqlite"

    def one(column, word):
        if isinstance(column, ClauseElement) or hasattr(column, "__clause_element__"):
            return like(column, word, sqlite)
        return column(word, sqlite)
    return and_(*[or_(*[one(c, w) for c in columns]) for w in words])


def dialect_of(session):
    return session.get_bind().dialect.name


def _column_match(model, column, word, sqlite):
    if "." in column:
        rel, leaf = column.split(".", 1)
        attr = getattr(model, rel)
        # an alias: a plain table in the EXISTS would look "already joined" to FAB
        target = aliased(attr.property.mapper.class_)
        return attr.of_type(target).has(like(getattr(target, leaf), word, sqlite))
    return like(getattr(model, column), word, sqlite)


def model_clause(model, columns, query, dialect="postgresql"):
    """:func:`condition` over a model's column names (``rel.col``: a many-to-one
    relation's column, as an EXISTS)."""
    return condition([(lambda w, s, c=c: _column_match(model, c, w, s)) for c in columns or ()],
                     query, dialect)
