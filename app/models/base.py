"""Shared model bases.

CRM tables live on FAB's ``Model.metadata`` (with the ``ab_*`` security tables,
so they can reference ``ab_user``). The sales system's tables live on their own
metadata whose ``bind_key`` routes them to the ``sales`` engine; Alembic never
sees them.
"""
from flask_appbuilder import Model
from flask_appbuilder.models.mixins import AuditMixin
from sqlalchemy import MetaData
from sqlalchemy.orm import declarative_base

__all__ = ["Model", "AuditMixin", "SalesBase", "sales_metadata"]

sales_metadata = MetaData(info={"bind_key": "sales"})


class _SalesBase:
    def to_json(self):
        return {k: getattr(self, k) for k in self.__mapper__.c.keys()}


SalesBase = declarative_base(metadata=sales_metadata, cls=_SalesBase)


# ---- search indexes that live outside the models (migration 0006) -----------------------
# SQLite: FTS5 trigram tables ``crm_search_<kind>`` and their shadow tables
# (``crm_search_<kind>_data``, ``_idx``, ``_docsize``, ``_config``); PostgreSQL: GIN
# trigram indexes ``ix_trgm_*``. Autogenerate/``flask db check`` must not see them.
SEARCH_TABLE_PREFIX = "crm_search_"
SEARCH_INDEX_PREFIX = "ix_trgm_"
ROLLUP_STAGING_TABLES = ("crm_order_month_next", "crm_order_last_next",
                         # PostgreSQL only (migration 0018), derived from
                         # crm_order_customer and rebuilt by the refresh (arrays: no
                         # model, app/workflows/rollup.py)
                         "crm_order_running", "crm_order_running_next")


def include_object(obj, name, type_, reflected, compare_to):
    """Alembic ``include_object``: leave the search indexes out of the comparison."""
    if type_ == "table" and name and name.startswith(SEARCH_TABLE_PREFIX):
        return False
    if type_ == "index" and name and name.startswith(SEARCH_INDEX_PREFIX):
        return False
    if type_ == "table" and name in ROLLUP_STAGING_TABLES:
        return False      # a refresh's staging tables (app/workflows/rollup.py)
    return True
