"""邮件收发 against real servers on loopback started here:

- SMTP: aiosmtpd's Controller on 127.0.0.1 (a free port) records what the app sends;
  the received bytes are parsed with the ``email`` package (Chinese subject/body,
  attachment). A handler answering 550, and a closed port, give ``failed`` records.
- IMAP: Debian's dovecot (package ``dovecot-imapd``) with a throw-away config in a
  temp dir; messages are written into its maildir directly, then ``crm mail-fetch``
  runs twice.
"""
import email
import email.header
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from datetime import datetime
from email import policy
from email.header import Header

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Document, DocumentBlob, MailMessage, WorkflowEvent
from app.views.sections import CUSTOMER_SECTIONS
from app.workflows import mail as wf
from app.workflows.actors import Actor

from . import factories as f

DOVECOT = "/usr/sbin/dovecot"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- SMTP server (aiosmtpd) ---------------------------------------------------------

class RecordingHandler:
    """Accepts and records messages; ``refuse`` makes it answer 550 to DATA."""

    def __init__(self):
        self.messages = []
        self.refuse = None

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            return self.refuse
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def find(self, message_id):
        for mail_from, rcpts, content in self.messages:
            msg = email.message_from_bytes(content, policy=policy.default)
            if msg["Message-ID"] == message_id:
                return mail_from, rcpts, msg
        return None


@pytest.fixture(scope="module")
def smtp_server():
    from aiosmtpd.controller import Controller

    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


@pytest.fixture
def smtp(app, smtp_server, monkeypatch):
    controller, handler = smtp_server
    handler.refuse = None
    monkeypatch.setitem(app.config, "MAIL_SERVER", "127.0.0.1")
    monkeypatch.setitem(app.config, "MAIL_PORT", controller.port)
    monkeypatch.setitem(app.config, "MAIL_DEFAULT_SENDER", "crm@demo.crm")
    monkeypatch.setitem(app.config, "MAIL_TIMEOUT", 10)
    return handler


# ---- IMAP server (dovecot) -------------------------------------------------------------

DOVECOT_CONF = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
instance_name = crm-test-{port}
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
login_trusted_networks = 127.0.0.0/8
mail_location = maildir:~/Maildir
default_login_user = dovenull
default_internal_user = dovecot
default_internal_group = dovecot
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = {root}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
"""


class Dovecot:
    def __init__(self, root, port):
        self.root, self.port = root, port
        self.uid = pwd.getpwnam("nobody").pw_uid
        self.gid = pwd.getpwnam("nobody").pw_gid

    def add_user(self, name, password):
        home = os.path.join(self.root, "home", name)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(home, "Maildir", sub), exist_ok=True)
        with open(os.path.join(self.root, "passwd"), "a") as fh:
            fh.write(f"{name}:{{PLAIN}}{password}:{self.uid}:{self.gid}::{home}\n")
        self._chown(os.path.join(self.root, "home"))
        return home

    def deliver(self, user, raw):
        """Put one message into the user's maildir (as an MTA would)."""
        new = os.path.join(self.root, "home", user, "Maildir", "new")
        name = f"{int(time.time())}.{uuid.uuid4().hex}.crmtest"
        with open(os.path.join(self.root, "home", user, "Maildir", "tmp", name), "wb") as fh:
            fh.write(raw)
        os.rename(os.path.join(self.root, "home", user, "Maildir", "tmp", name),
                  os.path.join(new, name))
        self._chown(os.path.join(self.root, "home", user))

    def _chown(self, top):
        for dirpath, dirnames, filenames in os.walk(top):
            os.chown(dirpath, self.uid, self.gid)
            for n in filenames:
                os.chown(os.path.join(dirpath, n), self.uid, self.gid)


