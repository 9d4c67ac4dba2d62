"""The OpenAPI description served at ``/api/v1/_openapi``, made valid and truthful.

FAB builds the document from each API's marshmallow schemas and the YAML in the
endpoint docstrings. That document was invalid (operations without ``responses``)
and lied in generic ways: ``q`` declared as a JSON object (it is rison text),
component schemas naming columns the responses do not carry (``region_id`` where
the customer has ``region``), amounts declared numbers (they are text ``"12.50"``),
custom endpoints without any response schema. ``finish(spec, appbuilder)`` corrects
the generated dictionary in one place, after every API has added its paths
(``app/views/openapi.py`` serves it); ``tests/test_openapi.py`` validates the
document and checks real responses of every main resource against it.

The record schemas below describe what the endpoints return (``app/views/*``
``*_json`` functions and the ``pre_get``/``pre_get_list`` rewrites). Request
bodies get their own schemas where input and output differ (a customer is sent
with ``region`` as the dictionary text or ``region_id`` as its id, and comes back
with ``region``).
"""
import copy

from .workflows import churn as _churn
from .workflows import customers as _customers
from .workflows import mail as _mail
from .workflows import opportunities as _opportunities
from .workflows import service as _service
from .workflows import timeline as _timeline

JSON = "application/json"


# ---- small schema builders ------------------------------------------------------------

def _t(type_, nullable=False, **kw):
    out = {"type": type_, **kw}
    if nullable:
        out["nullable"] = True
    return out


def S(**kw):            # a string that may be null
    return _t("string", True, **kw)


def I(**kw):            # an integer that may be null
    return _t("integer", True, **kw)


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties, required=(), additional=True, description=None):
    out = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    if not additional:
        out["additionalProperties"] = False
    if description:
        out["description"] = description
    return out


def _status(module):
    """The status values of a workflow module (its STATUS_LABELS), with their names."""
    labels = module.STATUS_LABELS
    return {"type": "string", "enum": list(labels),
            "description": "；".join(f"{k} {labels[k]}" for k in labels)}  # in the request's language


MONEY = S(pattern=r"^\d+\.\d{2}$", description="金额（元），两位小数的文本，例如 \"1200.00\"",
          example="1200.00")
MONEY_IN = {"anyOf": [{"type": "number"}, {"type": "string"}], "nullable": True,
            "description": "金额（元）：数字或数字文本，例如 1200 或 \"1200.00\""}
DATE = S(description="日期 YYYY-MM-DD", example="2026-12-01")
TIMESTAMP = S(description="时间 ISO 8601（服务器本地时间，无时区）", example="2026-12-01T09:30:00")

# ---- records as the API returns them ---------------------------------------------------

CUSTOMER_TEXT = ("address", "zip_code", "phone", "fax", "website", "license_no", "legal_person",
                 "bank", "bank_account", "local_tax_no", "national_tax_no")

def saved(record, *, id_=True, message=False, extra=None):
    props = {"result": ref(record)}
    required = ["result"]
    if id_:
        props["id"] = {"type": "integer"}
        required.append("id")
    if message:
        props["message"] = {"type": "string"}
    props.update(extra or {})
    return obj(props, required=required, additional=False)


def page_of(record):
    return obj({"count": {"type": "integer"}, "result": {"type": "array", "items": ref(record)}},
               required=["count", "result"], additional=False)


