"""Every CSV and XLSX file the product writes goes through this module (the one place
for the rules; docs/modules/exports.md):

* **No formula from user text.** A text cell that a spreadsheet would read as a
  formula (first character ``= + - @ | %`` or tab / CR / LF) is neutralised:
  in CSV it gets a leading ``'`` (and ``|`` becomes ``\\|``) — the rule of the
  ``defusedcsv`` package, plus tab/CR/LF; plain numbers such as ``-5`` or
  ``1,234.50`` are left alone. In XLSX every text cell is written as a string cell
  (``t="inlineStr"``; openpyxl would otherwise turn a str starting with ``=`` into a
  formula and ``#N/A`` into an error), and a formula-like one also carries Excel's
  *quote prefix* style, so re-editing the cell in Excel keeps it text. Numbers,
  dates and datetimes are never escaped: they stay typed.
* **Typed values.** Numbers are numeric cells (``Decimal`` with ``#,##0.00``),
  dates and datetimes are real dates with a number format; an aware datetime is
  converted to the configured zone (``BABEL_DEFAULT_TIMEZONE``, Asia/Shanghai) and
  written naive. Naive datetimes are the app's own wall-clock times (it stores
  ``datetime.now()``) and are written as they are — the file shows what the page shows.
* **Files that open well.** The sheet title is made valid for Excel (no
  ``\\ / ? * [ ] :``, at most 31 characters); column widths come from the header and
  the first rows (CJK counts double, capped); the header row is bold and frozen
  and an autofilter covers the data.
* **Streaming, flat memory.** CSV is produced a few hundred rows at a time; XLSX
  uses openpyxl's write-only mode (rows go to a temporary file); only the first
  ``sample_rows`` rows are held, to size the columns.

Pure functions: no Flask request here; the views pass the zone in.
"""
import csv
import io
import math
import numbers
import os
import re
import tempfile
import unicodedata
from datetime import date, datetime
from decimal import Decimal
from flask_babel import lazy_gettext as _l
from itertools import chain, islice
from zoneinfo import ZoneInfo

CSV_MIME = "text/csv; charset=utf-8"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
BOM = "\ufeff"
DEFAULT_ZONE = "Asia/Shanghai"

DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
MONEY_FORMAT = "#,##0.00"

#: first characters that make a spreadsheet read a cell as a formula (or DDE)
FORMULA_TRIGGERS = frozenset("=+-@|%\t\r\n")
_PLAIN_NUMBER = re.compile(r"-?[0-9,.]+")   # defusedcsv: "-5", "1,234.50" stay as they are
XLSX_MAX_CELL = 32767                       # Excel's limit on the characters in a cell
_XLSX_ILLEGAL = re.compile(r"[\000-\010\013\014\016-\037]")  # not allowed in XML
_SHEET_BAD = str.maketrans({"/": "／", "\\": "＼", "?": "？", "*": "＊", "[": "【",
                            "]": "】", ":": "："})
SHEET_MAX = 31
MIN_WIDTH, MAX_WIDTH, SAMPLE_ROWS = 8, 60, 200


# ---- the rule ---------------------------------------------------------------------

def is_formula_like(text):
    """True when a spreadsheet could read this text as a formula."""
    return bool(text) and text[0] in FORMULA_TRIGGERS and not _PLAIN_NUMBER.fullmatch(text)


def neutralise(text):
    """The CSV form of a text cell: ``'`` in front of formula-like text (defusedcsv)."""
    if is_formula_like(text):
        return "'" + text.replace("|", "\\|")
    return text


def _missing(value):
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, NaT
    except (TypeError, ValueError):
        return False


