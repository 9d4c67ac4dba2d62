"""邮件: 写邮件, 我的邮箱 (收件箱 / 已发送 / 发送失败 / 全部), message view, retry,
and the customer page section (the ``mail`` REST resource: app/api/mail.py).

Rules live in app/workflows/mail.py; this module parses input and renders.
"""
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from ..api.base import commit_step, html_step, lenient_int
from ..extensions import db
from ..workflows import mail as wf
from ..workflows.actors import EXECUTIVE, MANAGER, SUPERVISOR
from ..workflows.errors import ValidationError
from .common import current_actor
from .lists import chosen_tab
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


def _ids(source, name):
    """Ids from repeated fields or comma lists (?contact_ids=1&contact_ids=2 or =1,2)."""
    out = set()
    for value in source.getlist(name):
        out.update(int(v) for v in str(value).split(",") if v.strip().isdigit())
    return out


def send_mail(actor, data):
    """写邮件 as two units of work (app/workflows/mail.py): the message is stored
    and committed before it goes to the SMTP server, so a crash or a timeout there
    loses nothing; then the outcome (sent | failed) is committed, whatever it is."""
    mail = wf.create_draft(db.session, actor, data, current_app.config)
    commit_step()
    return _transmit(actor, mail.id, "draft")


def retry_mail(actor, pk):
    """重新发送: claim the failed message (committed: a racing retry gets 409), send."""
    wf.claim_retry(db.session, actor, pk)
    commit_step()
    return _transmit(actor, pk, "failed")


def _transmit(actor, mail_id, previous):
    mail = wf.transmit(db.session, actor, mail_id, current_app.config, previous)
    commit_step()         # kept even when the answer is an error (502 / flash)
    return mail


class MailView(BaseView):
    route_base = "/mail"
    class_permission_name = "Mail"
    method_permission_name = {"box": "list", "show": "list", "compose": "send", "retry": "send"}
    default_view = "box"

    @expose("/box")
    @has_access
    @html_step
    def box(self):
        """Tabs ``?tab=inbox|sent|failed|all`` (remembered per user), ``?q=`` 快速搜索
        (subject, sender, recipients), the detailed filters; paging keeps them all."""
        tab = chosen_tab("MailView", request.args.get("tab"), [k for k, _label in TABS], "inbox")
        filters = {k: (request.args.get(k) or "").strip()
                   for k in ("q", "subject", "address", "customer")}
        customer_id = lenient_int(request.args.get("customer_id")) or None
        page = lenient_int(request.args.get("page"))
        error, count, rows = None, 0, []
        try:
            count, rows = wf.search(db.session, current_actor(), box=tab,
                                    customer_id=customer_id, page=page, page_size=PAGE_SIZE,
                                    text=filters["q"], subject=filters["subject"],
                                    address=filters["address"], customer=filters["customer"])
        except ValidationError as e:
            error = e
        pages = max((count + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        return self.render_template("mail/box.html", tabs=TABS, tab=tab, rows=rows, count=count,
                                    page=page, pages=pages, filters=filters, error=error,
                                    customer_id=customer_id, title=_("我的邮箱"),
                                    **_template_helpers()), (400 if error else 200)

    @expose("/show/<int:pk>")
    @has_access
    @html_step
    def show(self, pk):
        actor = current_actor()
        mail = wf.get_mail(db.session, actor, pk)
        can_retry = mail.status == "failed" and (actor.is_admin or mail.owner_id == actor.id)
        return self.render_template("mail/show.html", mail=mail, can_retry=can_retry,
                                    title=mail.subject, **_template_helpers())

    @expose("/compose", methods=["GET", "POST"])
    @has_access
    @html_step
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
                mail = send_mail(actor, data)
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
    @html_step
    def retry(self, pk):
        mail = retry_mail(current_actor(), pk)
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


def register(appbuilder):
    appbuilder.add_view(MailView, "Mailbox", label=_l("我的邮箱"), icon="fa-inbox",
                        category="Mail")
    appbuilder.add_link("ComposeMail", href="MailView.compose", label=_l("写邮件"),
                        icon="fa-pencil", category="Mail")