def build_schemas():
    """The component schemas (built per document: the status names are translated)."""
    SCHEMAS = {
        "Message": obj({"message": {"type": "string", "description": "中文说明"},
                        "field": {"type": "string", "description": "出错的字段（输入有误时）"}},
                       required=["message"]),
        "Customer": obj({
            "id": {"type": "integer"}, "number": {"type": "string", "example": "KH202612010001"},
            "name": {"type": "string"},
            "region": S(description="地区（数据字典“地区”的条目文字）", example="北京"),
            "manager_id": I(description="客户经理的用户 id"),
            "level": S(description="客户等级（数据字典“客户等级”的条目文字）", example="大客户"),
            "satisfaction": I(minimum=1, maximum=5), "credit": I(minimum=1, maximum=5),
            **{f: S() for f in CUSTOMER_TEXT},
            "registered_capital": MONEY, "annual_turnover": MONEY,
            "status": _status(_customers),
        }, required=["id", "number", "name", "status"], additional=False),
        "CustomerInput": obj({
            "name": {"type": "string"},
            "region": S(description="地区：数据字典条目文字，例如“北京”（或给 region_id）"),
            "region_id": I(description="地区的数据字典条目 id（或给 region）"),
            "level": S(description="客户等级：数据字典条目文字，例如“大客户”（或给 level_id）"),
            "level_id": I(description="客户等级的数据字典条目 id（或给 level）"),
            "manager_id": I(description="客户经理的用户 id；客户经理只能填自己（不填即自己）"),
            "satisfaction": I(minimum=1, maximum=5), "credit": I(minimum=1, maximum=5),
            **{f: S() for f in CUSTOMER_TEXT},
            "registered_capital": MONEY_IN, "annual_turnover": MONEY_IN,
            "id": {"type": "integer", "description": "只读：修改时可原样带回"},
            "number": {"type": "string", "description": "只读：修改时可原样带回"},
            "status": {"type": "string", "description": "只读：修改时可原样带回"},
        }, additional=False, description="新建时 * 字段必填：name、地区、客户经理、客户等级、满意度、"
                                         "信用度、address、zip_code、phone、legal_person、bank、"
                                         "bank_account；修改时只给要改的字段"),
        "Contact": obj({
            "id": {"type": "integer"}, "customer_id": {"type": "integer"},
            "name": {"type": "string"}, "gender": {"type": "string", "example": "男"},
            "position": {"type": "string"}, "office_phone": {"type": "string"},
            "mobile": S(), "email": S(), "memo": S(),
        }, required=["id", "customer_id", "name"], additional=False),
        "ContactInput": obj({
            "customer_id": {"type": "integer", "description": "新建时必填；修改时不能改变"},
            "name": {"type": "string"}, "gender": {"type": "string", "example": "男"},
            "position": {"type": "string"}, "office_phone": {"type": "string"},
            "mobile": S(), "email": S(), "memo": S(), "id": {"type": "integer"},
        }, description="新建时必填：customer_id、name、gender（男/女）、position、office_phone"),
        "Activity": obj({
            "id": {"type": "integer"}, "customer_id": {"type": "integer"}, "date": DATE,
            "place": S(), "summary": S(), "detail": S(), "memo": S(),
        }, required=["id", "customer_id"], additional=False),
        "ActivityInput": obj({
            "customer_id": {"type": "integer", "description": "新建时必填"},
            "date": DATE, "place": {"type": "string"}, "summary": {"type": "string"},
            "detail": {"type": "string"}, "memo": S(), "id": {"type": "integer"},
        }, description="新建时必填：customer_id、date、place、summary、detail"),
        "PlanItem": obj({"id": {"type": "integer"}, "date": DATE, "content": {"type": "string"},
                         "result": S(description="执行效果（执行计划时填写）")},
                        required=["id", "date", "content"], additional=False),
        "PlanItemInput": obj({"date": DATE, "content": {"type": "string"},
                              "result": S(description="执行效果")},
                             description="新建：date、content；修改：content 和/或 result（不能改日期）"),
        "Opportunity": obj({
            "id": {"type": "integer"}, "number": {"type": "string", "example": "XS202612010001"},
            "source": S(), "customer_name": {"type": "string"},
            "success_rate": I(minimum=0, maximum=100), "summary": S(), "contact": S(),
            "contact_phone": S(), "description": S(),
            "status": _status(_opportunities),
            "creator_id": I(), "created_on": TIMESTAMP, "assignee_id": I(description="指派给的客户经理"),
            "assigned_on": TIMESTAMP, "customer_id": I(description="开发成功后生成的客户"),
            "expected_amount": {**MONEY, "description": "预计金额（元），两位小数的文本；未填为 null"},
            "expected_close_on": {**DATE, "description": "预计成交日期 YYYY-MM-DD；未填为 null"},
            "plan_items": {"type": "array", "items": ref("PlanItem")},
        }, required=["id", "number", "customer_name", "status", "plan_items"], additional=False),
        "OpportunityInput": obj({
            "customer_name": {"type": "string"}, "success_rate": {"type": "integer"},
            "summary": {"type": "string"}, "description": S(), "source": S(), "contact": S(),
            "contact_phone": S(),
            "expected_amount": {**MONEY_IN, "description": "预计金额（元），可不填：不小于 0、最多两位小数"},
            "expected_close_on": {**DATE, "description": "预计成交日期 YYYY-MM-DD，可不填"},
        }, description="新建时必填：customer_name、success_rate（0–100）、summary、description；"
                        "修改（仅未指派的机会）时只给要改的字段"),
        "OpportunityForecastInput": obj({
            "expected_amount": {**MONEY_IN, "description": "预计金额（元）：不小于 0、最多两位小数；null 或 \"\" 清空"},
            "expected_close_on": {**DATE, "description": "预计成交日期 YYYY-MM-DD；null 或 \"\" 清空"},
            "success_rate": {"type": "integer", "minimum": 0, "maximum": 100, "description": "成功机率"},
        }, additional=False, description="开发中（assigned）的机会：被指派的客户经理或销售主管更新预计成交；"
                                          "只给要改的字段，至少一项；其他字段 400"),
        "Service": obj({
            "id": {"type": "integer"}, "number": {"type": "string"},
            "service_type": S(description="服务类型（数据字典条目文字）", example="咨询"),
            "summary": S(), "customer_id": I(), "request": S(),
            "status": _status(_service),
            "priority": {"type": "string", "description": "服务优先级（数据字典条目文字）",
                         "example": "普通"},
            "response_due": dict(TIMESTAMP, description="响应时限（分配并处理的期限）"),
            "resolution_due": dict(TIMESTAMP, description="解决时限（归档的期限；退回重新处理时重新计算）"),
            "first_response_on": dict(TIMESTAMP, description="首次处理时间"),
            "resolved_on": dict(TIMESTAMP, description="归档时间"),
            "overdue": {"type": "boolean", "description": "尚未完成的时限已过"},
            "creator_id": I(), "created_on": TIMESTAMP, "assignee_id": I(), "assigned_on": TIMESTAMP,
            "handling": S(), "handler_id": I(), "handled_on": TIMESTAMP, "result": S(),
            "satisfaction": I(minimum=1, maximum=5),
        }, required=["id", "number", "status"], additional=False),
        "ChurnMeasure": obj({"text": {"type": "string"}, "author_id": I(), "created_on": TIMESTAMP},
                            required=["text"], additional=False),
        "ChurnWarning": obj({
            "id": {"type": "integer"}, "customer_id": {"type": "integer"}, "manager_id": I(),
            "last_order_date": DATE, "warned_on": S(), "reason": S(), "confirmed_on": S(),
            "status": _status(_churn),
            "measures": {"type": "array", "items": ref("ChurnMeasure")},
        }, required=["id", "customer_id", "status", "measures"], additional=False),
        "DictItem": obj({"id": {"type": "integer"}, "type": {"type": "string", "example": "地区"},
                         "item": {"type": "string", "example": "北京"}, "value": S(),
                         "editable": {"type": "boolean"}},
                        required=["id", "type", "item"], additional=False),
        "DictItemInput": obj({"type": {"type": "string", "example": "地区"},
                              "item": {"type": "string", "example": "北京"}, "value": S(),
                              "editable": {"type": "boolean"}}),
        "Product": obj({"id": {"type": "integer"}, "name": {"type": "string"}, "model": S(),
                        "batch": S(), "unit": S(), "price": MONEY, "memo": S()},
                       required=["id", "name"], additional=False),
        "Stock": obj({"id": {"type": "integer"}, "product_id": I(), "warehouse": S(),
                      "location": S(), "quantity": I(), "memo": S()},
                     required=["id"], additional=False),
        "OrderLine": obj({"product_id": I(), "quantity": {"type": "integer"}, "unit": S(),
                          "price": MONEY}, additional=False),
        "Order": obj({"id": {"type": "integer"}, "number": {"type": "string"},
                      "customer_number": S(), "date": DATE, "address": S(),
                      "status": {"type": "integer", "description": "5 已发货，6 已回款"},
                      "lines": {"type": "array", "items": ref("OrderLine")}, "total": MONEY},
                     required=["id", "number", "lines", "total"], additional=False),
        "MailAttachment": obj({"id": {"type": "integer"}, "filename": {"type": "string"},
                               "mime": S(), "size": I(), "document_id": I()}),
        "Mail": obj({
            "id": {"type": "integer"},
            "status": _status(_mail),
            "subject": S(), "sender": S(),
            "recipients": {"type": "array", "items": {"type": "string"}},
            "cc": {"type": "array", "items": {"type": "string"}},
            "to_addresses": {"type": "array", "description": "收件人（显示名与地址）",
                             "items": obj({"name": S(), "address": {"type": "string"}})},
            "cc_addresses": {"type": "array", "description": "抄送（显示名与地址）",
                             "items": obj({"name": S(), "address": {"type": "string"}})},
            "customer_id": I(), "owner_id": I(), "message_id": S(), "in_reply_to": S(),
            "error": S(description="发送失败的原因"), "sent_on": TIMESTAMP, "received_on": TIMESTAMP,
            "created_on": TIMESTAMP,
            "body": S(description="正文（仅单封邮件）"),
            "attachments": {"type": "array", "items": ref("MailAttachment"),
                            "description": "附件（仅单封邮件）"},
        }, required=["id", "status"], additional=False),
        "MailInput": obj({
            "to": {"type": "array", "items": {"type": "string"}, "description": "收件人地址"},
            "contact_ids": {"type": "array", "items": {"type": "integer"},
                            "description": "收件的联系人 id"},
            "user_ids": {"type": "array", "items": {"type": "integer"}, "description": "收件的用户 id"},
            "cc": {"type": "array", "items": {"type": "string"}},
            "subject": {"type": "string"}, "body": {"type": "string"},
            "customer_id": I(), "document_ids": {"type": "array", "items": {"type": "integer"},
                                                 "description": "作为附件发送的文档 id"},
        }, required=["subject", "body"]),
        "Document": obj({
            "id": {"type": "integer"}, "customer_id": {"type": "integer"}, "folder_id": I(),
            "folder": S(description="文件夹路径"), "opportunity_id": I(), "service_id": I(),
            "name": {"type": "string"}, "version": {"type": "integer"}, "size": {"type": "integer"},
            "mime": S(), "sha256": {"type": "string"}, "uploader_id": I(), "uploaded_on": TIMESTAMP,
        }, required=["id", "customer_id", "name", "version"], additional=False),
        "Folder": obj({"id": {"type": "integer"}, "customer_id": {"type": "integer"},
                       "parent_id": I(), "name": {"type": "string"}, "path": {"type": "string"}},
                      required=["id", "customer_id", "name", "path"], additional=False),
        "User": obj({"id": {"type": "integer"}, "username": {"type": "string"},
                     "name": {"type": "string"},
                     "roles": {"type": "array", "items": {"type": "string"}},
                     "active": {"type": "boolean"}, "email": S()},
                    required=["id", "username", "name", "roles", "active"], additional=False),
        "ReportRow": obj({
            "customer_name": S(), "amount": MONEY, "item": S(), "count": I(),
            "percent": {"type": "number", "nullable": True}, "service_type": S(), "manager": S(),
            "last_order_date": DATE, "confirmed_on": DATE, "reason": S(),
            "overdue": I(), "on_time_percent": {"type": "number", "nullable": True},
            "amount_compare": MONEY, "count_compare": I(),
            "amount_change": {"type": "number", "nullable": True,
                              "description": "与对比期相比的变化（%），对比期为 0 时为 null"},
            "count_change": {"type": "number", "nullable": True},
            "priority": S(), "response_hours": {"type": "number", "nullable": True},
            "resolution_hours": {"type": "number", "nullable": True},
            "within_percent": {"type": "number", "nullable": True},
            "month": S(), "rated": I(), "satisfaction": {"type": "number", "nullable": True},
            "age": S(), "open": I(),
            "link": S(description="这一行背后的明细列表（站内相对地址），没有时为 null"),
        }, description="一行报表；各报表的列见 docs/modules/reports.md（contribution: customer_name, "
                        "amount；composition: item, count, percent；service: service_type, count, "
                        "overdue, on_time_percent；"
                        "churn: customer_name, manager, last_order_date, confirmed_on, reason；"
                        "对比时另有 <列>_compare、<列>_change）"),
        "ForecastFigures": obj({
            "weighted": {**MONEY, "nullable": False,
                         "description": "Σ 预计金额 × 成功机率 / 100（元）"},
            "amount": {**MONEY, "nullable": False, "description": "Σ 预计金额（元）"},
            "count": {"type": "integer", "description": "销售机会数"},
            "month": S(description="预计成交月份 YYYY-MM；null = 未填预计成交日期"),
            "assignee_id": I(description="客户经理的用户 id"),
            "name": {"type": "string", "description": "客户经理姓名"},
        }, required=["weighted", "amount", "count"], additional=False),
        "Forecast": obj({"result": obj({
            "total": ref("ForecastFigures"),
            "by_month": {"type": "array", "items": ref("ForecastFigures")},
            "by_manager": {"type": "array", "items": ref("ForecastFigures")},
            "without_amount": {"type": "integer",
                               "description": "开发中但未填预计金额的销售机会数（不计入预测）"},
        }, required=["total", "by_month", "by_manager", "without_amount"], additional=False)},
            required=["result"], additional=False),
        "ReportPeriod": obj({"from": DATE, "to": DATE, "kind": S()}, additional=False),
        "ReportTable": obj({"title": {"type": "string"},
                            "columns": {"type": "object",
                                        "additionalProperties": {"type": "string"}},
                            "rows": {"type": "array", "items": ref("ReportRow")},
                            "total": ref("ReportRow")},
                           required=["title", "columns", "rows"], additional=False),
        "Report": obj({"rows": {"type": "array", "items": ref("ReportRow"),
                                "description": "当前页的行（page、page_size）"},
                       "page": {"type": "integer"}, "page_size": {"type": "integer"},
                       "count": {"type": "integer", "description": "全部行数"},
                       "sort": S(), "order": S(),
                       "period": ref("ReportPeriod"),
                       "compare": dict(obj({"from": DATE, "to": DATE, "kind": S()},
                                           additional=False), nullable=True,
                                       description="对比期间（kind: previous / last_year），不对比时为 null"),
                       "total": {**ref("ReportRow"), "description": "合计行（全部行，有合计的报表）"},
                       "tables": {"type": "object", "additionalProperties": ref("ReportTable"),
                                  "description": "附加表格：service 的 by_priority、satisfaction、"
                                                 "open_age；churn 的 by_manager"},
                       "data_as_of": S(description="数据更新于：订单汇总生成的时间，服务器本地时间"
                                                   "（客户贡献分析）；"
                                                   "实时计算的报表为 null")},
                      required=["rows", "page", "page_size", "count", "period"],
                      additional=False),
    }


    SCHEMAS.update({
        "CustomerSaved": saved("Customer", message=True),
        "ContactSaved": saved("Contact"),
        "ActivitySaved": saved("Activity"),
        "DictItemSaved": saved("DictItem"),
        "DictItemUpdated": saved("DictItem", id_=False),
        "OpportunitySaved": saved("Opportunity", message=True, extra={
            "customer_id": {"type": "integer", "description": "开发成功：生成的客户"},
            "customer_number": {"type": "string", "description": "开发成功：生成的客户编号"}}),
        "PlanItemSaved": saved("PlanItem"),
        "OpportunityBulkAssigned": obj({"results": {"type": "array", "items": obj({
            "id": {"type": "integer"}, "ok": {"type": "boolean", "description": "是否已指派"},
            "code": {"type": "integer", "description": "200 已指派；404 不存在；409 已不是未指派等"},
            "message": {"type": "string", "description": "中文说明（被拒绝时为原因）"},
        }, required=["id", "ok", "code", "message"], additional=False)}},
            required=["results"], additional=False),
        "ServiceSaved": saved("Service"),
        "ServiceUpdated": saved("Service", id_=False),
        "ServiceBulkResults": obj({"results": {"type": "array", "items": obj({
            "id": {"type": "integer"},
            "ok": {"type": "boolean", "description": "true：已分配；false：未分配（见 message）"},
            "number": S(description="服务编号（服务不存在时为 null）"),
            "message": {"type": "string", "description": "中文结果或拒绝原因"},
        }, required=["id", "ok", "message"], additional=False)}},
            required=["results"], additional=False,
            description="批量分配：每个 id 一条结果，顺序与请求相同"),
        "ChurnWarningSaved": saved("ChurnWarning"),
        "MailSaved": saved("Mail", message=True),
        "MailOne": saved("Mail", id_=False),
        "MailPage": page_of("Mail"),
        "DocumentOne": saved("Document", id_=False),
        "DocumentPage": page_of("Document"),
        "DocumentsSaved": obj({"ids": {"type": "array", "items": {"type": "integer"}},
                               "result": {"type": "array", "items": ref("Document")}},
                              required=["ids", "result"], additional=False),
        "FolderPage": page_of("Folder"),
        "FolderSaved": saved("Folder"),
        "UserOne": saved("User", id_=False),
        "UserPage": page_of("User"),
        "TimelineEntry": obj({
            "kind": {"type": "string", "enum": list(_timeline.KINDS),
                     "description": "；".join(f"{k} {_timeline.KIND_LABELS[k]}"
                                             for k in _timeline.KINDS)},
            "kind_label": {"type": "string"}, "id": {"type": "integer",
                                                     "description": "该类记录的 id"},
            "time": {"type": "string", "description": "时间 ISO 8601（服务器本地时间）"},
            "all_day": {"type": "boolean", "description": "只有日期（交往记录）"},
            "user_id": I(), "user_name": S(), "title": {"type": "string"}, "text": S(),
            "url": {"type": "string", "description": "记录本身的页面"},
        }, required=["kind", "id", "time", "title", "url"], additional=False),
        "TimelinePage": obj({
            "count": {"type": "integer", "description": "所选类别的条数"},
            "page": {"type": "integer"}, "page_size": {"type": "integer"},
            "kind": S(description="所选类别；null 为全部"),
            "counts": {"type": "object", "additionalProperties": {"type": "integer"},
                       "description": "{类别: 条数}，调用者可以查看的各类别"},
            "result": {"type": "array", "items": ref("TimelineEntry")},
        }, required=["count", "page", "page_size", "counts", "result"], additional=False),
        # 订单汇总 (app/api/rollup.py)
        "RollupState": obj({"result": obj({
            "refreshed_at": S(description="数据更新于：汇总生成的时间，服务器本地时间 YYYY-MM-DDTHH:MM:SS（尚未生成时为 null）"),
            "seconds": {"type": "number", "nullable": True, "description": "上次刷新用时（秒）"},
            "months": I(description="客户月数（按客户编号、按月的行数）"),
            "customers": I(description="有有效订单的客户编号数"),
        }, required=["refreshed_at"], additional=False)}, required=["result"], additional=False),
    })
    return SCHEMAS