def _number(value):
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def local_naive(value, zone=None):
    """An aware datetime in ``zone`` (default Asia/Shanghai) without tzinfo; naive as is."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(ZoneInfo(zone or DEFAULT_ZONE)).replace(tzinfo=None)
    return value


def cell_text(value, zone=None):
    """A value as text: dates YYYY-MM-DD, datetimes YYYY-MM-DD HH:MM:SS, money two
    decimals, booleans 是/否, None empty. (Not escaped: see :func:`csv_value`.)"""
    if _missing(value):
        return ""
    if isinstance(value, datetime):
        return local_naive(value, zone).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, bool):
        return str(_l("是") if value else _l("否"))
    return str(value)


def csv_value(value, zone=None):
    """A CSV cell: typed values as text, text neutralised."""
    if type(value) is str:  # the common case first (100k-row exports)
        return neutralise(value) if value and value[0] in FORMULA_TRIGGERS else value
    if _missing(value) or _number(value) or isinstance(value, (date, bool)):
        return cell_text(value, zone)
    return neutralise(str(value))


def csv_cells(row, zone=None):
    """A row's CSV cells, :func:`csv_value` applied where it changes something: plain
    text that no spreadsheet reads as a formula, ints and None go to ``csv.writer``
    untouched (it writes ``str(int)`` and ``""`` for None, what :func:`csv_value`
    gives), so the 800k cells of a 100k-row export mostly cost one type check."""
    out = list(row)
    for i, v in enumerate(out):
        t = type(v)
        if t is str:
            if v and v[0] in FORMULA_TRIGGERS:
                out[i] = neutralise(v)
        elif t is int or v is None:
            continue
        else:
            out[i] = csv_value(v, zone)
    return out


_SEP = "\x00"
_TRIGGER_AFTER_SEP = re.compile(
    "\x00[" + re.escape("".join(sorted(FORMULA_TRIGGERS))) + "]")
_PASS_THROUGH = {int, type(None)}       # csv.writer writes str(int) and "" itself
_TEXT = {str, type(None)}


def csv_column(values, zone=None):
    """One column's CSV cells (what :func:`csv_cells` gives for each of them)."""
    kinds = set(map(type, values))
    if kinds <= _PASS_THROUGH:
        return values
    if kinds <= _TEXT:
        # nearly every column has no cell starting with a trigger: one regex over the
        # joined cells (C speed) says so; a hit (or a NUL inside a cell) → per cell
        if not _TRIGGER_AFTER_SEP.search(_SEP + _SEP.join(filter(None, values))):
            return values
        triggers = FORMULA_TRIGGERS
        return [neutralise(v) if v and v[0] in triggers else v for v in values]
    return [v if (type(v) is int or v is None) else csv_value(v, zone) for v in values]


# ---- CSV ----------------------------------------------------------------------------

class CsvWriter:
    """``csv.writer`` whose every cell goes through :func:`csv_value`."""

    def __init__(self, fh, zone=None, **fmt):
        self._writer = csv.writer(fh, **fmt)
        self.zone = zone

    def writerow(self, row):
        return self._writer.writerow(csv_cells(row, self.zone))

    def writerows(self, rows, uniform=False):
        """Column by column when the rows have one width (an export's chunk): a column
        of plain text, ints and None — nearly all of them — costs one comprehension
        (text) or nothing (ints), not a Python call per cell; the same cells as
        :func:`csv_cells` (tests/test_export_safety.py)."""
        zone = self.zone
        if isinstance(rows, _Columns):
            self._writer.writerows(zip(*[col if i in rows.decoded else csv_column(col, zone)
                                         for i, col in enumerate(rows)]))
            return
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return
        width = len(rows[0])
        if width == 0 or (not uniform and any(len(r) != width for r in rows)):
            self._writer.writerows([csv_cells(row, zone) for row in rows])
            return
        self._writer.writerows(zip(*[csv_column(col, zone) for col in zip(*rows)]))


def csv_writer(fh, zone=None, **fmt):
    return CsvWriter(fh, zone, **fmt)


def csv_text(header, rows=(), zone=None, bom=True):
    """A small CSV as one str (e.g. an import template)."""
    buf = io.StringIO()
    w = csv_writer(buf, zone)
    w.writerow(header)
    w.writerows(rows)
    return (BOM if bom else "") + buf.getvalue()


class Chunks:
    """Rows that come in lists already (a database result's ``partitions()``): the
    CSV writer takes each list as it is, never touching a row on its own; iterated,
    it gives the rows one by one (XLSX)."""

    def __init__(self, chunks):
        self.chunks = chunks

    def __iter__(self):
        return chain.from_iterable(self.chunks)


