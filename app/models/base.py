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