# FAB's generated components replaced by the records above: list rows and get results
# (``X.get_list``/``X.get``) and the request bodies (``X.post``/``X.put``).
FAB_COMPONENTS = {
    "CustomerApi": ("Customer", "CustomerInput"),
    "ContactApi": ("Contact", "ContactInput"),
    "ActivityApi": ("Activity", "ActivityInput"),
    "OpportunityApi": ("Opportunity", "OpportunityInput"),
    "ServiceApi": ("Service", None),
    "ChurnApi": ("ChurnWarning", None),
    "DictItemApi": ("DictItem", "DictItemInput"),
    "ProductApi": ("Product", None),
    "StockApi": ("Stock", None),
    "OrderApi": ("Order", None),
}

# (method, path) → {status: schema name, or (content type, schema)}: the success
# responses of the endpoints written by hand (their docstrings give only a text).
RESPONSES = {
    ("post", "/api/v1/customer/"): {"201": "CustomerSaved"},
    ("put", "/api/v1/customer/{pk}"): {"200": "CustomerSaved"},
    ("get", "/api/v1/customer/{pk}/timeline"): {"200": "TimelinePage"},
    ("post", "/api/v1/contact/"): {"201": "ContactSaved"},
    ("put", "/api/v1/contact/{pk}"): {"200": "ContactSaved"},
    ("delete", "/api/v1/contact/{pk}"): {"200": "Message"},
    ("post", "/api/v1/activity/"): {"201": "ActivitySaved"},
    ("put", "/api/v1/activity/{pk}"): {"200": "ActivitySaved"},
    ("post", "/api/v1/dict_item/"): {"201": "DictItemSaved"},
    ("put", "/api/v1/dict_item/{pk}"): {"200": "DictItemUpdated"},
    ("delete", "/api/v1/dict_item/{pk}"): {"200": "Message"},
    ("post", "/api/v1/opportunity/"): {"201": "OpportunitySaved"},
    ("put", "/api/v1/opportunity/{pk}"): {"200": "OpportunitySaved"},
    ("delete", "/api/v1/opportunity/{pk}"): {"200": "Message"},
    ("post", "/api/v1/opportunity/{pk}/assign"): {"200": "OpportunitySaved"},
    ("post", "/api/v1/opportunity/bulk_assign"): {"200": "OpportunityBulkAssigned"},
    ("post", "/api/v1/opportunity/{pk}/succeed"): {"200": "OpportunitySaved"},
    ("post", "/api/v1/opportunity/{pk}/fail"): {"200": "OpportunitySaved"},
    ("post", "/api/v1/opportunity/{pk}/forecast"): {"200": "OpportunitySaved"},
    ("post", "/api/v1/opportunity/{pk}/plan_items"): {"201": "PlanItemSaved"},
    ("put", "/api/v1/opportunity/{pk}/plan_items/{item_id}"): {"200": "PlanItemSaved"},
    ("delete", "/api/v1/opportunity/{pk}/plan_items/{item_id}"): {"200": "Message"},
    ("post", "/api/v1/service/"): {"201": "ServiceSaved"},
    ("post", "/api/v1/service/{pk}/assign"): {"200": "ServiceUpdated"},
    ("post", "/api/v1/service/bulk_assign"): {"200": "ServiceBulkResults"},
    ("post", "/api/v1/service/{pk}/reassign"): {"200": "ServiceUpdated"},
    ("post", "/api/v1/service/{pk}/priority"): {"200": "ServiceUpdated"},
    ("post", "/api/v1/service/{pk}/handle"): {"200": "ServiceUpdated"},
    ("post", "/api/v1/service/{pk}/feedback"): {"200": "ServiceUpdated"},
    ("post", "/api/v1/churn/{pk}/measures"): {"201": "ChurnWarningSaved"},
    ("post", "/api/v1/churn/{pk}/confirm"): {"200": "ChurnWarningSaved"},
    ("get", "/api/v1/mail/"): {"200": "MailPage"},
    ("get", "/api/v1/mail/{pk}"): {"200": "MailOne"},
    ("post", "/api/v1/mail/"): {"201": "MailSaved", "502": "MailSaved"},
    ("post", "/api/v1/mail/{pk}/retry"): {"200": "MailSaved", "502": "MailSaved"},
    ("get", "/api/v1/document/"): {"200": "DocumentPage"},
    ("get", "/api/v1/document/{pk}"): {"200": "DocumentOne"},
    ("post", "/api/v1/document/"): {"201": "DocumentsSaved"},
    ("delete", "/api/v1/document/{pk}"): {"200": "Message"},
    ("get", "/api/v1/document/folders"): {"200": "FolderPage"},
    ("post", "/api/v1/document/folders"): {"201": "FolderSaved"},
    ("get", "/api/v1/document/{pk}/download"): {
        "200": ("application/octet-stream", {"type": "string", "format": "binary"})},
    ("get", "/api/v1/user/"): {"200": "UserPage"},
    ("get", "/api/v1/user/{pk}"): {"200": "UserOne"},
    ("get", "/api/v1/report/{name}"): {"200": "Report"},
    ("get", "/api/v1/import/{pk}/report"): {"200": ("text/csv", {"type": "string"})},
}
# extra content types of a success response
EXTRA_CONTENT = {
    ("get", "/api/v1/report/{name}"): {
        "text/csv": {"schema": {"type": "string"}},
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
            "schema": {"type": "string", "format": "binary"}},
    },
}
# request bodies of hand-written endpoints that did not declare one (or declared
# ``{type: object}`` only)
REQUEST_BODIES = {
    ("post", "/api/v1/customer/"): "CustomerInput",
    ("put", "/api/v1/customer/{pk}"): "CustomerInput",
    ("post", "/api/v1/contact/"): "ContactInput",
    ("put", "/api/v1/contact/{pk}"): "ContactInput",
    ("post", "/api/v1/activity/"): "ActivityInput",
    ("put", "/api/v1/activity/{pk}"): "ActivityInput",
    ("post", "/api/v1/dict_item/"): "DictItemInput",
    ("put", "/api/v1/dict_item/{pk}"): "DictItemInput",
    ("post", "/api/v1/opportunity/"): "OpportunityInput",
    ("put", "/api/v1/opportunity/{pk}"): "OpportunityInput",
    ("post", "/api/v1/opportunity/{pk}/assign"): obj(
        {"assignee_id": {"type": "integer", "description": "客户经理的用户 id"}},
        required=["assignee_id"]),
    ("post", "/api/v1/opportunity/bulk_assign"): obj(
        {"ids": {"type": "array", "items": {"type": "integer"}, "maxItems": 100,
                 "description": "要指派的未指派销售机会的 id"},
         "assignee_id": {"type": "integer", "description": "客户经理的用户 id"}},
        required=["ids", "assignee_id"]),
    ("post", "/api/v1/opportunity/{pk}/forecast"): "OpportunityForecastInput",
    ("post", "/api/v1/opportunity/{pk}/plan_items"): "PlanItemInput",
    ("put", "/api/v1/opportunity/{pk}/plan_items/{item_id}"): "PlanItemInput",
    ("post", "/api/v1/mail/"): "MailInput",
}

