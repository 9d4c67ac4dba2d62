"""Business numbers: unique, never reused, safe under concurrent creation.

``next_value`` is one atomic ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``
on the counter row, so two transactions creating at the same instant get
different values (PostgreSQL row lock / SQLite write lock). A number taken in a
transaction that later rolls back is simply skipped, never reused.
"""
from datetime import date

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..models import NumberSequence

PREFIX_CUSTOMER = "KH"
PREFIX_OPPORTUNITY = "XS"
PREFIX_SERVICE = "FW"


def next_value(session, name, by=1):
    """Reserve ``by`` values of counter ``name``; return the last one reserved."""
    dialect = session.get_bind(mapper=NumberSequence.__mapper__).dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = NumberSequence.__table__
    stmt = insert(table).values(name=name, value=by)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.name], set_={"value": table.c.value + by}
    ).returning(table.c.value)
    return session.execute(stmt).scalar_one()


def format_number(prefix, day, value):
    return f"{prefix}{day:%Y%m%d}{value:04d}"


def next_number(session, prefix, day=None):
    """e.g. KH202611210001: prefix + date + that day's sequence (4+ digits)."""
    day = day or date.today()
    key = f"{prefix}{day:%Y%m%d}"
    return format_number(prefix, day, next_value(session, key))
