"""Step 1, the staging file: the parsed rows, their errors and duplicates of one
import in a small SQLite file ``<store>/<job id>/staging.sqlite3`` (streamed: memory
does not grow with the file), and the duplicate keys (normalised names and codes)."""
import json
import os
import re
import sqlite3
import unicodedata
from decimal import Decimal

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ...models import (
    Contact, Customer, CustomerNumberAlias,
)
from .. import customers as cwf
from ..errors import ValidationError
from .columns import (
    CHUNK, CONTACT, CUSTOMER, IGNORED_FIELDS, MAX_ROWS, MONEY_COLUMNS, _apply_mapping,
    field_label,
)
from .files import iter_rows
from .validate import _Lookups, _validate_contact, _validate_customer

# ---- normalisation (duplicate keys) -----------------------------------------------------------

_SUFFIXES = ("股份有限公司", "有限责任公司", "有限公司", "股份公司", "公司")
_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def normalize_name(name):
    """Key for duplicate names: NFKC (full-width → half-width), lower case, no spaces or
    punctuation, and 有限公司 / 有限责任公司 / (股份)有限公司 / 公司 treated alike."""
    if not name:
        return None
    s = _PUNCT.sub("", unicodedata.normalize("NFKC", str(name)).lower())
    for suffix in _SUFFIXES:
        if s.endswith(suffix) and len(s) > len(suffix):
            s = s[:-len(suffix)]
            break
    return s or None


def normalize_code(value):
    """营业执照注册号 / 国税登记号: NFKC, no spaces or dashes, upper case."""
    if not value:
        return None
    s = re.sub(r"[\s\-_]", "", unicodedata.normalize("NFKC", str(value))).upper()
    return s or None


# ---- staging (a SQLite file per import) ---------------------------------------------------------

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE rows (
    line INTEGER PRIMARY KEY, data TEXT NOT NULL, raw TEXT NOT NULL, errors TEXT, missing TEXT,
    k_number TEXT, k_license TEXT, k_tax TEXT, k_name TEXT, customer_id INTEGER,
    dup_id INTEGER, dup_by TEXT, dup_of INTEGER, blocked TEXT);
CREATE TABLE existing (id INTEGER, number TEXT, name TEXT, license TEXT, tax TEXT,
    manager_id INTEGER, status TEXT);