ERROR_TEXT = {"400": "输入有误", "401": "未登录", "403": "无权限", "404": "不存在",
              "409": "当前状态不允许或并发冲突", "413": "文件太大", "422": "参数无法解析",
              "500": "服务器错误", "502": "邮件服务器拒绝或不可达"}
RESPONSE_KEYS = {"description", "headers", "content", "links", "$ref"}
OPERATIONS = ("get", "put", "post", "delete", "patch", "head", "options")

Q_DESCRIPTION = (
    "rison 编码的查询参数（不是 JSON）。列表：`filters`（`!((col:列,opr:运算符,value:值))`，"
    "可用的列和运算符见 `_info` 的 `filters`；常用 `eq` 等于、`ct` 包含、`sw` 开头是、"
    "`gt`/`lt` 大于/小于）、`order_column`、`order_direction`（asc/desc）、`page`（从 0 开始）、"
    "`page_size`（最多 100）、`columns`/`keys`。例："
    "`(filters:!((col:name,opr:ct,value:'公司')),order_column:id,order_direction:desc,"
    "page:0,page_size:20)`；字符串含空格、逗号、括号等时用单引号，单引号写作 `!'`。")
Q_ITEM_DESCRIPTION = "rison 编码：`(columns:!(id,name))` 只返回这些列；可省略。"
Q_INFO_DESCRIPTION = ("rison 编码：`(keys:!(filters,permissions))` 只返回这些键"
                      "（add_columns、edit_columns、filters、permissions、add_title、edit_title、none）；"
                      "可省略。")


