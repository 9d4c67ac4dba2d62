"""全局搜索: one box over customers, contacts, opportunities, tickets, documents and mail.

Only what the actor may read: every kind's WHERE clause comes from that module's own
read rule (documents: ``documents.readable_clause`` under ``DOCUMENT_READ_SCOPE``; mail:
``mail.readable_filter``; customers, contacts: ``rights.can_read_customer`` — all staff;
opportunities and tickets: everyone with the function's list permission, as their lists
show them). Which kinds the actor may search at all (the function's ``can_list``) is
decided by the caller and passed as ``kinds``.

Matching is a case-insensitive substring match on the fields of ``KINDS``:

* PostgreSQL, 3 characters or more: ``ILIKE '%q%'`` (wildcards escaped) over GIN trigram indexes
  (``pg_trgm``, migration 0008);
* SQLite, 3 characters or more: the FTS5 trigram table ``crm_search_<kind>``, the query
  quoted as one phrase (so ``"``, ``*``, ``NEAR(``, ``OR`` are plain text);
* 1–2 characters (a trigram index cannot answer them):

  - made of 汉字 and other non-ASCII characters without case (:func:`gram_query`, e.g.
    ``科``, ``科技``): the table ``crm_search_gram`` (migration 0012) lists every
    1–2 character piece of non-ASCII text of every searched record (fields apart, kept
    by triggers); the hits are the ids listed under the query, newest first;
  - otherwise (``62``, ``ab``, ``@1``): a scan, newest first, that stops after
    ``COUNT_CAP`` + 1 hits (such short ASCII strings are common: the scan ends early).

  Without a letter with a case (:func:`caseless`), case folding cannot change the
  answer, so the comparison is on bytes: ``LIKE`` instead of ``ILIKE`` on PostgreSQL
  (``ILIKE`` lower-cases every value: about 4× dearer), ``instr()`` on SQLite. On
  PostgreSQL that ``LIKE`` is written ``value COLLATE "C" LIKE …`` so that no trigram
  index serves it (a 1–2 character pattern has no trigram: a bitmap scan of the GIN
  index would read the whole index).

One pass per kind: the ids of the first ``COUNT_CAP`` + 1 hits, newest first, give the
count and the page (its rows are then read by primary key) — a rare term is one scan,
not a COUNT scan and then an items scan. Counts are exact up to ``COUNT_CAP`` (then
shown as "1000+").
"""
import re
import unicodedata
from dataclasses import dataclass

from flask_babel import lazy_gettext as _l
from sqlalchemy import column, false, func, or_, select, table, text, true

from ..models import Contact, Customer, Document, MailMessage, Opportunity, ServiceTicket
from . import documents as docs_wf
from . import mail as mail_wf
from .errors import ValidationError
from .rights import can_read_customer

MAX_LEN = 100
COUNT_CAP = 1000
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
TRIGRAM = 3


@dataclass(frozen=True)
class Kind:
    key: str
    label: object
    function: str          # the view menu whose can_list opens this kind
    model: object
    fields: tuple          # searched columns (names in migration 0006)
    order: tuple = ()


KINDS = {
    "customer": Kind("customer", _l("客户"), "Customer", Customer,
                     ("name", "number", "phone", "legal_person")),
    "contact": Kind("contact", _l("联系人"), "Contact", Contact,
                    ("name", "office_phone", "mobile", "email")),
    "opportunity": Kind("opportunity", _l("销售机会"), "Opportunity", Opportunity,
                        ("customer_name", "summary")),
    "ticket": Kind("ticket", _l("客户服务"), "Service", ServiceTicket, ("number", "summary")),
    "document": Kind("document", _l("文档"), "Document", Document, ("name",)),
    "mail": Kind("mail", _l("邮件"), "Mail", MailMessage, ("subject",)),
}

_SPACES = re.compile(r"\s+")


