"""基础数据 › 操作记录: a read-only list of WorkflowEvents (status steps of every module
and the field changes of customers, dictionary items, users and roles); the
read-only ``audit`` REST resource is app/api/audit.py. There is no
add/edit/delete route at all: records cannot be changed through the app.
"""
from flask_appbuilder import ModelView
from flask_appbuilder.fieldwidgets import Select2Widget
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from wtforms import SelectField

from ..models import WorkflowEvent
from ..workflows import audit as wf
from ..workflows import customers as customers_wf
from ..workflows.actors import role_label
from ..workflows.actors import EXECUTIVE
from ..workflows.names import display_name
from .common import VIEW_CRUD
from .dictionary import LABELS as DICT_LABELS
from .lists import ListMixin

ORDER = 95
# One permission on "Audit" (pages, API, menu): can_list 操作记录 (read-only).
RIGHTS = {EXECUTIVE: [("Audit", "can_list")]}

ENTITY_LABELS = {
    "opportunity": _l("销售机会"), "customer": _l("客户"), "churn": _l("客户流失"),
    "service": _l("客户服务"), "document": _l("文档"), "mail": _l("邮件"),
    "import": _l("数据导入"), "crm_customer": _l("客户资料"), "crm_dict_item": _l("数据字典"),
    "ab_user": _l("用户"), "ab_role": _l("角色"),
}
ACTION_LABELS = {
    "insert": _l("新增"), "update": _l("修改"), "delete": _l("删除"), "create": _l("创建"),
    "assign": _l("指派"), "succeed": _l("开发成功"), "fail": _l("终止开发"),
    "delay": _l("暂缓流失"), "confirm": _l("确认流失"), "churn": _l("流失"),
    "handle": _l("处理"), "feedback": _l("反馈"), "upload": _l("上传"), "send": _l("发送"),
    "receive": _l("收取"), "commit": _l("提交"), "merge": _l("合并"), "merged": _l("被合并"),
    "unlock": _l("解锁账号"),
}
# field names in the change records (before → after), by table; shown in Chinese
FIELD_LABELS = {
    **customers_wf.LABELS,
    **DICT_LABELS,
    # ab_user / ab_role (FAB's columns)
    "first_name": _l("姓"), "last_name": _l("名"), "username": _l("用户名"),
    "email": _l("电子邮件"), "active": _l("是否启用"), "roles": _l("角色"),
    "groups": _l("用户组"), "password": _l("密码"), "fail_login_count": _l("连续登录失败次数"),
    "permissions": _l("权限"), "name": _l("名称"),
}
LABELS = {
    "id": _l("序号"), "created_on": _l("时间"), "actor": _l("操作人"),
    "created_by": _l("操作人"), "entity": _l("对象"), "entity_id": _l("记录编号"),
    "action": _l("操作"), "from_status": _l("原状态（代码）"), "to_status": _l("新状态（代码）"),
    "status_change": _l("状态变化"),
    "note": _l("详情（修改前 → 修改后）"), "created_by_fk": _l("操作人"),
}


def _fmt_note(note):
    """A change record as one line per field: 字段: 旧 → 新; other notes as text."""
    changes = wf.parse_note(note)
    if changes is None:
        return note or ""

    def show(v):
        if v is None:
            return "—"
        if isinstance(v, list):
            return str(_l("、")).join(role_label(str(x)) for x in v) or str(_l("（空）"))
        return str(v)
    lines = [Markup("<b>%s</b>: %s → %s") % (FIELD_LABELS.get(k, k), show(old), show(new))
             for k, (old, new) in changes.items()]
    return Markup("<br>").join(lines)


def _choices(labels):
    """Filter choices: the stored code, shown as its Chinese name (a lazy string per
    request locale) — the filter's value is the code, so 等于 finds exactly it."""
    return [(code, label) for code, label in labels.items()]


class AuditView(ListMixin, ModelView):
    quick_search_columns = ["note"]
    sort_columns = {"actor": "actor.first_name"}
    datamodel = SQLAInterface(WorkflowEvent)
    route_base = "/audit"
    class_permission_name = "Audit"
    method_permission_name = VIEW_CRUD
    include_route_methods = {"list", "show"}     # read-only: no add/edit/delete/action
    base_permissions = ["can_list"]
    list_title = _l("操作记录")
    show_title = _l("操作记录详情")
    label_columns = LABELS
    list_columns = ["created_on", "actor", "entity", "entity_id", "action", "status_change",
                    "note"]
    show_columns = ["id", "created_on", "actor", "entity", "entity_id", "action",
                    "status_change", "from_status", "to_status", "note"]
    search_columns = ["entity", "action", "actor", "created_on", "entity_id"]
    # 对象 and 操作 are picked from their Chinese names, not typed as codes
    search_form_extra_fields = {
        "entity": SelectField(_l("对象"), choices=_choices(ENTITY_LABELS), widget=Select2Widget()),
        "action": SelectField(_l("操作"), choices=_choices(ACTION_LABELS), widget=Select2Widget()),
    }
    order_columns = ["created_on", "entity", "entity_id", "action"]
    base_order = ("id", "desc")
    page_size = 50
    formatters_columns = {
        "created_on": lambda v: v.strftime("%Y-%m-%d %H:%M:%S") if v else "",
        "actor": display_name,
        "entity": lambda v: ENTITY_LABELS.get(v, v),
        "action": lambda v: ACTION_LABELS.get(v, v),
        "note": _fmt_note,
    }


def register(appbuilder):
    appbuilder.add_view(AuditView, "AuditLog", label=_l("操作记录"), icon="fa-history",
                        category="BaseData")