def _q_example(view):
    """A working list query of ``view``: a 'contains' filter on a text search column
    when it has one, newest first, the first page of 20."""
    parts = []
    filters = getattr(view, "_filters", None)
    search = filters.get_search_filters() if filters is not None else {}
    for col in view.search_columns or []:
        if any(getattr(f, "arg_name", "") == "ct" for f in search.get(col, [])):
            parts.append(f"filters:!((col:{col},opr:ct,value:'1'))")
            break
    else:
        for col in view.search_columns or []:
            if any(getattr(f, "arg_name", "") == "gt" for f in search.get(col, [])) \
                    and col.endswith("id"):
                parts.append(f"filters:!((col:{col},opr:gt,value:0))")
                break
    if "id" in (view.order_columns or []):
        parts.append("order_column:id,order_direction:desc")
    parts.append("page:0,page_size:20")
    return "(" + ",".join(parts) + ")"


# the lists whose ``q`` offers the 快速搜索 of their page (opr:search, app/workflows/
# quick_search.py): path → (column, what is searched)
QUICK_SEARCH = {
    "/api/v1/service/": ("number", "编号、概要、客户名称"),
    "/api/v1/contact/": ("name", "姓名、办公电话、手机、电子邮件"),
}
QUICK_SEARCH_TEXT = ("快速搜索（与页面的搜索框相同）：`(filters:!((col:{col},opr:search,value:'词1 词2')))`，"
                     "每个词都要出现在{what}之一中（不区分英文大小写的子串，`%`、`_`、`\\` 按字面匹配）。")