def clean_query(q):
    """The query as searched: control/format characters dropped, runs of white space
    one space, trimmed. Empty → ValidationError; longer than MAX_LEN → ValidationError."""
    q = "" if q is None else str(q)
    q = "".join(ch for ch in q if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co"))
    q = _SPACES.sub(" ", q).strip()
    if not q:
        raise ValidationError(_l("请输入要搜索的内容（至少 1 个字）。"), field="q")
    if len(q) > MAX_LEN:
        raise ValidationError(_l("搜索内容太长（%(n)d 个字），最多 %(max)d 个字，请缩短后再搜索。",
                                 n=len(q), max=MAX_LEN), field="q")
    return q


def clean_kind(kind):
    """'' / None / 'all' → None (every kind); a known kind → itself; else ValidationError."""
    if kind in (None, "", "all"):
        return None
    if kind not in KINDS:
        raise ValidationError(_l("搜索类别只能是 %(kinds)s 或 all。", kinds="、".join(KINDS)),
                              field="kind")
    return kind


def clean_limit(limit, default=DEFAULT_LIMIT):
    if limit in (None, ""):
        return default
    try:
        n = int(str(limit).strip())
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_LIMIT:
        raise ValidationError(_l("limit 必须是 1 到 %(max)d 之间的整数。", max=MAX_LIMIT),
                              field="limit")
    return n


# ---- rights: each module's own rule ---------------------------------------------------

def readable(actor, kind, document_scope="restricted"):
    """(extra join or None, WHERE clause) limiting ``kind`` to what the actor may read."""
    if kind == "document":
        return Customer, docs_wf.readable_clause(actor, document_scope)
    if kind == "mail":
        clause = mail_wf.readable_filter(actor)
        return None, true() if clause is None else clause
    # customers and contacts: all staff read all customers; opportunities and tickets:
    # as their lists show them to whoever may open the list
    return None, true() if can_read_customer(actor, None) else false()


# ---- matching -------------------------------------------------------------------------

def _like_pattern(q):
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _fts_phrase(q):
    return '"' + q.replace('"', '""') + '"'


# characters that have no upper/lower case and are no case image of another character
_CASELESS = frozenset(("Lo", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po",
                       "Sm", "Sc", "Sk", "So", "Zs"))


def caseless(q):
    """True when case-insensitive and case-sensitive substring matching of ``q`` agree:
    no ASCII letter and only characters without case (汉字, digits, punctuation, symbols,
    spaces). ``lower(value)`` can then contain ``q`` only where ``value`` does."""
    return all(not ("A" <= ch <= "Z" or "a" <= ch <= "z")
               and unicodedata.category(ch) in _CASELESS for ch in q)


# kind → code in crm_search_gram (migration 0012)
GRAM_KINDS = {"customer": 1, "contact": 2, "opportunity": 3, "ticket": 4, "document": 5,
              "mail": 6}
_grams = table("crm_search_gram", column("kind"), column("gram"), column("id"))


def gram_query(q):
    """True when ``crm_search_gram`` answers ``q``: 1–2 characters, all non-ASCII and
    without case (the index holds non-ASCII pieces as they are written)."""
    return len(q) < TRIGRAM and caseless(q) and all(ord(ch) > 127 for ch in q)


def match_clause(session, kind, q):
    spec = KINDS[kind]
    model = spec.model
    dialect = session.get_bind(mapper=model.__mapper__).dialect.name
    cols = [getattr(model, f) for f in spec.fields]
    if gram_query(q):
        # 1–2 汉字: the records listed under the query in crm_search_gram. The list is
        # exact (every non-ASCII piece of the searched text, fields apart), so no second
        # look at the values: on PostgreSQL a recheck of ``LIKE`` on an expression has no
        # statistics and turned the plan into a scan (EXPLAIN: 250–330 ms instead of 5 ms)
        return model.id.in_(select(_grams.c.id).where(_grams.c.kind == GRAM_KINDS[kind],
                                                      _grams.c.gram == q))
    if len(q) < TRIGRAM:
        # the short-query scan (module docstring): newest first, stops at COUNT_CAP + 1
        if dialect == "sqlite":
            if caseless(q):
                return or_(*(func.instr(c, q) > 0 for c in cols))
            return or_(*(c.like(_like_pattern(q), escape="\\") for c in cols))
        if caseless(q):
            # PostgreSQL: ``COLLATE "C"`` (LIKE's answer does not depend on the collation)
            # keeps the trigram GIN indexes out: a 1–2 character pattern has no trigram,
            # and a bitmap scan of such an index reads all of it (seen at 200k tickets:
            # 0.5–2 s) instead of the scan backwards along the primary key that stops early
            return or_(*(c.collate("C").like(_like_pattern(q), escape="\\") for c in cols))
        return or_(*(c.ilike(_like_pattern(q), escape="\\") for c in cols))
    if dialect == "sqlite" and len(q) >= TRIGRAM:
        fts = f"crm_search_{kind}"
        rowids = select(text("rowid")).select_from(text(fts)).where(
            text(f"{fts} MATCH :phrase_{kind}").bindparams(**{f"phrase_{kind}": _fts_phrase(q)}))
        return model.id.in_(rowids)
    pattern = _like_pattern(q)
    if dialect == "postgresql":
        return or_(*(c.ilike(pattern, escape="\\") for c in cols))
    # SQLite's LIKE already ignores ASCII case (no lower() per row)
    return or_(*(c.like(pattern, escape="\\") for c in cols))


def _query(session, actor, kind, q, document_scope):
    spec = KINDS[kind]
    join, clause = readable(actor, kind, document_scope)
    stmt = select(spec.model)
    if join is not None:
        stmt = stmt.join(Customer, Customer.id == spec.model.customer_id)
    return stmt.where(clause, match_clause(session, kind, q))


def search(session, actor, q, kinds, limit=DEFAULT_LIMIT, document_scope="restricted"):
    """{kind: {"count": n, "capped": bool, "items": [model rows]}} for each of ``kinds``
    (the caller passes only the kinds the actor may open), newest first."""
    q = clean_query(q)
    out = {}
    for kind in kinds:
        spec = KINDS[kind]
        model = spec.model
        stmt = _query(session, actor, kind, q, document_scope)
        # one pass: the newest COUNT_CAP + 1 hits' ids are the count and the page
        ids = session.scalars(stmt.with_only_columns(model.id).order_by(model.id.desc())
                              .limit(COUNT_CAP + 1)).all()
        count = len(ids)
        items = session.scalars(select(model).where(model.id.in_(ids[:limit]))
                                .order_by(model.id.desc())).all() if ids else []
        out[kind] = {"count": min(count, COUNT_CAP), "capped": count > COUNT_CAP, "items": items}
    return out


# ---- what a hit shows ---------------------------------------------------------------------

def describe(kind, row):
    """(title, detail) of a hit, plain text."""
    if kind == "customer":
        return row.name, " · ".join(x for x in (row.number, row.phone, row.legal_person) if x)
    if kind == "contact":
        return row.name, " · ".join(x for x in (row.office_phone, row.mobile, row.email) if x)
    if kind == "opportunity":
        return row.customer_name, " · ".join(x for x in (row.number, row.summary) if x)
    if kind == "ticket":
        return row.number, row.summary
    if kind == "document":
        return row.name, None
    if kind == "mail":
        return row.subject or str(_l("（无主题）")), row.sender
    raise KeyError(kind)