CREATE TABLE contacts (id INTEGER, customer_id INTEGER, k_name TEXT);
"""
_INDEXES = """
CREATE INDEX ix_rows_number ON rows (k_number, line);
CREATE INDEX ix_rows_license ON rows (k_license, line);
CREATE INDEX ix_rows_tax ON rows (k_tax, line);
CREATE INDEX ix_rows_name ON rows (k_name, line);
CREATE INDEX ix_rows_dup ON rows (dup_id, line);
CREATE INDEX ix_rows_cust ON rows (customer_id, k_name, line);
CREATE INDEX ix_ex_number ON existing (number);
CREATE INDEX ix_ex_license ON existing (license);
CREATE INDEX ix_ex_tax ON existing (tax);
CREATE INDEX ix_ex_name ON existing (name);
CREATE INDEX ix_ex_id ON existing (id);
CREATE INDEX ix_contacts ON contacts (customer_id, k_name);
"""


def _connect(path):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-8000")   # ≤ 8 MB page cache
    return conn


def job_dir(store_dir, job_id):
    return os.path.join(store_dir, str(int(job_id)))


def _to_json(values):
    return json.dumps({k: (str(v) if isinstance(v, Decimal) else v) for k, v in values.items()},
                      ensure_ascii=False)


def _from_json(text):
    values = json.loads(text)
    for k in MONEY_COLUMNS:
        if values.get(k) is not None:
            values[k] = Decimal(values[k])
    return values




def _stage(session, actor, kind, fmt, src, staging, mapping, options, progress):
    conn = _connect(staging)
    try:
        conn.executescript(_SCHEMA)
        rows = iter_rows(src, fmt)
        try:
            _, header = next(rows)
        except StopIteration:
            raise ValidationError(_l("文件中没有数据。"), field="file")
        cols = _apply_mapping(kind, header, mapping)
        fields = set(cols.values())
        if kind == CUSTOMER and "name" not in fields:
            raise ValidationError(_l("文件中找不到“名称”列：请检查表头，或指定列对应关系。"),
                                  field="mapping")
        if kind == CONTACT and not fields & {"customer_number", "customer_name", "customer_id"}:
            raise ValidationError(_l("文件中找不到“客户编号”或“客户名称”列：联系人必须指明所属客户。"),
                                  field="mapping")
        if kind == CONTACT and "name" not in fields:
            raise ValidationError(_l("文件中找不到“姓名”列。"), field="mapping")
        look = _Lookups(session)
        total = 0
        batch = []
        for line, cells in rows:
            total += 1
            if total > MAX_ROWS:
                raise ValidationError(_l("一次最多导入 %(n)d 行，请分成几个文件。", n=MAX_ROWS),
                                      field="file")
            raw = {f: (cells[i] if i < len(cells) else "") for i, f in cols.items()
                   if f not in IGNORED_FIELDS}
            batch.append(_stage_row(session, actor, kind, look, line, raw, options))
            if len(batch) >= CHUNK:
                _insert_rows(conn, batch)
                batch = []
                progress("parse", total)
        _insert_rows(conn, batch)
        if total == 0:
            raise ValidationError(_l("文件中只有表头，没有数据行。"), field="file")
        conn.executescript(_INDEXES)
        if kind == CUSTOMER:
            _load_existing_customers(session, conn)
            _customer_duplicates(conn, actor)
        else:
            _load_existing_customers(session, conn)
            _resolve_contact_customers(conn, actor)
            _load_existing_contacts(session, conn)
            _contact_duplicates(conn)
        conn.execute("INSERT INTO meta VALUES ('columns', ?)", (json.dumps(
            {str(i): f for i, f in cols.items()}),))
        conn.commit()
        return _summary(session, conn, kind, header, cols, total)
    finally:
        conn.close()


def _stage_row(session, actor, kind, look, line, raw, options):
    if kind == CUSTOMER:
        values, errors, missing = _validate_customer(session, actor, look, raw, options)
        keys = (raw.get("number") or None, normalize_code(raw.get("license_no")),
                normalize_code(raw.get("national_tax_no")), normalize_name(raw.get("name")))
    else:
        values, errors, missing = _validate_contact(raw)
        keys = (raw.get("customer_number") or None, raw.get("customer_id") or None, None,
                normalize_name(raw.get("customer_name")))
    return (line, _to_json(values or {}), json.dumps(raw, ensure_ascii=False),
            json.dumps(errors, ensure_ascii=False) if errors else None,
            json.dumps(missing) if missing else None, *keys)


def _insert_rows(conn, batch):
    if batch:
        conn.executemany("INSERT INTO rows (line, data, raw, errors, missing, k_number, "
                         "k_license, k_tax, k_name) VALUES (?,?,?,?,?,?,?,?,?)", batch)


def _load_existing_customers(session, conn):
    """Stream the CRM's customers (not merged ones) and the alias numbers into staging."""
    C = Customer.__table__
    stmt = (select(C.c.id, C.c.number, C.c.name, C.c.license_no, C.c.national_tax_no,
                   C.c.manager_id, C.c.status).where(C.c.status != cwf.MERGED)
            .execution_options(yield_per=CHUNK))
    batch = []
    for r in session.execute(stmt):
        batch.append((r[0], r[1], normalize_name(r[2]), normalize_code(r[3]),
                      normalize_code(r[4]), r[5], r[6]))
        if len(batch) >= CHUNK:
            conn.executemany("INSERT INTO existing VALUES (?,?,?,?,?,?,?)", batch)
            batch = []
    A = CustomerNumberAlias.__table__
    for r in session.execute(select(A.c.number, C.c.id, C.c.manager_id, C.c.status)
                             .join(C, C.c.id == A.c.customer_id)):
        batch.append((r[1], r[0], None, None, None, r[2], r[3]))
    if batch:
        conn.executemany("INSERT INTO existing VALUES (?,?,?,?,?,?,?)", batch)