# endpoints whose ``q`` is plain text, not rison (全局搜索: the words to look for)
PLAIN_Q_PATHS = {"/api/v1/search/"}


def _fix_q(op, path, list_examples):
    if path in PLAIN_Q_PATHS:
        return
    params = op.get("parameters") or []
    for i, param in enumerate(params):
        if not isinstance(param, dict) or param.get("in") != "query" or param.get("name") != "q":
            continue
        new = {"in": "query", "name": "q", "required": False, "schema": {"type": "string"}}
        if path.endswith("/_info"):
            new["description"] = Q_INFO_DESCRIPTION
        elif path.endswith("{pk}"):
            new["description"] = Q_ITEM_DESCRIPTION
        else:
            new["description"] = Q_DESCRIPTION
            if path in QUICK_SEARCH:
                col, what = QUICK_SEARCH[path]
                new["description"] += QUICK_SEARCH_TEXT.format(col=col, what=what)
            example = list_examples.get(path)
            if example:
                new["example"] = example
        params[i] = new


def _fix_responses(method, path, op):
    # the codes as strings (YAML gives ints)
    responses = op["responses"] = {str(k): v for k, v in (op.get("responses") or {}).items()}
    if not responses:
        responses["201" if method == "post" else "200"] = {"description": "OK"}
    for code, resp in list(responses.items()):
        if not isinstance(resp, dict):
            responses[code] = resp = {"description": str(resp)}
        if "$ref" in resp:
            continue
        # YAML like ``409: {description: already committed, or failed}`` became a
        # mapping with a stray key: put it back into the text
        stray = [k for k in resp if k not in RESPONSE_KEYS]
        if stray:
            words = [str(resp.get("description", ""))]
            words += [k if resp[k] is None or str(resp[k]) == "None" else f"{k}: {resp[k]}"
                      for k in stray]
            for k in stray:
                del resp[k]
            resp["description"] = ", ".join(w for w in words if w)
        resp.setdefault("description", ERROR_TEXT.get(str(code), "OK"))
        if str(code)[0] in "45" and "content" not in resp:
            resp["content"] = {JSON: {"schema": ref("Message")}}
    ok = responses.get("200")
    if isinstance(ok, dict):
        props = ok.get("content", {}).get(JSON, {}).get("schema", {}).get("properties", {})
        if props.get("count", {}).get("type") == "number":   # FAB: a record count
            props["count"]["type"] = "integer"
        # FAB describes a map {column: ...} as an object with one property "column_name"
        for key, value in props.items():
            inner = value.get("properties", {}) if isinstance(value, dict) else {}
            if set(inner) == {"column_name"}:
                props[key] = {"type": "object", "additionalProperties": inner["column_name"],
                              "description": value.get("description", f"{{列名: …}} ({key})")}
    # the error codes every such operation can answer (app/api/base.py api_step,
    # FAB's protect()), where the docstring did not list them
    codes = []
    if op.get("security"):
        codes += ["401", "403"]
    if "{" in path:
        codes.append("404")
    if method in ("post", "put", "delete") and "/security/" not in path:
        codes.append("400")
        if "{" in path:
            codes.append("409")
    for code in codes:
        if code not in responses:
            responses[code] = {"description": ERROR_TEXT[code],
                               "content": {JSON: {"schema": ref("Message")}}}
    for code, target in RESPONSES.get((method, path), {}).items():
        resp = responses.setdefault(code, {"description": "OK"})
        resp.pop("$ref", None)
        resp.setdefault("description", "OK")
        if isinstance(target, tuple):
            resp["content"] = {target[0]: {"schema": target[1]}}
        else:
            resp["content"] = {JSON: {"schema": ref(target)}}
        resp["content"].update(copy.deepcopy(EXTRA_CONTENT.get((method, path), {})))


