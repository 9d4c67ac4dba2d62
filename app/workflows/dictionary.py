"""数据字典 rules: items marked not editable are view-only; editable items can be
edited, deleted and locked (set not editable, which is final)."""
import math

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..models import DictItem
from ..models.dictionary import LEVEL, REGION, SERVICE_LIMIT, SERVICE_PRIORITY, SERVICE_TYPE
from .errors import Conflict, NotFound, ValidationError

BASE_DICTIONARY = {
    LEVEL: ["普通客户", "重点开发客户", "大客户", "合作伙伴", "战略合作伙伴"],
    SERVICE_TYPE: ["咨询", "建议", "投诉"],
    # 值 is the rank lists sort by: 普通 1 < 紧急 2 < 特急 3
    SERVICE_PRIORITY: ["普通", "紧急", "特急"],
    REGION: ["北京", "华北", "中南", "东北", "西部"],
    "机会来源": ["电话咨询", "网站", "展会", "老客户介绍", "广告"],
    "职位": ["总经理", "副总经理", "采购经理", "财务经理", "技术主管", "销售经理"],
    "仓库": ["北京一号仓", "上海中心仓", "广州南方仓"],
}
FIELDS = ("type", "item", "value")


def seed_base(session, actor_id):
    """Insert the base dictionary items that are missing; return how many were added."""
    existing = set(session.execute(select(DictItem.type, DictItem.item)).all())
    added = 0
    for type_, items in BASE_DICTIONARY.items():
        for i, item in enumerate(items, 1):
            if (type_, item) in existing:
                continue
            session.add(DictItem(type=type_, item=item, value=str(i), editable=True,
                                 created_by_fk=actor_id, changed_by_fk=actor_id))
            added += 1
    return added


def items_of(session, type_):
    return session.scalars(
        select(DictItem).where(DictItem.type == type_).order_by(DictItem.id)
    ).all()


def find_item(session, type_, text):
    """The DictItem of category ``type_`` whose 条目 is ``text`` or a ValidationError."""
    item = session.scalar(select(DictItem).where(DictItem.type == type_, DictItem.item == text))
    if item is None:
        raise ValidationError(_l("“%(text)s”不是有效的%(type)s，请从数据字典中选择。",
                                 text=text, type=type_))
    return item


def clean(data):
    out = {}
    for f in FIELDS:
        if f in data:
            v = data[f]
            v = "" if v is None else str(v).strip()
            if not v:
                raise ValidationError(_l("%(field)s不能为空。", field=LABELS[f]), field=f)
            if len(v) > (32 if f == "type" else 64):
                raise ValidationError(_l("%(field)s太长。", field=LABELS[f]), field=f)
            out[f] = v
    if len(out) == len(FIELDS):
        check_rules(out["type"], out["item"], out["value"])
    return out


MAX_LIMIT_HOURS = 8760  # 服务时限: at most a year


def parse_limit(value):
    """服务时限 的值: "响应小时" or "响应小时/解决小时", positive numbers of hours
    (decimals allowed, e.g. "0.5"), the resolution not shorter than the response.
    Returns (response_hours, resolution_hours or None)."""
    text = "" if value is None else str(value).strip()
    parts = [p.strip() for p in text.split("/")]
    msg = _l("服务时限的值“%(value)s”无效：应为正的小时数，例如“4”（响应 4 小时，解决时限按两倍计）"
             "或“4/24”（响应 4 小时、解决 24 小时），不能为 0、负数或文字。", value=text[:30])
    if not 1 <= len(parts) <= 2:
        raise ValidationError(msg, field="value")
    hours = []
    for p in parts:
        try:
            h = float(p)
        except ValueError:
            raise ValidationError(msg, field="value")
        if not math.isfinite(h) or h <= 0:
            raise ValidationError(msg, field="value")
        if h > MAX_LIMIT_HOURS:
            raise ValidationError(_l("服务时限不能超过 %(n)d 小时。", n=MAX_LIMIT_HOURS),
                                  field="value")
        hours.append(h)
    if len(hours) == 2 and hours[1] < hours[0]:
        raise ValidationError(_l("服务时限的解决时限（%(res)s 小时）不能短于响应时限（%(resp)s 小时）。",
                                 res=parts[1], resp=parts[0]), field="value")
    return hours[0], (hours[1] if len(hours) == 2 else None)


def check_rules(type_, item, value):
    """Category-specific rules: 服务时限 items are "服务类型/优先级" with hours as 值."""
    if type_ != SERVICE_LIMIT:
        return
    parts = [p.strip() for p in (item or "").split("/")]
    if len(parts) != 2 or not all(parts):
        raise ValidationError(_l("服务时限的条目应写成“服务类型/优先级”，例如“咨询/紧急”。"),
                              field="item")
    parse_limit(value)


LABELS = {"type": _l("类别"), "item": _l("条目"), "value": _l("值"), "editable": _l("是否可编辑")}


def parse_editable(value):
    """是否可编辑: true/false (a JSON boolean); the text "false" is not true."""
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "y", "yes", "是", "on"):
        return True
    if text in ("false", "0", "n", "no", "否", "off", ""):
        return False
    raise ValidationError(_l("是否可编辑必须是 true 或 false。"), field="editable")


def _get(session, item_id):
    item = session.get(DictItem, item_id)
    if item is None:
        raise NotFound(_l("数据字典条目不存在。"))
    return item


def _check_editable(item):
    if not item.editable:
        raise Conflict(_l("该条目已设为不可编辑，只能查看。"))


def create(session, data, actor_id=None):
    values = clean(data)
    missing = [f for f in FIELDS if f not in values]
    if missing:
        raise ValidationError(_l("%(field)s不能为空。", field=LABELS[missing[0]]),
                              field=missing[0])
    item = DictItem(**values, editable=parse_editable(data.get("editable", True)))
    if actor_id:
        item.created_by_fk = item.changed_by_fk = actor_id
    _flush_unique(session, item)
    return item


def update(session, item_id, data, actor_id=None):
    item = _get(session, item_id)
    _check_editable(item)
    for k, v in clean(data).items():
        setattr(item, k, v)
    check_rules(item.type, item.item, item.value)
    if "editable" in data and not parse_editable(data["editable"]):
        item.editable = False
    if actor_id:
        item.changed_by_fk = actor_id
    _flush_unique(session, item)
    return item


def lock(session, item_id, actor_id=None):
    """Set an editable item to not editable (final)."""
    item = _get(session, item_id)
    _check_editable(item)
    item.editable = False
    if actor_id:
        item.changed_by_fk = actor_id
    session.flush()
    return item


def delete(session, item_id):
    item = _get(session, item_id)
    _check_editable(item)
    try:
        with session.begin_nested():
            session.delete(item)
            session.flush()
    except IntegrityError:
        raise Conflict(_l("该条目正在被客户或服务使用，不能删除；可以先修改引用它的记录。"))


def _flush_unique(session, item):
    try:
        with session.begin_nested():
            session.add(item)
            session.flush()
    except IntegrityError:
        raise ValidationError(_l("同一类别下已存在相同的条目“%(item)s”。", item=item.item),
                              field="item")
