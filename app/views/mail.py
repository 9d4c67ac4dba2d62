"""邮件: 写邮件, 我的邮箱 (收件箱 / 已发送 / 发送失败 / 全部), message view, retry,
the customer page section, and the ``mail`` REST resource.

Rules live in app/workflows/mail.py; this module parses input and renders.
"""
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.api import BaseApi, protect, safe
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from ..extensions import db
from ..workflows import mail as wf
from ..workflows.actors import EXECUTIVE, MANAGER, SUPERVISOR
from ..workflows.errors import ValidationError
from .common import api_errors, current_actor, html_errors
from .sections import customer_section

ORDER = 70
# One permission per function on "Mail" (pages, API, menu): can_list 我的邮箱 (list,
# read), can_send 写邮件/重发. The mailbox is private (the workflow decides whose mail).
RIGHTS = {role: [("Mail", "can_list|can_send")] for role in (EXECUTIVE, SUPERVISOR, MANAGER)}

TABS = [("inbox", _l("收件箱")), ("sent", _l("已发送")), ("failed", _l("发送失败")),
        ("all", _l("全部可见邮件"))]
PAGE_SIZE = 20


def local_time(value):
    """A stored time (naive = server-local, like ``datetime.now()``) in the configured
    zone (``BABEL_DEFAULT_TIMEZONE``, default Asia/Shanghai), timezone-aware."""
    if value is None:
        return None
    zone = current_app.config.get("BABEL_DEFAULT_TIMEZONE") or "Asia/Shanghai"
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("Asia/Shanghai")
    aware = value if value.tzinfo is not None else value.astimezone()
    return aware.astimezone(tz)


def fmt_time(value):
    return local_time(value).strftime("%Y-%m-%d %H:%M") if value else ""


def iso_time(value):
    """ISO 8601 with the configured zone's offset, e.g. 2026-03-02T10:00:00+08:00."""
    return local_time(value).isoformat(timespec="seconds") if value else None


def mail_time(m):
    return m.sent_on or m.received_on or m.created_on


def _template_helpers():
    return {"fmt_time": fmt_time, "mail_time": mail_time, "status_label": wf.status_label}


def _int_arg(name, default=0):
    try:
        return max(int(request.args.get(name, default)), 0)
    except (TypeError, ValueError):
        return default


def _ids(source, name):
    """Ids from repeated fields or comma lists (?contact_ids=1&contact_ids=2 or =1,2)."""
    out = set()
    for value in source.getlist(name):
        out.update(int(v) for v in str(value).split(",") if v.strip().isdigit())
    return out