def _fix_request_body(method, path, op):
    target = REQUEST_BODIES.get((method, path))
    if target is None:
        return
    schema = ref(target) if isinstance(target, str) else target
    body = op.setdefault("requestBody", {})
    body["required"] = True
    content = body.setdefault("content", {})
    media = content.setdefault(JSON, {})
    media["schema"] = schema


def _fix_components(spec):
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(build_schemas())
    for api, (record, request_body) in FAB_COMPONENTS.items():
        for suffix in ("get", "get_list"):
            if f"{api}.{suffix}" in schemas:
                schemas[f"{api}.{suffix}"] = ref(record)
        if request_body:
            for suffix in ("post", "put"):
                if f"{api}.{suffix}" in schemas:
                    schemas[f"{api}.{suffix}"] = ref(request_body)
    # FAB's shared error responses: {message} — the one Message record (with ``field``)
    for code, resp in spec["components"].get("responses", {}).items():
        if isinstance(resp, dict) and JSON in resp.get("content", {}):
            resp["content"][JSON]["schema"] = ref("Message")
            resp["description"] = ERROR_TEXT.get(str(code), resp.get("description", ""))
    spec["components"].setdefault("securitySchemes", {})["jwt"] = {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "POST /api/v1/security/login 取得的 access_token",
    }


# the structure of ``q`` (documentation only: q is sent as rison text)
Q_SCHEMAS = ("get_list_schema", "get_item_schema", "get_info_schema")