def _customer_duplicates(conn, actor):
    # 1. rows of the file matching earlier valid rows (by any key)
    for key in ("k_number", "k_license", "k_tax", "k_name"):
        conn.execute(f"""
            UPDATE rows SET dup_of = (SELECT MIN(r2.line) FROM rows r2
                WHERE r2.{key} = rows.{key} AND r2.line < rows.line AND r2.errors IS NULL)
            WHERE errors IS NULL AND dup_of IS NULL AND {key} IS NOT NULL""")
    # 2. existing customers: 客户编号 > 营业执照注册号 > 国税登记号 > 名称
    for key, col, by in (("k_number", "number", "number"), ("k_license", "license", "license"),
                         ("k_tax", "tax", "tax"), ("k_name", "name", "name")):
        conn.execute(f"""
            UPDATE rows SET dup_by = ?, dup_id = (SELECT MIN(e.id) FROM existing e
                WHERE e.{col} = rows.{key})
            WHERE dup_id IS NULL AND {key} IS NOT NULL
              AND EXISTS (SELECT 1 FROM existing e WHERE e.{col} = rows.{key})""", (by,))
    # 3. two rows updating the same existing customer: the later one is a duplicate
    conn.execute("""
        UPDATE rows SET dup_of = (SELECT MIN(r2.line) FROM rows r2
            WHERE r2.dup_id = rows.dup_id AND r2.line < rows.line AND r2.errors IS NULL)
        WHERE errors IS NULL AND dup_of IS NULL AND dup_id IS NOT NULL""")
    # 4. duplicates that can only be skipped
    conn.execute("""UPDATE rows SET blocked = 'not_normal' WHERE dup_id IN
                    (SELECT id FROM existing WHERE status != 'normal')""")
    if not (actor.is_admin or actor.is_supervisor):
        conn.execute("""UPDATE rows SET blocked = 'foreign' WHERE blocked IS NULL AND dup_id IN
                        (SELECT id FROM existing WHERE manager_id != ?)""", (actor.id,))
    _missing_to_errors(conn, "dup_id IS NULL", cwf.LABELS)


def _chunks(conn, columns, where):
    """Staged rows in chunks (keyset paging: the caller may update rows in between)."""
    last = -1
    while True:
        rows = conn.execute(f"SELECT line, {columns} FROM rows WHERE line > ? AND ({where}) "
                            f"ORDER BY line LIMIT ?", (last, CHUNK)).fetchall()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _missing_to_errors(conn, where, labels):
    """Required fields missing: an error for the rows that would be created."""
    for chunk in _chunks(conn, "missing, errors", f"missing IS NOT NULL AND {where}"):
        updates = []
        for line, missing, old in chunk:
            errors = json.loads(old) if old else {}
            for col in json.loads(missing):
                field = col[:-3] if col.endswith("_id") else col
                errors.setdefault(field, str(_l("%(field)s不能为空。", field=labels[field])))
            updates.append((json.dumps(errors, ensure_ascii=False), line))
        conn.executemany("UPDATE rows SET errors = ? WHERE line = ?", updates)


def _resolve_contact_customers(conn, actor):
    """The customer of each contact row: by 客户编号, customer_id, else a unique name."""
    conn.execute("""UPDATE rows SET customer_id = (SELECT MIN(e.id) FROM existing e
                    WHERE e.number = rows.k_number) WHERE k_number IS NOT NULL""")
    conn.execute("""UPDATE rows SET customer_id = (SELECT MIN(e.id) FROM existing e
                    WHERE e.id = CAST(rows.k_license AS INTEGER))
                    WHERE customer_id IS NULL AND k_number IS NULL AND k_license IS NOT NULL""")
    conn.execute("""UPDATE rows SET blocked = 'ambiguous' WHERE customer_id IS NULL
                    AND k_number IS NULL AND k_license IS NULL AND k_name IS NOT NULL AND
                    (SELECT COUNT(DISTINCT e.id) FROM existing e WHERE e.name = rows.k_name) > 1""")
    conn.execute("""UPDATE rows SET customer_id = (SELECT MIN(e.id) FROM existing e
                    WHERE e.name = rows.k_name) WHERE customer_id IS NULL AND blocked IS NULL
                    AND k_number IS NULL AND k_license IS NULL AND k_name IS NOT NULL""")
    conn.execute("""UPDATE rows SET blocked = 'not_found' WHERE customer_id IS NULL
                    AND blocked IS NULL""")
    conn.execute("""UPDATE rows SET blocked = 'not_normal' WHERE blocked IS NULL AND customer_id IN
                    (SELECT id FROM existing WHERE status != 'normal')""")
    if not (actor.is_admin or actor.is_supervisor):
        conn.execute("""UPDATE rows SET blocked = 'foreign' WHERE blocked IS NULL AND customer_id IN
                        (SELECT id FROM existing WHERE manager_id != ?)""", (actor.id,))
    # contact rows re-use k_name for the contact's own name from here on
    for chunk in _chunks(conn, "data", "1 = 1"):
        conn.executemany("UPDATE rows SET k_name = ? WHERE line = ?",
                         [(normalize_name(json.loads(d).get("name")) or None, line)
                          for line, d in chunk])
    # a customer problem is an error of the row (on its customer column)
    for chunk in _chunks(conn, "blocked, errors, raw", "blocked IS NOT NULL"):
        _customer_errors(conn, chunk)


