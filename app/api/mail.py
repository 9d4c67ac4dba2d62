"""``/api/v1/mail``: 我的邮箱 as JSON, one message, send and retry.

Sending is two units of work (app/views/mail.py ``send_mail``/``retry_mail``,
shared with the HTML pages): the message is committed before the SMTP
conversation, the outcome after it — a 502 answer (stored, the server refused)
keeps the failed record.
"""
from flask import request
from flask_appbuilder import expose
from flask_appbuilder.api import BaseApi, protect
from flask_babel import gettext as _

from ..extensions import db
from ..views.common import current_actor
from ..views.mail import iso_time, retry_mail, send_mail
from ..workflows import mail as wf
from .base import api_step, int_arg, json_body

ORDER = 70


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
    """``/api/v1/mail``: the mailbox, one message, send, retry (permission "Mail")."""

    resource_name = "mail"
    class_permission_name = "Mail"
    method_permission_name = {"get_list": "list", "get": "list", "post": "send", "retry": "send"}
    allow_browser_login = True
    openapi_spec_tag = "mail"

    @expose("/", methods=["GET"])
    @protect()
    @api_step
    def get_list(self):
        """Mail the caller may read (own mailbox + mail linked to readable customers).
        ``search``: the 快速搜索 of 我的邮箱 (every word in the subject, the sender or the
        recipients; ``%``, ``_``, ``\\`` literal; at most 100 characters, else 400).
        ---
        get:
          parameters:
          - {in: query, name: box, schema: {type: string, enum: [inbox, sent, failed, all]}}
          - {in: query, name: search, schema: {type: string, maxLength: 100}, description: "快速搜索：主题、发件人、收件人（每个词都要出现）"}
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
        page = int_arg(request.args, "page")
        size = int_arg(request.args, "page_size", 20, 1, 100)
        count, rows = wf.search(
            db.session, current_actor(), box=request.args.get("box", "all"),
            subject=request.args.get("subject"), address=request.args.get("address"),
            customer=request.args.get("customer"), customer_id=request.args.get("customer_id"),
            page=page, page_size=size, text=request.args.get("search"))
        return self.response(200, count=count, result=[mail_json(m, full=False) for m in rows])

    @expose("/<int:pk>", methods=["GET"])
    @protect()
    @api_step
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
    @api_step
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
        mail = send_mail(current_actor(), json_body())
        return self._delivery_response(mail, 201)

    @expose("/<int:pk>/retry", methods=["POST"])
    @protect()
    @api_step
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
        mail = retry_mail(current_actor(), pk)
        return self._delivery_response(mail, 200)

    def _delivery_response(self, mail, ok_code):
        if mail.status == "sent":
            return self.response(ok_code, id=mail.id, message=_("邮件已发送。"),
                                 result=mail_json(mail))
        return self.response(502, id=mail.id, message=mail.error, result=mail_json(mail))



def register(appbuilder):
    appbuilder.add_api(MailApi)