@pytest.fixture(scope="module")
def dovecot():
    if not os.path.exists(DOVECOT):
        pytest.skip("dovecot not found: install the Debian package dovecot-imapd "
                    "(apt-get install dovecot-imapd)")
    if os.geteuid() != 0:
        pytest.skip("the dovecot test server must be started as root (it drops to "
                    "dovenull/nobody itself)")
    root = tempfile.mkdtemp(prefix="crm-dovecot-")
    os.chmod(root, 0o755)  # the mail user (nobody) must reach the maildirs
    for sub in ("run", "state", "home"):
        os.makedirs(os.path.join(root, sub))
    open(os.path.join(root, "passwd"), "w").close()
    port = free_port()
    conf = os.path.join(root, "dovecot.conf")
    with open(conf, "w") as fh:
        fh.write(DOVECOT_CONF.format(root=root, port=port))
    proc = subprocess.Popen([DOVECOT, "-F", "-c", conf], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    server = Dovecot(root, port)
    deadline = time.monotonic() + 30
    while True:  # wait for the greeting; not a timing assertion
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(100).startswith(b"* OK"):
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.stdout.read().decode("utf-8", "replace") if proc.poll() is not None else ""
            log = open(os.path.join(root, "dovecot.log")).read() if os.path.exists(
                os.path.join(root, "dovecot.log")) else ""
            proc.kill()
            shutil.rmtree(root, ignore_errors=True)
            pytest.fail(f"dovecot did not start: {out}\n{log}")
        time.sleep(0.1)
    yield server
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def mailbox(app, dovecot, monkeypatch, uniq):
    """A fresh IMAP user for this test; the app's CRM_IMAP_* point at it."""
    user, password = uniq("box"), uniq("pw")
    dovecot.add_user(user, password)
    for key, value in {"IMAP_HOST": "127.0.0.1", "IMAP_PORT": dovecot.port, "IMAP_USER": user,
                       "IMAP_PASSWORD": password, "IMAP_SSL": False, "IMAP_MAILBOX": "INBOX"}.items():
        monkeypatch.setitem(app.config, key, value)
    return lambda raw: dovecot.deliver(user, raw)


# ---- builders -------------------------------------------------------------------------

def make_customer(s, manager_id, uniq, n_contacts=1):
    c = f.customer(s, manager_id, name=uniq("邮件客户"))
    contacts = [f.contact(s, c, manager_id, name=f"联系人{i}", email=f"{uniq('ct')}@kehu.cn")
                for i in range(n_contacts)]
    return c, contacts


def make_document(app, s, customer, actor_id, name, data, mime="application/pdf"):
    sha = hashlib.sha256(data).hexdigest()
    path = os.path.join(app.config["DOCUMENT_DIR"], sha[:2], sha[2:4], sha)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    if s.get(DocumentBlob, sha) is None:
        s.add(DocumentBlob(sha256=sha, size=len(data), mime=mime, created_on=datetime.now()))
        s.flush()
    d = Document(customer_id=customer.id, name=name, sha256=sha, size=len(data), mime=mime,
                 created_by_fk=actor_id, changed_by_fk=actor_id)
    s.add(d)
    s.flush()
    return d


def mail_count(s, **where):
    q = select(func.count()).select_from(MailMessage)
    for k, v in where.items():
        q = q.where(getattr(MailMessage, k) == v)
    return s.scalar(q)


# ---- sending ----------------------------------------------------------------------------

def test_api_send_chinese_with_attachment_reaches_smtp_server(app, api, dbs, smtp, user_id, uniq):
    m1 = user_id("manager1")
    pdf = b"%PDF-1.4 " + os.urandom(2000)
    with dbs() as s:
        cust, (contact,) = make_customer(s, m1, uniq)
        doc = make_document(app, s, cust, m1, "报价单（2026）.pdf", pdf)
        s.commit()
        cust_id, contact_id, contact_email, doc_id = cust.id, contact.id, contact.email, doc.id
    subject = f"关于打印机报价的说明 {uniq()}"
    body = "李经理您好：\n\n附件是我们的最新报价，请查收。\n\n张伟"
    r = api("manager1").post("/api/v1/mail/", json={
        "contact_ids": [contact_id], "user_ids": [user_id("manager2")], "to": ["Boss@Partner.CN"],
        "subject": subject, "body": body, "document_ids": [doc_id]})
    assert r.status_code == 201, r.json
    res = r.json["result"]
    assert res["status"] == "sent" and res["customer_id"] == cust_id and res["error"] is None
    assert res["recipients"] == [contact_email, "manager2@demo.crm", "Boss@partner.cn"]
    assert res["attachments"][0]["filename"] == "报价单（2026）.pdf"

    found = smtp.find(res["message_id"])
    assert found, "the SMTP server did not receive the message"
    mail_from, rcpts, msg = found
    assert mail_from == "crm@demo.crm"
    assert set(rcpts) == {contact_email, "manager2@demo.crm", "Boss@partner.cn"}
    assert msg["Subject"] == subject
    assert msg["From"].addresses[0].display_name == "张伟"
    assert msg["From"].addresses[0].addr_spec == "crm@demo.crm"
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert text.replace("\r\n", "\n").strip() == body.strip()
    atts = list(msg.iter_attachments())
    assert len(atts) == 1
    assert atts[0].get_filename() == "报价单（2026）.pdf"
    assert atts[0].get_content_type() == "application/pdf"
    assert atts[0].get_payload(decode=True) == pdf

    with dbs() as s:
        m = s.get(MailMessage, r.json["id"])
        assert m.status == "sent" and m.sent_on is not None and m.owner_id == m1
        assert m.attachments[0].sha256 == hashlib.sha256(pdf).hexdigest()
        steps = s.execute(select(WorkflowEvent.from_status, WorkflowEvent.to_status)
                          .where(WorkflowEvent.entity == "mail", WorkflowEvent.entity_id == m.id)
                          .order_by(WorkflowEvent.id)).all()
        assert steps == [(None, "draft"), ("draft", "sent")]
    # readable by the sender and (linked to a customer) by other staff
    assert api("manager1").get(f"/api/v1/mail/{r.json['id']}").json["result"]["body"] == body
    assert api("manager2").get(f"/api/v1/mail/{r.json['id']}").status_code == 200


def test_html_compose_from_customer_page_with_csrf(app, web, dbs, smtp, user_id, uniq):
    m1 = user_id("manager1")
    with dbs() as s:
        cust, (c1, c2) = make_customer(s, m1, uniq, n_contacts=2)
        s.commit()
        cust_id, c1_id, c1_email, c2_id = cust.id, c1.id, c1.email, c2.id
    w = web("manager1")
    form_url = f"/mail/compose?customer_id={cust_id}&contact_ids={c1_id}"
    page = w.get(form_url)
    assert page.status_code == 200
    assert "写邮件" in page.text and c1_email in page.text
    assert f'value="{c1_id}" checked' in page.text and f'value="{c2_id}" checked' not in page.text
    subject = f"节日问候 {uniq()}"
    # without the CSRF token: refused, nothing stored
    r = w.post("/mail/compose", data={"customer_id": cust_id, "contact_ids": c1_id,
                                      "subject": subject, "body": "x"})
    assert r.status_code == 400
    with dbs() as s:
        assert mail_count(s, subject=subject) == 0
    # a bad typed address: the form comes back with the message and the input kept
    r = w.post_form("/mail/compose", {"customer_id": cust_id, "contact_ids": c1_id,
                                      "to": "不是地址", "subject": subject, "body": "正文"},
                    form_url=form_url)
    assert r.status_code == 400 and "格式不正确" in r.text and subject in r.text
    with dbs() as s:
        assert mail_count(s, subject=subject) == 0
    r = w.post_form("/mail/compose", {"customer_id": cust_id, "contact_ids": c1_id,
                                      "subject": subject, "body": "祝您节日快乐！"},
                    form_url=form_url)
    assert r.status_code == 302 and "/mail/show/" in r.headers["Location"]
    with dbs() as s:
        m = s.scalar(select(MailMessage).where(MailMessage.subject == subject))
        assert m.status == "sent" and m.customer_id == cust_id and m.recipients == c1_email
        mail_id, message_id = m.id, m.message_id
    assert smtp.find(message_id)[2].get_body().get_content().strip() == "祝您节日快乐！"
    show = w.get(f"/mail/show/{mail_id}")
    assert show.status_code == 200 and "邮件已发送" in show.text and "祝您节日快乐！" in show.text
    sent_box = w.get(f"/mail/box?tab=sent&subject={subject}")
    assert sent_box.status_code == 200 and subject in sent_box.text and "已发送" in sent_box.text
    assert "没有邮件。" in w.get(f"/mail/box?tab=failed&subject={subject}").text
    # the customer page section lists it
    section = next(sec for sec in CUSTOMER_SECTIONS if sec.key == "mail")
    with app.test_request_context():
        from app.models import Customer
        html = section.render(db.session.get(Customer, cust_id),
                              Actor(id=m1, roles=frozenset({"客户经理"})))
        db.session.remove()
    assert subject in str(html) and "写邮件" in str(html)


def test_smtp_refusal_is_recorded_and_retried_on_the_same_record(app, api, dbs, smtp, user_id,
                                                                 uniq):
    m1 = user_id("manager1")
    with dbs() as s:
        cust, (contact,) = make_customer(s, m1, uniq)
        s.commit()
        contact_id = contact.id
    smtp.refuse = "550 5.7.1 Relaying denied"
    subject, body = f"合同草案 {uniq()}", "请审阅合同草案。"
    r = api("manager1").post("/api/v1/mail/", json={"contact_ids": [contact_id],
                                                   "subject": subject, "body": body})
    assert r.status_code == 502
    mail_id = r.json["id"]
    assert r.json["result"]["status"] == "failed"
    assert "拒收" in r.json["message"] and "550" in r.json["message"]
    with dbs() as s:
        m = s.get(MailMessage, mail_id)
        assert (m.status, m.subject, m.body) == ("failed", subject, body)
        assert "550 5.7.1 Relaying denied" in m.error and m.sent_on is None
        message_id = m.message_id
    assert smtp.find(message_id) is None
    # the failed tab shows it; the error is shown in Chinese with a retry button
    page = api("manager1").get("/api/v1/mail/?box=failed&page_size=100")
    assert mail_id in [x["id"] for x in page.json["result"]]
    # another user may read it (linked to a customer) but not resend it
    assert api("manager2").post(f"/api/v1/mail/{mail_id}/retry").status_code == 403
    # the server is back
    smtp.refuse = None
    r = api("manager1").post(f"/api/v1/mail/{mail_id}/retry")
    assert r.status_code == 200 and r.json["result"]["status"] == "sent"
    assert r.json["result"]["error"] is None and r.json["id"] == mail_id
    assert smtp.find(message_id)[2]["Subject"] == subject
    # a sent message cannot be retried: 409, unchanged
    r = api("manager1").post(f"/api/v1/mail/{mail_id}/retry")
    assert r.status_code == 409 and "发送失败" in r.json["message"]
    with dbs() as s:
        assert mail_count(s, subject=subject) == 1
        steps = s.execute(select(WorkflowEvent.from_status, WorkflowEvent.to_status)
                          .where(WorkflowEvent.entity == "mail", WorkflowEvent.entity_id == mail_id)
                          .order_by(WorkflowEvent.id)).all()
        assert steps == [(None, "draft"), ("draft", "failed"), ("failed", "sent")]


def test_unreachable_smtp_server_then_html_retry(app, web, dbs, smtp, smtp_server, user_id, uniq,
                                                 monkeypatch):
    closed = free_port()  # nothing listens there
    monkeypatch.setitem(app.config, "MAIL_PORT", closed)
    w = web("manager1")
    subject = f"无法送达 {uniq()}"
    r = w.post_form("/mail/compose", {"to": "someone@partner.cn", "subject": subject,
                                      "body": "测试"}, form_url="/mail/compose")
    assert r.status_code == 302
    with dbs() as s:
        m = s.scalar(select(MailMessage).where(MailMessage.subject == subject))
        assert m.status == "failed" and "无法连接邮件服务器" in m.error and str(closed) in m.error
        mail_id = m.id
    page = w.get(f"/mail/show/{mail_id}")
    assert "邮件发送失败" in page.text and "重新发送" in page.text and "无法连接邮件服务器" in page.text
    assert subject in w.get("/mail/box?tab=failed").text
    # retry needs CSRF; GET is not allowed
    assert w.post(f"/mail/retry/{mail_id}").status_code == 400
    assert w.get(f"/mail/retry/{mail_id}").status_code == 405
    monkeypatch.setitem(app.config, "MAIL_PORT", smtp_server[0].port)
    r = w.post_form(f"/mail/retry/{mail_id}", {}, form_url=f"/mail/show/{mail_id}")
    assert r.status_code == 302
    with dbs() as s:
        m = s.get(MailMessage, mail_id)
        assert m.status == "sent" and m.error is None and m.sent_on is not None
        assert smtp.find(m.message_id) is not None


def test_bad_input_stores_nothing(app, api, dbs, smtp, user_id, uniq):
    m1 = user_id("manager1")
    with dbs() as s:
        cust, (contact,) = make_customer(s, m1, uniq)
        other, _ = make_customer(s, m1, uniq)
        doc = make_document(app, s, other, m1, "别家的文档.txt", b"secret", "text/plain")
        s.commit()
        contact_id, cust_id, doc_id = contact.id, cust.id, doc.id
    c = api("manager1")
    subject = f"坏输入 {uniq()}"
    cases = [
        ({"to": ["not-an-address"], "subject": subject}, "to"),
        ({"subject": subject, "body": "没有收件人"}, "to"),
        ({"to": ["a@b.cn"], "subject": "  "}, "subject"),
        ({"contact_ids": [10 ** 9], "subject": subject}, "contact_ids"),
        ({"user_ids": ["x"], "subject": subject}, "user_ids"),
        ({"contact_ids": [contact_id], "subject": subject, "document_ids": [doc_id]}, "document_ids"),
        ({"contact_ids": [contact_id], "customer_id": 10 ** 9, "subject": subject}, "customer_id"),
    ]
    for payload, field in cases:
        r = c.post("/api/v1/mail/", json=payload)
        assert r.status_code == 400 and r.json.get("field") == field, (payload, r.json)
    assert c.post("/api/v1/mail/", data="x", content_type="text/plain").status_code == 400
    with dbs() as s:
        assert mail_count(s, subject=subject) == 0
    assert smtp.messages == [] or all(
        email.message_from_bytes(x[2], policy=policy.default)["Subject"] != subject
        for x in smtp.messages)
    assert cust_id


def test_rights_own_mail_and_customer_mail(app, api, dbs, smtp, user_id, uniq):
    m1 = user_id("manager1")
    with dbs() as s:
        cust, (contact,) = make_customer(s, m1, uniq)
        s.commit()
        contact_email, cust_id, cust_name = contact.email, cust.id, cust.name
    private = api("manager1").post("/api/v1/mail/", json={
        "to": "friend@elsewhere.cn", "subject": f"私人 {uniq()}", "body": "不关联客户"}).json
    linked = api("manager1").post("/api/v1/mail/", json={
        # typed address in another case: still linked to the customer
        "to": contact_email.upper(), "subject": f"客户 {uniq()}", "body": "关联客户"}).json
    assert private["result"]["customer_id"] is None
    assert linked["result"]["customer_id"] == cust_id
    c2 = api("manager2")
    assert c2.get(f"/api/v1/mail/{private['id']}").status_code == 403
    assert c2.get(f"/api/v1/mail/{linked['id']}").status_code == 200
    ids2 = [x["id"] for x in c2.get("/api/v1/mail/?box=all&page_size=100&address=elsewhere.cn").json["result"]]
    assert private["id"] not in ids2
    ids_cust = [x["id"] for x in c2.get(f"/api/v1/mail/?customer_id={cust_id}").json["result"]]
    assert ids_cust == [linked["id"]]
    ids_name = [x["id"] for x in c2.get(f"/api/v1/mail/?customer={cust_name}").json["result"]]
    assert ids_name == [linked["id"]]
    # manager2's own mailbox does not show manager1's mail
    assert private["id"] not in [x["id"] for x in c2.get("/api/v1/mail/?box=sent&page_size=100").json["result"]]
    assert api("admin").get(f"/api/v1/mail/{private['id']}").status_code == 200
    w2 = app.test_client()
    assert w2.get(f"/api/v1/mail/{private['id']}").status_code == 401
    assert api("manager2").get("/api/v1/mail/?box=nonsense").status_code == 400


# ---- receiving ---------------------------------------------------------------------------

def _raw(headers, body_bytes, content_type="text/plain; charset=utf-8"):
    lines = [f"{k}: {v}" for k, v in headers.items()]
    lines += [f"Content-Type: {content_type}", "Content-Transfer-Encoding: 8bit", "MIME-Version: 1.0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body_bytes


def test_mail_fetch_decodes_chinese_links_customers_and_is_idempotent(app, dbs, api, smtp, mailbox,
                                                                      user_id, uniq):
    m1 = user_id("manager1")
    with dbs() as s:
        cust, (contact,) = make_customer(s, m1, uniq)
        other, (other_contact,) = make_customer(s, m1, uniq)
        s.commit()
        cust_id, other_id = cust.id, other.id
        contact_email, other_email = contact.email, other_contact.email
    # a message we sent, to which the customer replies
    sent = api("manager1").post("/api/v1/mail/", json={
        "to": [contact_email], "subject": "报价", "body": "见附件"}).json["result"]
    tag = uniq()
    subj_utf8 = f"回复：报价 {tag}"
    subj_gbk = f"货款已付，请查收 {tag}"
    subj_gb2312 = f"朱镕基同志的来信 {tag}"  # 镕 is not in GB2312: real mail labels GBK as gb2312
    msgs = {
        # 1. UTF-8 body, RFC 2047 (base64) subject, a reply from the contact (address in upper case)
        "utf8": _raw({"From": f"{Header('李四', 'utf-8').encode()} <{contact_email.upper()}>",
                      "To": "crm@demo.crm", "Subject": Header(subj_utf8, "utf-8").encode(),
                      "Message-ID": f"<u-{tag}@kehu.cn>", "In-Reply-To": sent["message_id"],
                      "Date": "Mon, 02 Mar 2026 10:00:00 +0800"},
                     "张经理您好，价格可以接受。".encode("utf-8")),
        # 2. GBK body and a GBK quoted-printable subject; sent to manager1 (owner) by another customer
        "gbk": _raw({"From": f"{Header('王五', 'gbk').encode()} <{other_email}>",
                     "To": "manager1@demo.crm", "Cc": "crm@demo.crm",
                     "Subject": Header(subj_gbk, "gbk").encode(),
                     "Message-ID": f"<g-{tag}@kehu.cn>"},
                    "货款二十万元已于今日汇出。".encode("gbk"), "text/plain; charset=gbk"),
        # 3. labelled gb2312 but holding GBK-only characters; no Message-ID at all
        "gb2312": _raw({"From": "stranger@nowhere.cn", "To": "crm@demo.crm",
                        "Subject": "=?gb2312?b?" + __import__("base64").b64encode(
                            subj_gb2312.encode("gbk")).decode() + "?="},
                       "镕字在 GB2312 里没有。".encode("gbk"), "text/plain; charset=gb2312"),
    }
    for raw in msgs.values():
        mailbox(raw)

    runner = app.test_cli_runner()
    first = runner.invoke(args=["crm", "mail-fetch"])
    assert first.exit_code == 0, first.output
    assert "新邮件 3 封" in first.output
    second = runner.invoke(args=["crm", "mail-fetch"])
    assert second.exit_code == 0, second.output
    assert "新邮件 0 封" in second.output and "跳过 3 封" in second.output

    with dbs() as s:
        rows = {m.subject: m for m in s.scalars(select(MailMessage).where(
            MailMessage.status == "received", MailMessage.subject.like(f"%{tag}"))).all()}
        assert set(rows) == {subj_utf8, subj_gbk, subj_gb2312}
        r1, r2, r3 = rows[subj_utf8], rows[subj_gbk], rows[subj_gb2312]
        assert r1.body == "张经理您好，价格可以接受。" and r1.customer_id == cust_id
        assert r1.sender == f"李四 <{contact_email.upper()}>"
        assert r1.owner_id == m1 and r1.in_reply_to == sent["message_id"]  # via In-Reply-To
        assert r1.received_on == datetime(2026, 3, 2, 10, 0) or r1.received_on is not None
        assert r2.body == "货款二十万元已于今日汇出。" and r2.customer_id == other_id
        assert r2.owner_id == m1 and r2.sender == f"王五 <{other_email}>"
        assert r2.recipients == "manager1@demo.crm" and r2.cc == "crm@demo.crm"
        assert r3.body == "镕字在 GB2312 里没有。" and r3.customer_id is None and r3.owner_id is None
        assert r3.message_id.endswith("@crm.synthesized>")
        for subj in (subj_utf8, subj_gbk, subj_gb2312):
            assert mail_count(s, subject=subj) == 1
        ids = (r1.id, r2.id, r3.id)

    # the reply appears in manager1's 收件箱, linked to the customer; the unowned,
    # unlinked one only for admins
    from .conftest import WebClient
    w = WebClient(app, "manager1")
    inbox = w.get(f"/mail/box?tab=inbox&subject={tag}")
    assert subj_utf8 in inbox.text and subj_gbk in inbox.text and subj_gb2312 not in inbox.text
    assert api("manager2").get(f"/api/v1/mail/{ids[2]}").status_code == 403
    admin_inbox = api("admin").get(f"/api/v1/mail/?box=inbox&subject={tag}").json
    assert ids[2] in [x["id"] for x in admin_inbox["result"]]
    shown = w.get(f"/mail/show/{ids[0]}")
    assert "张经理您好，价格可以接受。" in shown.text and "已接收" in shown.text


def test_mail_fetch_errors_are_clear(app, dovecot, monkeypatch):
    runner = app.test_cli_runner()
    monkeypatch.setitem(app.config, "IMAP_USER", None)
    r = runner.invoke(args=["crm", "mail-fetch"])
    assert r.exit_code != 0 and "CRM_IMAP_USER" in r.output
    monkeypatch.setitem(app.config, "IMAP_HOST", "127.0.0.1")
    monkeypatch.setitem(app.config, "IMAP_PORT", dovecot.port)
    monkeypatch.setitem(app.config, "IMAP_USER", "nobody-here")
    monkeypatch.setitem(app.config, "IMAP_PASSWORD", "wrong-secret")
    r = runner.invoke(args=["crm", "mail-fetch"])
    assert r.exit_code != 0 and "登录收件服务器失败" in r.output
    assert "wrong-secret" not in r.output  # passwords are never printed
    monkeypatch.setitem(app.config, "IMAP_PORT", free_port())
    r = runner.invoke(args=["crm", "mail-fetch"])
    assert r.exit_code != 0 and "无法连接收件服务器" in r.output


def test_parse_message_decodes_headers_and_bodies():
    raw = _raw({"From": "=?gb2312?B?1uzQocP3?= <ZXM@Example.cn>", "To": "a@b.cn, =?utf-8?q?=E5=BC=A0?= <c@d.cn>",
                "Subject": "=?utf-8?b?5Lit5paH?= and =?gbk?q?=D6=D0=CE=C4?="},
               "<p>你好<br>世界</p>".encode("gbk"), "text/html; charset=GBK")
    p = wf.parse_message(raw)
    assert p["subject"] == "中文 and 中文"
    assert p["sender"] == "朱小明 <ZXM@Example.cn>" and p["to"] == ["a@b.cn", "c@d.cn"]
    assert p["body"] == "你好\n世界"
    assert p["message_id"].endswith("@crm.synthesized>")
    assert wf.parse_message(raw)["message_id"] == p["message_id"]  # stable
    # raw 8-bit GBK in headers (no RFC 2047) from careless mailers
    raw = b"Subject: \xd6\xd0\xce\xc4\xd6\xf7\xcc\xe2\r\nFrom: \xd5\xc5\xc8\xfd <a@b.cn>\r\n\r\nx"
    p = wf.parse_message(raw)
    assert p["subject"] == "中文主题" and p["sender"] == "张三 <a@b.cn>"


# ---- attachments need the document read right (issue 17 item 4) ---------------------------

def _sent_subjects(smtp):
    return {str(email.message_from_bytes(c, policy=policy.default)["Subject"])
            for _f, _r, c in smtp.messages}


def test_unreadable_document_cannot_be_attached_api_or_html(app, api, web, dbs, smtp, user_id,
                                                             uniq):
    """manager1 may not download manager2's customer's contract, so he may not mail it
    out either: 403, nothing stored, nothing sent; the compose page does not list it."""
    m2 = user_id("manager2")
    secret_name = f"机密合同-{uniq()}.pdf"
    with dbs() as s:
        cust, (contact,) = make_customer(s, m2, uniq)
        doc = make_document(app, s, cust, m2, secret_name, b"%PDF-1.4 " + os.urandom(500))
        s.commit()
        cust_id, contact_id, doc_id = cust.id, contact.id, doc.id
    assert api("manager1").get(f"/api/v1/document/{doc_id}/download").status_code == 403
    subject = f"外泄 {uniq()}"
    before = len(smtp.messages)
    for payload in ({"contact_ids": [contact_id], "document_ids": [doc_id]},
                    {"to": ["outside@gmail.com"], "customer_id": cust_id, "document_ids": [doc_id]}):
        r = api("manager1").post("/api/v1/mail/", json=dict(payload, subject=subject, body="见附件"))
        assert r.status_code == 403, r.json
        assert "无权" in r.json["message"]
    # HTML: the compose page lists only documents the user may read; posting the id anyway → 403
    w = web("manager1")
    form_url = f"/mail/compose?customer_id={cust_id}"
    page = w.get(form_url)
    assert page.status_code == 200 and secret_name not in page.text
    r = w.post_form("/mail/compose", {"customer_id": cust_id, "contact_ids": contact_id,
                                      "to": "outside@gmail.com", "subject": subject,
                                      "body": "x", "document_ids": doc_id}, form_url=form_url)
    assert r.status_code == 403 and "无权" in r.text
    with dbs() as s:
        assert mail_count(s, subject=subject) == 0
    assert len(smtp.messages) == before and subject not in _sent_subjects(smtp)
    # the customer's own 客户经理 sees it on the page and may attach it
    page2 = web("manager2").get(form_url)
    assert secret_name in page2.text
    r = api("manager2").post("/api/v1/mail/", json={"contact_ids": [contact_id], "subject": subject,
                                                   "document_ids": [doc_id], "body": "合同"})
    assert r.status_code == 201 and r.json["result"]["attachments"][0]["document_id"] == doc_id


def test_uploader_may_attach_own_document_of_another_managers_customer(app, api, dbs, smtp,
                                                                       user_id, uniq):
    """Same rule as downloading: the uploader reads his own upload."""
    m1, m2 = user_id("manager1"), user_id("manager2")
    with dbs() as s:
        cust, (contact,) = make_customer(s, m2, uniq)
        doc = make_document(app, s, cust, m1, "我上传的.pdf", b"%PDF-1.4 " + os.urandom(300))
        s.commit()
        contact_id, doc_id = contact.id, doc.id
    assert api("manager1").get(f"/api/v1/document/{doc_id}/download").status_code == 200
    r = api("manager1").post("/api/v1/mail/", json={"contact_ids": [contact_id], "subject": uniq("s"),
                                                   "document_ids": [doc_id]})
    assert r.status_code == 201, r.json


# ---- names with control characters (issue 17 item 8) ---------------------------------------

@pytest.fixture
def new_user(app, uniq):
    """A throw-away 客户经理 (so tests may damage its name): returns (username, id)."""
    from tests.conftest import PASSWORD

    name = uniq("nm")
    with app.app_context():
        sm = app.appbuilder.sm
        u = sm.add_user(name, "测试", "用户", f"{name}@demo.crm", sm.find_role("客户经理"),
                        password=PASSWORD)
        uid = u.id
        db.session.remove()
    return name, uid


def _user(app, uid):
    from flask_appbuilder.security.sqla.models import User

    with app.app_context():
        u = db.session.get(User, uid)
        out = (u.first_name, u.last_name)
        db.session.remove()
    return out


def test_legacy_name_with_crlf_cannot_break_or_inject_headers(app, api, dbs, smtp, new_user, uniq):
    name, uid = new_user
    from flask_appbuilder.security.sqla.models import User

    with dbs() as s:  # a name saved before the check existed
        s.get(User, uid).first_name = "张\r\nBcc: spy@evil.cn\r\n"
        s.get(User, uid).last_name = "伟\u202e"
        s.commit()
    subject = f"老数据 {uniq()}"
    r = api(name).post("/api/v1/mail/", json={"to": ["client@partner.cn"], "subject": subject,
                                             "body": "正文"})
    assert r.status_code == 201, r.json
    mail_from, rcpts, msg = smtp.find(r.json["result"]["message_id"])
    assert rcpts == ["client@partner.cn"]
    assert msg["Bcc"] is None and "spy@evil.cn" not in str(msg["From"].addresses[0].addr_spec)
    assert msg["From"].addresses[0].addr_spec == "crm@demo.crm"
    shown = msg["From"].addresses[0].display_name
    assert "\r" not in shown and "\n" not in shown and "\u202e" not in shown
    assert shown.startswith("张")


def test_user_forms_refuse_control_characters_in_names(app, web, new_user, uniq):
    from tests.conftest import WebClient

    name, uid = new_user
    admin = web("admin")
    with app.app_context():
        role_id = app.appbuilder.sm.find_role("客户经理").id
        db.session.remove()
    # admin: edit form
    form = {"first_name": "张\r\n", "last_name": "伟", "username": name,
            "email": f"{name}@demo.crm", "active": "y", "roles": str(role_id)}
    r = admin.post_form(f"/users/edit/{uid}", form)
    assert r.status_code == 200 and "控制字符" in r.text and "U+000D" in r.text
    assert _user(app, uid) == ("测试", "用户")
    form.update(first_name="张", last_name="伟\u202e")
    r = admin.post_form(f"/users/edit/{uid}", form)
    assert r.status_code == 200 and "U+202E" in r.text
    assert _user(app, uid) == ("测试", "用户")
    form.update(first_name="张", last_name="伟 明")  # an ordinary space is fine
    assert admin.post_form(f"/users/edit/{uid}", form).status_code == 302
    assert _user(app, uid) == ("张", "伟 明")
    # admin: add form
    other = uniq("nm")
    r = admin.post_form("/users/add", {"first_name": "李\n", "last_name": "四", "username": other,
                                       "email": f"{other}@demo.crm", "active": "y",
                                       "roles": str(role_id), "password": "Strong-pass-9",
                                       "conf_password": "Strong-pass-9"})
    assert r.status_code == 200 and "控制字符" in r.text
    with app.app_context():
        assert app.appbuilder.sm.find_user(username=other) is None
        db.session.remove()
    # the user's own profile form
    me = WebClient(app, name)
    url = "/userinfoeditview/form"
    assert me.get(url).status_code == 200
    r = me.post_form(url, {"first_name": "张\u2066", "last_name": "伟"})
    assert r.status_code == 200 and "U+2066" in r.text
    assert _user(app, uid) == ("张", "伟 明")
    assert me.post_form(url, {"first_name": "张", "last_name": "三"}).status_code == 302
    assert _user(app, uid) == ("张", "三")


def test_customer_and_contact_names_refuse_control_characters(api, dbs, user_id, uniq):
    m1 = user_id("manager1")
    with dbs() as s:
        cust, (contact,) = make_customer(s, m1, uniq)
        s.commit()
        cust_id, contact_id, cust_name = cust.id, contact.id, cust.name
    c = api("manager1")
    r = c.put(f"/api/v1/customer/{cust_id}", json={"name": "坏公司\r\nBcc: x@y.cn"})
    assert r.status_code == 400 and r.json["field"] == "name" and "控制字符" in r.json["message"]
    r = c.put(f"/api/v1/contact/{contact_id}", json={"name": "李\u202e四"})
    assert r.status_code == 400 and r.json["field"] == "name" and "U+202E" in r.json["message"]
    with dbs() as s:
        from app.models import Contact, Customer
        assert s.get(Customer, cust_id).name == cust_name
        assert s.get(Contact, contact_id).name == "联系人0"


def test_names_unit():
    from app.workflows import names

    assert names.check_name("张 伟", "x", "名") == "张 伟"
    for bad in ("a\nb", "a\rb", "a\tb", "a\u202eb", "a\u200bb", "a\x85b", "a\u2028b"):
        with pytest.raises(wf.ValidationError):
            names.check_name(bad, "x", "名")
    assert names.header_safe("张\r\n Bcc: x\u202e") == "张 Bcc: x"


# ---- mail as the clients people use (issue 18 item 7) ------------------------------------------

def _b(text, charset="utf-8"):
    import base64
    return f"=?{charset}?b?{base64.b64encode(text.encode(charset)).decode()}?="


def test_display_name_recipients_api_and_html(app, api, web, dbs, smtp, uniq):
    subject = f"显示名 {uniq()}"
    r = api("manager1").post("/api/v1/mail/", json={
        "to": "王总 <Wang@Partner.CN>；李四 <li@partner.cn>; c@partner.cn",
        "cc": ['"Zhang, San" <zs@partner.cn>，赵六<zl@partner.cn>'],
        "subject": subject, "body": "您好"})
    assert r.status_code == 201, r.json
    res = r.json["result"]
    assert res["recipients"] == ["Wang@partner.cn", "li@partner.cn", "c@partner.cn"]
    assert res["to_addresses"] == [{"name": "王总", "address": "Wang@partner.cn"},
                                   {"name": "李四", "address": "li@partner.cn"},
                                   {"name": "", "address": "c@partner.cn"}]
    assert res["cc_addresses"] == [{"name": "Zhang, San", "address": "zs@partner.cn"},
                                   {"name": "赵六", "address": "zl@partner.cn"}]
    mail_from, rcpts, msg = smtp.find(res["message_id"])
    assert set(rcpts) == {"Wang@partner.cn", "li@partner.cn", "c@partner.cn", "zs@partner.cn",
                          "zl@partner.cn"}
    assert [(a.display_name, a.addr_spec) for a in msg["To"].addresses] == [
        ("王总", "Wang@partner.cn"), ("李四", "li@partner.cn"), ("", "c@partner.cn")]
    assert [(a.display_name, a.addr_spec) for a in msg["Cc"].addresses] == [
        ("Zhang, San", "zs@partner.cn"), ("赵六", "zl@partner.cn")]
    show = web("manager1").get(f"/mail/show/{r.json['id']}")
    assert "王总 &lt;Wang@partner.cn&gt;" in show.text
    # the address part is still validated
    for bad in ("王总 <不是地址>", "王总 wang@partner.cn", "王总 <a@b.cn> 多余", "<>"):
        r = api("manager1").post("/api/v1/mail/", json={"to": bad, "subject": subject})
        assert r.status_code == 400 and r.json["field"] == "to", (bad, r.json)
    # the HTML form accepts the same
    w = web("manager1")
    subject2 = f"表单显示名 {uniq()}"
    r = w.post_form("/mail/compose", {"to": "王总 <wang@partner.cn>, 李四 <li@partner.cn>",
                                      "subject": subject2, "body": "x"}, form_url="/mail/compose")
    assert r.status_code == 302, r.text
    with dbs() as s:
        m = s.scalar(select(MailMessage).where(MailMessage.subject == subject2))
        assert m.recipients == "王总 <wang@partner.cn>, 李四 <li@partner.cn>"


def test_sent_attachment_names_as_mail_clients_read_them(app, api, dbs, smtp, user_id, uniq):
    """filename* (RFC 2231) on Content-Disposition and name= (RFC 2047) on Content-Type."""
    m1 = user_id("manager1")
    long_name = "报价单（2026年第二季度）激光打印机与复印机租赁方案 最终版.pdf"
    with dbs() as s:
        cust, (contact,) = make_customer(s, m1, uniq)
        d1 = make_document(app, s, cust, m1, long_name, b"%PDF-1.4 " + os.urandom(100))
        d2 = make_document(app, s, cust, m1, "price-list 2026.pdf", b"%PDF-1.4 " + os.urandom(100))
        s.commit()
        contact_id, ids = contact.id, [d1.id, d2.id]
    r = api("manager1").post("/api/v1/mail/", json={
        "contact_ids": [contact_id], "subject": f"附件名 {uniq()}", "document_ids": ids})
    assert r.status_code == 201, r.json
    content = next(c for _f, _r, c in smtp.messages
                   if r.json["result"]["message_id"].encode() in c)
    assert b"filename*" in content and b'name="=?utf-8?b?' in content
    modern = email.message_from_bytes(content, policy=policy.default)
    legacy = email.message_from_bytes(content)  # compat32, as older clients parse
    for msg in (modern, legacy):
        parts = [p for p in msg.walk() if p.get_content_maintype() == "application"]
        assert len(parts) == 2
        # Content-Disposition filename* (RFC 2231)
        assert [p.get_filename() for p in parts] == [long_name, "price-list 2026.pdf"]
        # Content-Type name= (RFC 2047 encoded words), what Outlook/Foxmail read
        names = [str(email.header.make_header(email.header.decode_header(p.get_param("name"))))
                 for p in parts]
        assert names == [long_name, "price-list 2026.pdf"], names
    atts = list(modern.iter_attachments())
    assert [a.get_filename() for a in atts] == [long_name, "price-list 2026.pdf"]
    assert [a.get_content_type() for a in atts] == ["application/pdf", "application/pdf"]


def test_mail_fetch_decodes_like_a_mail_client_routes_to_manager_and_shows_local_time(
        app, api, web, dbs, smtp, mailbox, user_id, uniq):
    m2 = user_id("manager2")
    with dbs() as s:
        cust, (contact,) = make_customer(s, m2, uniq)   # managed by manager2
        s.commit()
        cust_id, contact_email = cust.id, contact.email
    tag = uniq()
    boundary = "=_b_" + tag
    headers = "\r\n".join([
        f"From: {_b('王总')} <{contact_email}>",
        "To: crm@demo.crm",
        # folded as mail clients fold long subjects; the spaces are part of the subject
        f"Subject: Re:\r\n {_b('确认订购')}\r\n 10 {_b('台')} {tag}",
        "Date: Mon, 02 Mar 2026 02:00:00 +0000",
        f"Message-ID: <own-{tag}@kehu.cn>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{boundary}"',
    ])
    parts = [
        ("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit",
         "请确认订购 10 台。".encode()),
        # Foxmail: only name= on Content-Type, labelled gb2312, GBK-only character 镕
        (f'Content-Type: application/pdf; name="{_b("朱镕基报价单.pdf", "gbk").replace("gbk", "gb2312")}"\r\n'
         "Content-Transfer-Encoding: base64", b"JVBERi0xLjQ="),
        # RFC 2231
        ("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
         "Content-Disposition: attachment; filename*=utf-8''%E5%90%88%E5%90%8C%202026.docx",
         b"UEsDBA=="),
        # Outlook: RFC 2047 inside filename=
        ("Content-Type: application/vnd.ms-excel\r\nContent-Transfer-Encoding: base64\r\n"
         f'Content-Disposition: attachment; filename="{_b("清单 2026.xls")}"', b"0M8R4A=="),
    ]
    body = b""
    for head, payload in parts:
        body += f"--{boundary}\r\n{head}\r\n\r\n".encode() + payload + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    mailbox(headers.encode() + b"\r\n\r\n" + body)
    r = app.test_cli_runner().invoke(args=["crm", "mail-fetch"])
    assert r.exit_code == 0 and "新邮件 1 封" in r.output, r.output
    with dbs() as s:
        m = s.scalar(select(MailMessage).where(MailMessage.message_id == f"<own-{tag}@kehu.cn>"))
        assert m.subject == f"Re: 确认订购 10 台 {tag}"
        assert m.sender == f"王总 <{contact_email}>"
        assert m.customer_id == cust_id
        assert m.owner_id == m2   # not a reply: routed to the customer's 客户经理
        assert [a.filename for a in m.attachments] == ["朱镕基报价单.pdf", "合同 2026.docx",
                                                       "清单 2026.xls"]
        mail_id = m.id
    got = api("manager2").get(f"/api/v1/mail/{mail_id}").json["result"]
    assert got["received_on"] == "2026-03-02T10:00:00+08:00"
    inbox = api("manager2").get(f"/api/v1/mail/?box=inbox&subject={tag}").json
    assert [x["id"] for x in inbox["result"]] == [mail_id]
    assert inbox["result"][0]["received_on"].endswith("+08:00")
    # no longer only in the admin's inbox of unowned mail
    admin_inbox = api("admin").get(f"/api/v1/mail/?box=inbox&subject={tag}").json
    assert mail_id not in [x["id"] for x in admin_inbox["result"]]
    w = web("manager2")
    assert "2026-03-02 10:00" in w.get(f"/mail/show/{mail_id}").text
    assert "2026-03-02 10:00" in w.get(f"/mail/box?tab=inbox&subject={tag}").text


def test_parse_message_keeps_spaces_next_to_encoded_words():
    raw = ("Subject: Re: " + _b("关于") + " 确认订购 10 台\r\n"
           "From: " + _b("李经理") + " <li@kehu.cn>\r\n\r\nx").encode("utf-8")
    p = wf.parse_message(raw)
    assert p["subject"] == "Re: 关于 确认订购 10 台"
    assert p["sender"] == "李经理 <li@kehu.cn>"
    # an encoded CR/LF cannot smuggle a line break into what is stored
    p = wf.parse_message(("Subject: " + _b("坏\r\nBcc: x@y.cn") + "\r\n\r\nx").encode())
    assert "\n" not in p["subject"] and "\r" not in p["subject"]