class MailView(BaseView):
    route_base = "/mail"
    class_permission_name = "Mail"
    method_permission_name = {"box": "list", "show": "list", "compose": "send", "retry": "send"}
    default_view = "box"

    @expose("/box")
    @has_access
    @html_errors
    def box(self):
        tab = request.args.get("tab") or "inbox"
        if tab not in wf.BOXES:
            tab = "inbox"
        filters = {k: (request.args.get(k) or "").strip() for k in ("subject", "address", "customer")}
        customer_id = _int_arg("customer_id") or None
        page = _int_arg("page")
        count, rows = wf.search(db.session, current_actor(), box=tab, customer_id=customer_id,
                                page=page, page_size=PAGE_SIZE, **filters)
        pages = max((count + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        return self.render_template("mail/box.html", tabs=TABS, tab=tab, rows=rows, count=count,
                                    page=page, pages=pages, filters=filters,
                                    customer_id=customer_id, title=_("我的邮箱"),
                                    **_template_helpers())

    @expose("/show/<int:pk>")
    @has_access
    @html_errors
    def show(self, pk):
        actor = current_actor()
        mail = wf.get_mail(db.session, actor, pk)
        can_retry = mail.status == "failed" and (actor.is_admin or mail.owner_id == actor.id)
        return self.render_template("mail/show.html", mail=mail, can_retry=can_retry,
                                    title=mail.subject, **_template_helpers())

    @expose("/compose", methods=["GET", "POST"])
    @has_access
    @html_errors
    def compose(self):
        source = request.form if request.method == "POST" else request.args
        customer_id = (source.get("customer_id") or "").strip() or None
        if customer_id is not None and not customer_id.isdigit():
            raise ValidationError(_l("客户编号必须是整数。"), field="customer_id")
        actor = current_actor()
        choices = wf.compose_choices(db.session, actor, customer_id, current_app.config)
        values = {
            "contact_ids": _ids(source, "contact_ids"),
            "user_ids": _ids(source, "user_ids"),
            "document_ids": _ids(source, "document_ids"),
            "to": source.get("to", ""), "cc": source.get("cc", ""),
            "subject": source.get("subject", ""), "body": source.get("body", ""),
        }
        error = None
        if request.method == "POST":
            data = dict(values, customer_id=customer_id,
                        contact_ids=sorted(values["contact_ids"]),
                        user_ids=sorted(values["user_ids"]),
                        document_ids=sorted(values["document_ids"]))
            try:
                mail = wf.send(db.session, actor, data, current_app.config)
            except ValidationError as e:
                db.session.rollback()
                error = e
            else:
                if mail.status == "sent":
                    flash(_("邮件已发送。"), "success")
                else:
                    flash(_("邮件发送失败：%(error)s 邮件已保存，可在“发送失败”中重新发送。",
                            error=mail.error), "danger")
                return redirect(url_for("MailView.show", pk=mail.id))
        return self.render_template("mail/compose.html", choices=choices, values=values,
                                    error=error, customer_id=customer_id,
                                    title=_("写邮件")), (400 if error else 200)

    @expose("/retry/<int:pk>", methods=["POST"])
    @has_access
    @html_errors
    def retry(self, pk):
        mail = wf.retry(db.session, current_actor(), pk, current_app.config)
        if mail.status == "sent":
            flash(_("邮件已重新发送成功。"), "success")
        else:
            flash(_("重新发送仍然失败：%(error)s", error=mail.error), "danger")
        return redirect(url_for("MailView.show", pk=pk))


@customer_section(order=80, key="mail", title=_l("邮件"))
def mail_section(customer, actor):
    """The customer's newest mail (10) and links to all of it and to 写邮件."""
    count, rows = wf.customer_mail(db.session, customer.id, limit=10)
    has_address = any(c.email for c in customer.contacts)
    if not count and not has_address:
        return None
    return Markup(render_template("mail/_customer_section.html", customer=customer,
                                  rows=rows, count=count, **_template_helpers()))


def mail_json(m, full=True):
    out = {
        "id": m.id, "status": m.status, "subject": m.subject, "sender": m.sender,
        "recipients": wf.split_addresses(m.recipients), "cc": wf.split_addresses(m.cc),
        "to_addresses": [{"name": n, "address": a} for n, a in wf.address_pairs(m.recipients)],
        "cc_addresses": [{"name": n, "address": a} for n, a in wf.address_pairs(m.cc)],
        "customer_id": m.customer_id, "owner_id": m.owner_id, "message_id": m.message_id,
        "in_reply_to": m.in_reply_to, "error": m.error,
        "sent_on": iso_time(m.sent_on),
        "received_on": iso_time(m.received_on),
        "created_on": iso_time(m.created_on),
    }
    if full:
        out["body"] = m.body
        out["attachments"] = [{"id": a.id, "filename": a.filename, "mime": a.mime,
                               "size": a.size, "document_id": a.document_id}
                              for a in m.attachments]
    return out


class MailApi(BaseApi):
    resource_name = "mail"
    class_permission_name = "Mail"
    method_permission_name = {"get_list": "list", "get": "list", "post": "send", "retry": "send"}
    allow_browser_login = True
    openapi_spec_tag = "mail"

    @expose("/", methods=["GET"])
    @protect()
    @safe
    @api_errors
    def get_list(self):
        """Mail the caller may read (own mailbox + mail linked to readable customers).
        ---
        get:
          parameters:
          - {in: query, name: box, schema: {type: string, enum: [inbox, sent, failed, all]}}
          - {in: query, name: subject, schema: {type: string}}
          - {in: query, name: address, schema: {type: string}}
          - {in: query, name: customer, schema: {type: string}, description: customer name or number}
          - {in: query, name: customer_id, schema: {type: integer}}
          - {in: query, name: page, schema: {type: integer}}
          - {in: query, name: page_size, schema: {type: integer}}
          responses:
            200: {description: "{count, result: [mail]}"}
            400: {$ref: '#/components/responses/400'}
            401: {$ref: '#/components/responses/401'}
        """
        try:
            page = max(int(request.args.get("page", 0)), 0)
            size = min(max(int(request.args.get("page_size", 20)), 1), 100)
        except ValueError:
            return self.response_400(message=_("page/page_size 必须是整数。"))
        count, rows = wf.search(
            db.session, current_actor(), box=request.args.get("box", "all"),
            subject=request.args.get("subject"), address=request.args.get("address"),
            customer=request.args.get("customer"), customer_id=request.args.get("customer_id"),
            page=page, page_size=size)
        return self.response(200, count=count, result=[mail_json(m, full=False) for m in rows])

    @expose("/<int:pk>", methods=["GET"])
    @protect()
    @safe
    @api_errors
    def get(self, pk):
        """One message (with body and attachments).
        ---
        get:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: mail}
            403: {$ref: '#/components/responses/403'}
            404: {$ref: '#/components/responses/404'}
        """
        return self.response(200, result=mail_json(wf.get_mail(db.session, current_actor(), pk)))

    @expose("/", methods=["POST"])
    @protect()
    @safe
    @api_errors
    def post(self):
        """Store and send a message.
        Body: {to: [addr], contact_ids: [id], user_ids: [id], cc: [addr], subject, body,
        customer_id?, document_ids?}. 201 = sent; 502 = stored but the SMTP server
        failed (``message`` and ``result.error`` say why; retry with /<id>/retry).
        ---
        post:
          requestBody:
            content:
              application/json:
                schema: {type: object}
          responses:
            201: {description: "sent: {id, result}"}
            400: {$ref: '#/components/responses/400'}
            403: {$ref: '#/components/responses/403'}
            502: {description: "stored with status failed: {message, id, result}"}
        """
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return self.response_400(message=_("请求体必须是 JSON 对象。"))
        mail = wf.send(db.session, current_actor(), data, current_app.config)
        return self._delivery_response(mail, 201)

    @expose("/<int:pk>/retry", methods=["POST"])
    @protect()
    @safe
    @api_errors
    def retry(self, pk):
        """Send a failed message again (same record). 200 = sent, 502 = failed again,
        409 = not in status failed, 403 = not the sender.
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            200: {description: sent}
            403: {$ref: '#/components/responses/403'}
            404: {$ref: '#/components/responses/404'}
            409: {description: wrong state}
            502: {description: failed again}
        """
        mail = wf.retry(db.session, current_actor(), pk, current_app.config)
        return self._delivery_response(mail, 200)

    def _delivery_response(self, mail, ok_code):
        if mail.status == "sent":
            return self.response(ok_code, id=mail.id, message=_("邮件已发送。"),
                                 result=mail_json(mail))
        return self.response(502, id=mail.id, message=mail.error, result=mail_json(mail))


def register(appbuilder):
    appbuilder.add_view(MailView, "Mailbox", label=_l("我的邮箱"), icon="fa-inbox",
                        category="Mail")
    appbuilder.add_link("ComposeMail", href="MailView.compose", label=_l("写邮件"),
                        icon="fa-pencil", category="Mail")
    appbuilder.add_api(MailApi)
