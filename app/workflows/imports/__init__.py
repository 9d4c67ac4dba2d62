"""导入客户 / 导入联系人 (bulk import from CSV/XLSX) and 合并客户 (merge two customers).

Import in two steps, both plain functions over a session + ``Actor``:

1. ``create_import`` reads the uploaded file (CSV in UTF-8, UTF-8 with BOM or
   GBK/GB18030, or XLSX), maps its columns to fields (Chinese headers of our
   forms/exports and English API field names are recognised; ``mapping``
   overrides), validates EVERY row with the customer module's own rules
   (``customers.clean`` / ``customers.clean_contact``) and finds duplicates — all
   WITHOUT writing a customer. The parsed rows, their errors and duplicates are
   staged in a small SQLite file ``<store>/<job id>/staging.sqlite3`` (streamed:
   memory does not grow with the file), and an ``ImportJob`` (status
   ``preview``) records who/when/file/counts.
2. ``commit`` applies the user's choice for duplicates (``skip`` /
   ``update`` = fill only empty fields / ``overwrite``) and writes everything in
   the caller's ONE transaction with bulk statements, chunk by chunk (numbers are
   reserved as one block via ``numbering.next_value(by=N)``). Any failure → the
   caller rolls back → nothing written (``mark_failed`` records it). A CSV report
   (UTF-8 with BOM: 行号, 结果, 原因) is written next to the staging file.

Duplicate rules (customers): same 客户编号 (incl. numbers kept as aliases after a
merge), same 营业执照注册号, same 国税登记号, or the same *normalised* name
(NFKC full-width → half-width, case, spaces and punctuation removed, and the
suffixes 股份有限公司/有限责任公司/有限公司/股份公司/公司 treated alike). Rows of the
same file that match each other are flagged too (the later ones are not imported).

``merge`` (销售主管/admin) folds one customer into another in one transaction.

The package, by concern: ``columns`` (vocabulary, headers, column mapping), ``files``
(reading CSV/XLSX), ``validate`` (one row), ``staging`` (the SQLite staging file,
duplicate keys), ``upload`` (step 1), ``preview`` (reading a preview), ``commit``
(step 2 and its report), ``jobs`` (rights, 导入记录), ``merge`` (合并客户). Every
public name is importable from ``app.workflows.imports`` as before.
"""
from ..errors import Conflict, DomainError, Forbidden, NotFound, ValidationError  # noqa: F401
from .columns import (  # noqa: F401
    ACTIONS, ACTION_LABELS, CHUNK, COMMITTED, CONTACT, CONTACT_HEADERS, CUSTOMER,
    CUSTOMER_COLUMNS, CUSTOMER_HEADERS, DUP_BY_LABELS, EXTENSIONS, FAILED, FIELD_LABELS,
    IGNORED_FIELDS, KINDS, KIND_LABELS, MAX_BYTES, MAX_ROWS, MONEY_COLUMNS, OUTCOME_LABELS,
    OVERWRITE, PREVIEW, SAMPLE, SKIP, STATUS_LABELS, TEMPLATE_COLUMNS, UPDATE,
    _apply_mapping, auto_mapping, field_label, headers_for, template_csv,
)
from .files import (  # noqa: F401
    detect_encoding, file_format, iter_rows,
)
from .staging import (  # noqa: F401
    job_dir, normalize_code, normalize_name,
)
from .jobs import (  # noqa: F401
    can_import, can_merge, get_job, list_jobs, sees_all_imports,
)
from .upload import (  # noqa: F401
    create_import,
)
from .preview import (  # noqa: F401
    duplicate_rows, error_rows, preview_json, summary,
)
from .commit import (  # noqa: F401
    ImportFailed, commit, mark_failed, report_path,
)
from .merge import (  # noqa: F401
    MERGED, MERGE_FIELDS, MOVED, SURVIVOR, merge, merge_column, merge_history,
)
