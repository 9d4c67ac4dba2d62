"""``/api/v1/audit``: the 操作记录, read-only (GET list/one/_info; permission
"Audit" can_list, like the pages). Times answer RFC 3339 with the offset."""
from datetime import datetime

from flask_appbuilder.models.sqla.interface import SQLAInterface

from ..models import WorkflowEvent
from ..views.audit import LABELS
from ..views.common import CrmModelRestApi

ORDER = 95


class AuditApi(CrmModelRestApi):
    """``GET /api/v1/audit/`` (filters: entity, entity_id, action, created_by_fk,
    created_on via FAB's ``q``), ``GET /api/v1/audit/<id>``. Read-only."""

    resource_name = "audit"
    class_permission_name = "Audit"
    datamodel = SQLAInterface(WorkflowEvent)
    include_route_methods = {"get", "get_list", "info"}
    list_columns = ["id", "created_on", "created_by_fk", "entity", "entity_id", "action",
                    "from_status", "to_status", "note"]
    show_columns = list_columns
    search_columns = ["entity", "entity_id", "action", "created_by_fk", "created_on"]
    order_columns = ["id", "created_on", "entity", "action"]
    base_order = ("id", "desc")
    label_columns = LABELS

    # times are stored as local time without zone; answer RFC 3339 with the offset
    @staticmethod
    def _zoned(row):
        value = row.get("created_on")
        if isinstance(value, str) and value:
            row["created_on"] = datetime.fromisoformat(value).astimezone().isoformat()

    def pre_get_list(self, data):
        for row in data.get("result", []):
            self._zoned(row)

    def pre_get(self, data):
        self._zoned(data.get("result", {}))



def register(appbuilder):
    appbuilder.add_api(AuditApi)