class StatementRows(Chunks):
    """An export's rows as one SQL statement of text and integer columns, run when the
    response streams: on PostgreSQL the CSV is written by the database itself
    (``COPY (…) TO STDOUT WITH (FORMAT csv)``, the formula rule as SQL:
    :func:`neutralised_sql`), no Python object per row; on SQLite the rows are the
    DBAPI cursor's tuples, in lists for the column-wise CSV writer; when a column is
    neither text nor an integer, SQLAlchemy's partitions, as :class:`Chunks`.

    ``connect``: a callable giving the SQLAlchemy connection to run on (the request's
    session, so the export sees the list's transaction)."""

    def __init__(self, connect, stmt, chunk_rows=1000, coded=None):
        self.connect = connect
        self.stmt = stmt
        self.chunk_rows = chunk_rows
        #: optional ``(code_stmt, decoders)`` for the cursor path: ``code_stmt`` selects
        #: codes (ids, status codes) where ``stmt`` joins their texts, and
        #: ``decoders(conn)`` gives ``{column index: {code: text}}`` (small tables:
        #: dictionary items, users, labels). The codes are decoded per chunk, at C speed,
        #: instead of joined per row (SQLite, 100k customers: 130 → 80 ms of reading).
        self.coded = coded

    @property
    def chunks(self):
        conn = self.connect()
        if conn.dialect.name == "postgresql":
            # every row is read: plan the cursor for all of them (hash joins), not for
            # the first tenth (PostgreSQL's default for a cursor)
            conn.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
        if conn.dialect.name == "sqlite" and self._columns() is not None:
            return self._sqlite_chunks(conn)
        # the option on this statement only (Connection.execution_options would set it on
        # the session's connection for the rest of its transaction)
        return conn.execute(self.stmt, execution_options={
            "yield_per": self.chunk_rows}).partitions()

    def _sqlite_chunks(self, conn, csv=False):
        """Text and integer columns need no result processing on SQLite: the rows are
        read from the DBAPI cursor as they are (SQLAlchemy still binds the filters).
        ``csv``: chunks of columns (what the CSV writer takes), the decoded texts
        already in their CSV form."""
        decoders = {}
        stmt = self.stmt
        if self.coded is not None:
            stmt, make = self.coded
            decoders = {i: _Decoder({code: neutralise(text) if csv and text else text
                                     for code, text in table.items()},
                                    keep=isinstance(table, Labels), csv=csv)
                        for i, table in make(conn).items()}
        result = conn.execute(stmt)
        try:
            while True:
                rows = result.cursor.fetchmany(self.chunk_rows)
                if not rows:
                    return
                if not decoders and not csv:
                    yield rows
                    continue
                cols = list(zip(*rows))
                for i, table in decoders.items():
                    cols[i] = list(map(table.__getitem__, cols[i]))
                yield _Columns(cols, decoded=decoders.keys()) if csv else list(zip(*cols))
        finally:
            result.close()

    def csv_chunks(self):
        """For the CSV writer: chunks of columns on SQLite, of rows elsewhere."""
        conn = self.connect()
        if conn.dialect.name == "sqlite" and self._columns() is not None:
            return self._sqlite_chunks(conn, csv=True)
        return self.chunks

    def _columns(self):
        """The columns for COPY (text ones under the formula rule), or None when one is
        neither text nor an integer (dates, money, booleans: formatted by cell_text)."""
        from sqlalchemy import Boolean, Enum, Integer, String

        columns = []
        for col in self.stmt.selected_columns:
            if isinstance(col.type, String) and not isinstance(col.type, Enum):
                columns.append(neutralised_sql(col))
            elif isinstance(col.type, Integer) and not isinstance(col.type, Boolean):
                columns.append(col)
            else:
                return None
        return columns

    def copy_csv(self):
        """The CSV rows (no header, lines end in LF) as byte chunks from PostgreSQL's
        COPY, or None where that does not apply. The output goes to an anonymous
        temporary file first and is streamed from there: memory stays flat, and the
        connection is never left in the middle of a COPY by a client that goes away."""
        conn = self.connect()
        columns = self._columns() if conn.dialect.name == "postgresql" else None
        if columns is None:
            return None
        stmt = self.stmt.with_only_columns(*columns, maintain_column_froms=True)
        compiled = stmt.compile(dialect=conn.dialect,
                                compile_kwargs={"render_postcompile": True})
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            query = cursor.mogrify(str(compiled), compiled.params)    # bytes, quoted
            out = tempfile.TemporaryFile()
            try:
                cursor.copy_expert(b"COPY (" + query + b") TO STDOUT WITH (FORMAT csv)",
                                   out, size=COPY_BLOCK)
            except BaseException:
                out.close()
                raise
        finally:
            cursor.close()
        return _file_chunks(out)