def _customer_errors(conn, chunk):
    updates = []
    for line, blocked, errors, raw in chunk:
        errs = json.loads(errors) if errors else {}
        raw = json.loads(raw)
        col = ("customer_number" if raw.get("customer_number") else
               "customer_id" if raw.get("customer_id") else "customer_name")
        who = raw.get(col) or ""
        errs[col] = str({
            "ambiguous": _l("有多个名称相同的客户“%(c)s”，请填写客户编号。", c=who),
            "not_found": _l("客户“%(c)s”不存在。", c=who) if who else _l("请填写客户编号或客户名称。"),
            "not_normal": _l("客户“%(c)s”已流失或已合并，不能导入联系人。", c=who),
            "foreign": _l("只能为自己负责的客户导入联系人。"),
        }[blocked])
        updates.append((json.dumps(errs, ensure_ascii=False), line))
    conn.executemany("UPDATE rows SET errors = ?, blocked = NULL WHERE line = ?", updates)


def _load_existing_contacts(session, conn):
    """Contacts of the customers the file refers to (chunks of ids), for duplicates."""
    ids = [r[0] for r in conn.execute("SELECT DISTINCT customer_id FROM rows "
                                      "WHERE customer_id IS NOT NULL")]
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        rows = session.execute(select(Contact.id, Contact.customer_id, Contact.name)
                               .where(Contact.customer_id.in_(part))).all()
        conn.executemany("INSERT INTO contacts VALUES (?,?,?)",
                         [(r[0], r[1], normalize_name(r[2])) for r in rows])


def _contact_duplicates(conn):
    conn.execute("""
        UPDATE rows SET dup_of = (SELECT MIN(r2.line) FROM rows r2 WHERE r2.errors IS NULL
            AND r2.customer_id = rows.customer_id AND r2.k_name = rows.k_name
            AND r2.line < rows.line)
        WHERE errors IS NULL AND k_name IS NOT NULL""")
    conn.execute("""
        UPDATE rows SET dup_by = 'contact', dup_id = (SELECT MIN(c.id) FROM contacts c
            WHERE c.customer_id = rows.customer_id AND c.k_name = rows.k_name)
        WHERE k_name IS NOT NULL AND EXISTS (SELECT 1 FROM contacts c
            WHERE c.customer_id = rows.customer_id AND c.k_name = rows.k_name)""")
    _missing_to_errors(conn, "dup_id IS NULL", cwf.CONTACT_LABELS)


def _summary(session, conn, kind, header, cols, total):
    one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    errors = one("SELECT COUNT(*) FROM rows WHERE errors IS NOT NULL")
    in_file = one("SELECT COUNT(*) FROM rows WHERE errors IS NULL AND dup_of IS NOT NULL")
    dups = one("SELECT COUNT(*) FROM rows WHERE errors IS NULL AND dup_of IS NULL "
               "AND dup_id IS NOT NULL")
    return {
        "kind": kind, "total": total, "errors": errors, "in_file_duplicates": in_file,
        "duplicates": dups, "new": total - errors - in_file - dups,
        "columns": [{"index": i, "header": h, "field": cols.get(i),
                     "label": field_label(kind, cols[i]) if i in cols else None}
                    for i, h in enumerate(header)],
    }