def _walk_refs(node, rename=None, found=None):
    """Collect (and with ``rename`` rewrite) the schema $refs under ``node``."""
    prefix = "#/components/schemas/"
    if isinstance(node, dict):
        target = node.get("$ref")
        if isinstance(target, str) and target.startswith(prefix):
            name = target[len(prefix):]
            if rename and name in rename:
                name = rename[name]
                node["$ref"] = prefix + name
            if found is not None:
                found.add(name)
        for value in node.values():
            _walk_refs(value, rename, found)
    elif isinstance(node, list):
        for value in node:
            _walk_refs(value, rename, found)


def _tidy_components(spec):
    """Point references at the records themselves (a client then has one ``Customer``
    model, not a copy per alias) and drop schemas nothing refers to (FAB adds
    ``X.post``/``X.put`` also for resources that cannot be written)."""
    schemas = spec["components"]["schemas"]
    aliases = {name: s["$ref"].rsplit("/", 1)[1] for name, s in schemas.items()
               if set(s) == {"$ref"}}
    _walk_refs(spec, rename=aliases)
    for name in aliases:
        del schemas[name]
    used = set(Q_SCHEMAS)
    _walk_refs({k: v for k, v in spec.items() if k != "components"}, found=used)
    _walk_refs(spec["components"].get("responses", {}), found=used)
    todo = list(used)
    while todo:
        found = set()
        _walk_refs(schemas.get(todo.pop()), found=found)
        todo += [n for n in found - used]
        used |= found
    for name in [n for n in schemas if n not in used]:
        del schemas[name]


_ON_ITEM = {"get": "get", "put": "update", "delete": "delete", "post": "post", "patch": "patch"}


def _operation_ids(spec):
    """Short unique operationIds (a generated client's function names):
    ``customer_list``, ``customer_get``, ``customer_create``, ``customer_update``,
    ``opportunity_assign``, ``opportunity_plan_items_create``, ``security_login`` …"""
    taken = set()
    for path, item in spec.get("paths", {}).items():
        rest = path.split("/api/", 1)[-1].split("/", 1)[-1] if path.startswith("/api/") else path
        parts = [p for p in rest.split("/") if p]
        words = [p.lstrip("_") for p in parts if not p.startswith("{")] or ["openapi"]
        for method, op in item.items():
            if method not in OPERATIONS or not isinstance(op, dict) or op.get("operationId"):
                continue
            last = parts[-1] if parts else ""
            has_items = any(p.startswith(path + "/{") for p in spec["paths"])
            if last == "_openapi":
                name = ["openapi", "get"]
            elif last.startswith("{"):
                name = words + [_ON_ITEM.get(method, method)]
            elif path.endswith("/") or len(words) == 1:
                name = words + [{"get": "list", "post": "create"}.get(method, method)]
            elif method == "get" or (method == "post" and "get" not in item and not has_items):
                name = words
            else:
                name = words + [{"post": "create", "put": "update"}.get(method, method)]
            op_id = "_".join(name)
            if op_id in taken:
                op_id = f"{op_id}_{method}"
            taken.add(op_id)
            op["operationId"] = op_id


def _summaries(spec, appbuilder):
    """An operation's summary from its endpoint's docstring (the text before ``---``,
    which FAB does not carry over) where the YAML gave none."""
    from flask_appbuilder.api import BaseApi, ModelRestApi

    paths = spec.get("paths", {})
    for view in appbuilder.baseviews:
        if not isinstance(view, BaseApi):
            continue
        for name in dir(view):
            func = getattr(view, name, None)
            urls = getattr(func, "_urls", None)
            doc = (getattr(func, "__doc__", None) or "").split("---")[0].strip()
            if not urls or not doc:
                continue
            summary = " ".join(doc.split("\n\n")[0].split())
            # FAB's generic texts ("Get list of items from Model"): the resource's titles
            if isinstance(view, ModelRestApi) and name in ("get_list", "get", "info") \
                    and func.__doc__ == getattr(ModelRestApi, name).__doc__:
                titles = {"get_list": view.list_title, "get": view.show_title,
                          "info": f"{view.list_title}：字段、过滤条件和权限（_info）"}
                summary = str(titles.get(name) or summary)
            for url, methods in urls:
                item = paths.get(view.path_helper(path=url)) or {}
                for method in methods:
                    op = item.get(method.lower())
                    if isinstance(op, dict) and not op.get("summary"):
                        op["summary"] = summary.replace("``", "`")


def finish(spec, appbuilder):
    """Correct FAB's generated document ``spec`` (a dict) in place and return it."""
    from flask_appbuilder.api import ModelRestApi

    list_examples = {}
    for view in appbuilder.baseviews:
        if isinstance(view, ModelRestApi):
            list_examples[f"{view.route_base}/"] = _q_example(view)
    _fix_components(spec)
    _summaries(spec, appbuilder)
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if method not in OPERATIONS or not isinstance(op, dict):
                continue
            if not op.get("security") and path.startswith("/api/v1/") \
                    and path != "/api/v1/security/login":
                op["security"] = [{"jwt": []}]     # every route there is @protect()ed
            _fix_q(op, path, list_examples)
            _fix_responses(method, path, op)
            _fix_request_body(method, path, op)
            if op.get("security"):
                op["security"] = [{"jwt": []}]
    _tidy_components(spec)
    _operation_ids(spec)
    spec.setdefault("info", {})["description"] = (
        "客户关系管理系统 REST API。登录：POST /api/v1/security/login 取得 JWT，"
        "之后每个请求带 `Authorization: Bearer <access_token>`。列表的 `q` 参数是 rison。"
        "错误的响应体是 `{\"message\": \"中文说明\"}`。")
    return spec


__all__ = ["finish", "build_schemas", "RESPONSES"]