COPY_BLOCK = 1 << 16


class _Columns(list):
    """A chunk as its columns; ``decoded``: the indexes already in CSV form."""

    def __init__(self, cols, decoded=()):
        super().__init__(cols)
        self.decoded = frozenset(decoded)


class Labels(dict):
    """A decoder table (``StatementRows.coded``) whose unknown codes show as
    themselves, like ``CASE … ELSE code``; in a plain dict an unknown code (a
    dangling id) is empty, like an outer join that finds nothing."""


class _Decoder(dict):
    def __init__(self, table, keep, csv=False):
        super().__init__(table)
        self.keep = keep
        self.csv = csv

    def __missing__(self, code):
        if not self.keep:
            return None
        # an unknown code shown as itself is user data too: in CSV form like every cell
        return neutralise(code) if self.csv and isinstance(code, str) and code else code


def _file_chunks(fh):
    with fh:
        fh.seek(0)
        while True:
            block = fh.read(COPY_BLOCK)
            if not block:
                return
            yield block


def neutralised_sql(expr):
    """:func:`neutralise` as a PostgreSQL expression over a text column, and ``''`` as
    NULL (COPY writes NULL as an empty field, ``''`` as ``""``; ``csv.writer`` writes
    both as an empty field). tests/test_export_safety.py holds it to the Python rule."""
    from sqlalchemy import String, and_, case, func, literal, literal_column

    triggers = "".join(sorted(FORMULA_TRIGGERS - {"-"})) + "-"     # "-" last: no range
    first = literal_column("'^[" + triggers.replace("'", "''") + "]'")
    number = literal_column("'" + "^" + _PLAIN_NUMBER.pattern + "$" + "'")
    formula = and_(expr.op("~")(first), expr.op("!~")(number))
    return func.nullif(case((formula, literal("'", String()) + func.replace(expr, "|", "\\|")),
                            else_=expr), "")


def _chunks(rows, chunk_rows):
    if isinstance(rows, StatementRows):
        yield from rows.csv_chunks()
        return
    if isinstance(rows, Chunks):
        yield from rows.chunks
        return
    it = iter(rows)
    while True:
        chunk = list(islice(it, chunk_rows))
        if not chunk:
            return
        yield chunk


def csv_stream(header, rows, chunk_rows=500, zone=None):
    """Yield a UTF-8 CSV with BOM, a few hundred rows per chunk (flat memory);
    ``rows`` an iterable of rows, :class:`Chunks` or :class:`StatementRows`."""
    copy = rows.copy_csv() if isinstance(rows, StatementRows) else None
    buf = io.StringIO()
    if copy is not None:                    # PostgreSQL wrote the rows: LF line ends
        csv_writer(buf, zone, lineterminator="\n").writerow(header)
        yield (BOM + buf.getvalue()).encode("utf-8")
        yield from copy
        return
    writer = csv_writer(buf, zone)
    writer.writerow(header)
    yield (BOM + buf.getvalue()).encode("utf-8")
    buf.seek(0)
    buf.truncate()
    uniform = isinstance(rows, Chunks)      # a result's rows: one width
    for chunk in _chunks(rows, chunk_rows):
        writer.writerows(chunk, uniform)
        yield buf.getvalue().encode("utf-8")
        buf.seek(0)
        buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode("utf-8")


# ---- XLSX ---------------------------------------------------------------------------

def sheet_title(title):
    """A valid Excel sheet name: ``\\ / ? * [ ] :`` become their full-width forms, no
    leading/trailing apostrophe, at most 31 characters, never empty."""
    text = _XLSX_ILLEGAL.sub("", str(title or "")).translate(_SHEET_BAD)
    text = text.replace("\r", " ").replace("\n", " ").replace("\t", " ")
    text = text.strip().strip("'").strip()[:SHEET_MAX].strip().strip("'")
    if not text:
        return "Sheet1"
    if text.lower() == "history":  # reserved by Excel
        return text + "_"
    return text


