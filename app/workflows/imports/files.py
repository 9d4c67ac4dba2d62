"""Reading an uploaded file: CSV (UTF-8, UTF-8 with BOM, GBK/GB18030) or XLSX,
streamed row by row."""
import codecs
import csv
from datetime import date, datetime, time

from flask_babel import lazy_gettext as _l

from ..errors import ValidationError
from .columns import EXTENSIONS

# ---- reading files --------------------------------------------------------------------------

def detect_encoding(path):
    """'utf-8-sig' when the whole file decodes as UTF-8 (with or without BOM), else
    'gb18030' (a superset of GBK/GB2312: what Excel in China writes). Streamed."""
    dec = codecs.getincrementaldecoder("utf-8-sig")()
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            try:
                dec.decode(chunk, final=not chunk)
            except UnicodeDecodeError:
                return "gb18030"
            if not chunk:
                return "utf-8-sig"


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d") if value.time() == time() else value.isoformat(" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value).replace("\u3000", " ").strip()


def file_format(file_name):
    ext = (file_name or "").rsplit(".", 1)[-1].lower() if "." in (file_name or "") else ""
    if ext not in EXTENSIONS:
        raise ValidationError(_l("只支持 CSV（.csv）和 Excel（.xlsx）文件。"), field="file")
    return "xlsx" if ext.startswith("xls") else "csv"


def iter_rows(path, fmt):
    """Yield (row number, [cell text]) — row 1 is the header; blank rows skipped."""
    if fmt == "xlsx":
        from openpyxl import load_workbook
        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception:
            raise ValidationError(_l("无法读取这个 Excel 文件：请确认它是 .xlsx 格式且未加密。"),
                                  field="file")
        try:
            ws = wb.worksheets[0]
            for n, row in enumerate(ws.iter_rows(values_only=True), 1):
                cells = [_cell(v) for v in row]
                if any(cells):
                    yield n, cells
        finally:
            wb.close()
        return
    enc = detect_encoding(path)
    with open(path, encoding=enc, newline="") as fh:
        first = fh.readline()
        delimiter = "\t" if first.count("\t") > first.count(",") else ","
        fh.seek(0)
        try:
            for n, row in enumerate(csv.reader(fh, delimiter=delimiter), 1):
                cells = [c.replace("\u3000", " ").strip() for c in row]
                if any(cells):
                    yield n, cells
        except csv.Error:
            raise ValidationError(_l("CSV 文件格式有误（引号不匹配），无法读取。"), field="file")