def xlsx_text(value):
    """Text as an XLSX string cell can hold it (no XML-illegal control characters,
    at most 32767 characters)."""
    return _XLSX_ILLEGAL.sub("", str(value))[:XLSX_MAX_CELL]


def display_width(text):
    """Columns a text needs: CJK / full-width characters count 2; the longest line."""
    best = 0
    for line in str(text).split("\n"):
        w = 0
        for ch in line:
            if unicodedata.combining(ch):
                continue
            w += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        best = max(best, w)
    return best


def _shown(value, zone=None):
    """The text a cell shows (for sizing the column)."""
    if isinstance(value, Decimal) and not _missing(value):
        return f"{value:,.2f}"
    return cell_text(value, zone)


def column_widths(header, sample, zone=None, minimum=MIN_WIDTH, maximum=MAX_WIDTH):
    """Widths from the header and the sample rows (+2 padding, capped)."""
    n = max([len(header)] + [len(r) for r in sample])
    widths = [0] * n
    for i, h in enumerate(header):
        widths[i] = display_width(h)
    for row in sample:
        for i, v in enumerate(row):
            if widths[i] < maximum:
                widths[i] = max(widths[i], display_width(_shown(v, zone)))
    return [max(minimum, min(maximum, w + 2)) for w in widths]


class _XlsxCells:
    """Typed openpyxl cells for one write-only sheet."""

    def __init__(self, ws, zone=None):
        from openpyxl.cell import WriteOnlyCell
        self.ws, self.zone, self.Cell = ws, zone, WriteOnlyCell

    def text(self, value, bold=False):
        c = self.Cell(self.ws, value=xlsx_text(value))
        c.data_type = "s"   # not openpyxl's guess ("=…" → formula, "#N/A" → error)
        if c.value[:1] in FORMULA_TRIGGERS:
            c.quotePrefix = True     # Excel keeps it text when the cell is edited
        if bold:
            from openpyxl.styles import Font
            c.font = Font(bold=True)
        return c

    def typed(self, value, fmt):
        c = self.Cell(self.ws, value=value)
        c.number_format = fmt
        return c

    def cell(self, v):
        if type(v) is str:  # the common case first (100k-row exports)
            if v and (v[0] in FORMULA_TRIGGERS or v[0] == "#" or _XLSX_ILLEGAL.search(v)
                      or len(v) > XLSX_MAX_CELL):
                return self.text(v)
            return v    # openpyxl keeps any other str a plain string cell
        if _missing(v):
            return None
        if isinstance(v, bool):
            return "是" if v else "否"
        if isinstance(v, datetime):
            return self.typed(local_naive(v, self.zone), DATETIME_FORMAT)
        if isinstance(v, date):
            return self.typed(v, DATE_FORMAT)
        if isinstance(v, Decimal):
            return self.typed(v, MONEY_FORMAT) if v.is_finite() else None
        if _number(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if not isinstance(v, (int, float)):   # numpy scalars and the like
                v = v.item() if hasattr(v, "item") else float(v)
            return v
        return self.cell(str(v))


def xlsx_stream(title, header, rows, widths=None, zone=None, sample_rows=SAMPLE_ROWS,
                chunk_bytes=64 * 1024):
    """Yield an XLSX (one sheet ``title``) built with openpyxl's write-only mode: rows go
    to a temporary file as they come, not into memory; then the file in chunks.
    Column widths come from ``widths`` or from the header and the first ``sample_rows``
    rows; the header is bold and frozen; an autofilter covers header + data."""
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    rows = iter(rows)
    first = list(islice(rows, sample_rows))
    header = [str(h) for h in header]
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title=sheet_title(title))
    for i, w in enumerate(widths or column_widths(header, first, zone)):
        ws.column_dimensions[get_column_letter(i + 1)].width = w
    ws.freeze_panes = "A2"
    cells = _XlsxCells(ws, zone)
    ws.append([cells.text(h, bold=True) for h in header])
    n, ncols = 0, max(len(header), 1)
    for row in chain(first, rows):
        row = list(row)
        ws.append([cells.cell(v) for v in row])
        n += 1
        ncols = max(ncols, len(row))
    ws.auto_filter.ref = f"A1:{get_column_letter(ncols)}{n + 1}"
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


def xlsx_bytes(title, header, rows, **kw):
    return b"".join(xlsx_stream(title, header, rows, **kw))
