"""文档管理: upload/store/versions/limits/rights/delete, HTML and REST (DESIGN §5.6)."""
import io
import os
import uuid
import zipfile
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from app.models import Document, DocumentBlob, DocumentFolder, WorkflowEvent
from app.workflows import documents as wf
from app.workflows.actors import Actor

from . import factories as f


# ---- builders (local to this module) ---------------------------------------------------

def pdf_bytes(tag=None):
    """A real minimal PDF whose content is unique per call."""
    tag = tag or uuid.uuid4().hex
    return (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
            b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
            b"% " + tag.encode() + b"\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
       b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18"
       b"\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")


def docx_bytes(tag):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", f"<w:document>{tag}</w:document>")
    return buf.getvalue()


@pytest.fixture
def customer_of(dbs, user_id):
    """``customer_of("manager1")`` → id of a new customer managed by that user."""
    def _make(manager="manager1"):
        with dbs() as s:
            c = f.customer(s, user_id(manager))
            s.commit()
            return c.id
    return _make


def upload(client, customer_id, files, **form):
    """API multipart upload; ``files`` = [(name, bytes)]."""
    data = {"customer_id": str(customer_id), **{k: str(v) for k, v in form.items()}}
    data["file"] = [(io.BytesIO(content), name) for name, content in files]
    return client.post("/api/v1/document/", data=data, content_type="multipart/form-data")


def store_files(app):
    """Every file under DOCUMENT_DIR except the lock file (relative paths)."""
    root = app.config["DOCUMENT_DIR"]
    out = set()
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            if n != ".lock":
                out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


def doc_count(dbs, customer_id):
    with dbs() as s:
        return s.scalar(select(func.count()).select_from(Document)
                        .where(Document.customer_id == customer_id))


def blob_path(app, sha):
    return wf.blob_path(app.config["DOCUMENT_DIR"], sha)


# ---- round trip -------------------------------------------------------------------------

def test_round_trip_chinese_name_folder_preview_download(api, app, customer_of, dbs, user_id):
    cid = customer_of("manager1")
    c = api("manager1")
    r = c.post("/api/v1/document/folders", json={"customer_id": cid, "name": "合同"})
    assert r.status_code == 201, r.text
    folder_id = r.json["id"]
    content = pdf_bytes()
    r = upload(c, cid, [("采购合同2026.pdf", content)], folder_id=folder_id)
    assert r.status_code == 201, r.text
    meta = r.json["result"][0]
    assert meta["name"] == "采购合同2026.pdf" and meta["version"] == 1
    assert meta["mime"] == "application/pdf" and meta["size"] == len(content)
    assert meta["folder_id"] == folder_id and meta["uploader_id"] == user_id("manager1")
    assert app.config["DOCUMENT_DIR"] not in r.text  # the blob path is never exposed
    doc_id = meta["id"]
    assert os.path.isfile(blob_path(app, meta["sha256"]))

    r = c.get(f"/api/v1/document/{doc_id}")
    assert r.status_code == 200 and r.json["result"]["folder"] == "合同"

    r = c.get(f"/api/v1/document/{doc_id}/download")
    assert r.status_code == 200 and r.data == content
    cd = r.headers["Content-Disposition"]
    assert cd.startswith("attachment")
    assert "filename*=UTF-8''" + quote("采购合同2026.pdf") in cd
    assert r.headers["X-Content-Type-Options"] == "nosniff"

    # the HTML screens: preview inline, download with the name intact
    w = app.test_client()
    page = w.get("/login/")
    from tests.conftest import PASSWORD, csrf_from
    w.post("/login/", data={"csrf_token": csrf_from(page.text), "username": "manager1",
                            "password": PASSWORD})
    r = w.get(f"/documents/preview/{doc_id}")
    assert r.status_code == 200 and r.data == content
    assert r.mimetype == "application/pdf"
    assert r.headers["Content-Disposition"].startswith("inline")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    r = w.get(f"/documents/download/{doc_id}")
    assert r.status_code == 200 and "filename*=UTF-8''" + quote("采购合同2026.pdf") in r.headers["Content-Disposition"]
    page = w.get(f"/documents/customer/{cid}?folder={folder_id}")
    assert page.status_code == 200 and "采购合同2026.pdf" in page.text and "合同" in page.text
    with dbs() as s:
        ev = s.scalar(select(WorkflowEvent).where(WorkflowEvent.entity == "document",
                                                  WorkflowEvent.entity_id == doc_id))
        assert ev.action == "upload"


def test_html_upload_several_files_with_csrf(web, app, customer_of, dbs, uniq):
    cid = customer_of("manager1")
    w = web("manager1")
    form_url = f"/documents/customer/{cid}"
    r = w.post_form(f"/documents/customer/{cid}/folder", {"name": "报价单"}, form_url=form_url)
    assert r.status_code == 302
    with dbs() as s:
        folder = s.scalar(select(DocumentFolder).where(DocumentFolder.customer_id == cid))
        assert folder.name == "报价单"
        folder_id = folder.id
    # duplicate folder name → 409, nothing added
    r = w.post_form(f"/documents/customer/{cid}/folder", {"name": "报价单"}, form_url=form_url)
    assert r.status_code == 409 and "已存在" in r.text
    tag = uniq()
    files = [(io.BytesIO(pdf_bytes()), "报价单-一.pdf"), (io.BytesIO(PNG + tag.encode()), "现场照片.png"),
             (io.BytesIO(f"名称,数量\n打印机,{tag}\n".encode("gbk")), "清单.csv")]
    r = w.post_form(f"/documents/customer/{cid}/upload",
                    {"file": files, "folder_id": str(folder_id), "new_folder": "2026年"},
                    form_url=form_url, content_type="multipart/form-data")
    assert r.status_code == 302, r.text
    with dbs() as s:
        docs = s.scalars(select(Document).where(Document.customer_id == cid)).all()
        assert sorted(d.name for d in docs) == ["报价单-一.pdf", "清单.csv", "现场照片.png"]
        sub = s.get(DocumentFolder, docs[0].folder_id)
        assert sub.name == "2026年" and sub.parent_id == folder_id
        assert {d.mime for d in docs} == {"application/pdf", "image/png", "text/csv"}
    page = w.get(f"/documents/customer/{cid}")
    assert "现场照片.png" in page.text and "报价单 / 2026年" in page.text
    # without the CSRF token nothing is stored
    r = w.post(f"/documents/customer/{cid}/upload", data={"file": [(io.BytesIO(pdf_bytes()), "无令牌.pdf")]},
               content_type="multipart/form-data")
    assert r.status_code == 400
    assert doc_count(dbs, cid) == 3


# ---- store: dedup, versions ---------------------------------------------------------------

def test_duplicate_content_stored_once(api, app, customer_of, dbs):
    cid, other = customer_of("manager1"), customer_of("manager1")
    c = api("manager1")
    content = pdf_bytes()
    a = upload(c, cid, [("合同A.pdf", content)]).json["result"][0]
    b = upload(c, other, [("合同B.pdf", content)]).json["result"][0]
    assert a["sha256"] == b["sha256"] and a["id"] != b["id"]
    with dbs() as s:
        assert s.scalar(select(func.count()).select_from(DocumentBlob)
                        .where(DocumentBlob.sha256 == a["sha256"])) == 1
    sha = a["sha256"]
    assert sum(1 for p in store_files(app) if p.endswith(sha)) == 1
    assert not [p for p in store_files(app) if p.startswith("tmp")]


def test_same_name_same_folder_becomes_new_version(api, customer_of):
    cid = customer_of("manager1")
    c = api("manager1")
    folder = c.post("/api/v1/document/folders", json={"customer_id": cid, "name": "合同"}).json["id"]
    v1, v2 = pdf_bytes(), pdf_bytes()
    d1 = upload(c, cid, [("合同.pdf", v1)], folder_id=folder).json["result"][0]
    d2 = upload(c, cid, [("合同.pdf", v2)], folder_id=folder).json["result"][0]
    d3 = upload(c, cid, [("合同.pdf", pdf_bytes())]).json["result"][0]  # root: another file
    assert (d1["version"], d2["version"], d3["version"]) == (1, 2, 1)
    # older versions stay downloadable
    assert c.get(f"/api/v1/document/{d1['id']}/download").data == v1
    assert c.get(f"/api/v1/document/{d2['id']}/download").data == v2
    listed = c.get(f"/api/v1/document/?customer_id={cid}&folder_id={folder}").json
    assert listed["count"] == 2 and {r["version"] for r in listed["result"]} == {1, 2}


# ---- rejected uploads store nothing ----------------------------------------------------------

BAD_UPLOADS = [
    ("exe renamed pdf", "发票.pdf", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + b"\x00" * 200, 400, "不符"),
    ("exe", "setup.exe", b"MZ\x90\x00" + b"\x00" * 200, 400, "不允许"),
    ("empty", "空文件.pdf", b"", 400, "空文件"),
    ("traversal", "../../etc/passwd", b"root:x:0:0\n", 400, "路径"),
    ("absolute", "/etc/passwd", b"root:x:0:0\n", 400, "路径"),
    # werkzeug's multipart parser dropped the backslashes: stored as "....boot.ini.txt"
    ("windows path", "..\\..\\boot.ini.txt", b"[boot]\n", 400, "路径"),
    ("backslash", "报价\\单.txt", b"x\n", 400, "路径"),
    ("bidi RLO", "合同\u202egpj.pdf", pdf_bytes("rlo"), 400, "U+202E"),
    ("bidi LRI", "合同\u2066.pdf", pdf_bytes("lri"), 400, "U+2066"),
    ("bidi RLM", "合同\u200f.pdf", pdf_bytes("rlm"), 400, "U+200F"),
    ("bidi ALM", "合同\u061c.pdf", pdf_bytes("alm"), 400, "U+061C"),
    ("zero width", "合同\u200b.pdf", pdf_bytes("zw"), 400, "U+200B"),
    ("C1 control", "合同\x85.pdf", pdf_bytes("c1"), 400, "U+0085"),
    ("drive", "C:合同.pdf", pdf_bytes("drive"), 400, "路径"),
    ("nul", "合同.pdf\x00.txt", pdf_bytes("nul"), 400, "路径"),
    ("no extension", "README", b"hello\n", 400, "扩展名"),
    ("pdf named docx", "合同.docx", pdf_bytes("docx"), 400, "不符"),
    ("binary named txt", "说明.txt", bytes(range(256)) * 4, 400, "不符"),
    ("png named jpg", "照片.jpg", PNG, 400, "不符"),
]


@pytest.mark.parametrize("label,name,content,status,why", BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
def test_rejected_upload_stores_nothing(api, app, customer_of, dbs, label, name, content, status, why):
    cid = customer_of("manager1")
    before = store_files(app)
    r = upload(api("manager1"), cid, [(name, content)])
    assert r.status_code == status, r.text
    assert why in r.json["message"]
    assert doc_count(dbs, cid) == 0
    assert store_files(app) == before


def test_oversize_rejected_with_413_and_nothing_stored(api, app, customer_of, dbs):
    cid = customer_of("manager1")
    before = store_files(app)
    app.config["DOCUMENT_MAX_BYTES"] = 1000
    try:
        r = upload(api("manager1"), cid, [("大文件.pdf", pdf_bytes() + b"0" * 2000)])
    finally:
        app.config.pop("DOCUMENT_MAX_BYTES")
    assert r.status_code == 413 and "太大" in r.json["message"]
    assert doc_count(dbs, cid) == 0 and store_files(app) == before


def test_one_bad_file_rejects_the_whole_upload(api, app, customer_of, dbs):
    cid = customer_of("manager1")
    before = store_files(app)
    r = upload(api("manager1"), cid, [("好的.pdf", pdf_bytes()), ("坏的.pdf", b"MZ" + b"\x00" * 100)])
    assert r.status_code == 400 and "坏的.pdf" in r.json["message"]
    assert doc_count(dbs, cid) == 0 and store_files(app) == before


def test_flask_max_content_length_does_not_cut_uploads(api, app, customer_of):
    cid = customer_of("manager1")
    old = app.config.get("MAX_CONTENT_LENGTH")
    app.config["MAX_CONTENT_LENGTH"] = 100
    try:
        r = upload(api("manager1"), cid, [("合同.pdf", pdf_bytes() + b"%" * 500)])
    finally:
        app.config["MAX_CONTENT_LENGTH"] = old
    assert r.status_code == 201, r.text


def test_text_files_utf8_and_gbk_accepted(api, customer_of):
    cid = customer_of("manager1")
    c = api("manager1")
    assert upload(c, cid, [("说明.txt", "中文说明 UTF-8\n".encode())]).status_code == 201
    assert upload(c, cid, [("说明-gbk.txt", "中文说明 GBK\n".encode("gbk"))]).status_code == 201
    r = upload(c, cid, [("方案.docx", docx_bytes(uuid.uuid4().hex))])
    assert r.status_code == 201 and r.json["result"][0]["mime"].endswith("wordprocessingml.document")


def test_links_must_belong_to_the_customer(api, customer_of, dbs, user_id):
    cid, other = customer_of("manager1"), customer_of("manager1")
    with dbs() as s:
        own = f.service(s, _cust(s, cid), user_id("manager1"))
        foreign = f.service(s, _cust(s, other), user_id("manager1"))
        s.commit()
        own_id, foreign_id = own.id, foreign.id
    c = api("manager1")
    r = upload(c, cid, [("服务记录.pdf", pdf_bytes())], service_id=foreign_id)
    assert r.status_code == 400 and r.json["field"] == "service_id"
    r = upload(c, cid, [("服务记录.pdf", pdf_bytes())], service_id=own_id)
    assert r.status_code == 201 and r.json["result"][0]["service_id"] == own_id


def _cust(s, cid):
    from app.models import Customer
    return s.get(Customer, cid)


# ---- read rights ------------------------------------------------------------------------------

def test_other_manager_cannot_fetch_even_with_guessed_ids(api, web, app, customer_of, dbs):
    cid = customer_of("manager1")
    d = upload(api("manager1"), cid, [("采购合同2026.pdf", pdf_bytes())]).json["result"][0]
    doc_id, sha = d["id"], d["sha256"]
    other = api("manager2")
    for url in (f"/api/v1/document/{doc_id}", f"/api/v1/document/{doc_id}/download"):
        r = other.get(url)
        assert r.status_code == 403 and "无权" in r.json["message"]
    assert other.get("/api/v1/document/999999999/download").status_code == 404
    assert doc_id not in [x["id"] for x in other.get(f"/api/v1/document/?customer_id={cid}").json["result"]]
    w = web("manager2")
    for url in (f"/documents/download/{doc_id}", f"/documents/preview/{doc_id}",
                f"/documents/customer/{cid}"):
        r = w.get(url)
        assert r.status_code == 403, url
        assert b"%PDF" not in r.data
    # guessing blob paths: nothing serves DOCUMENT_DIR
    for url in (f"/documents/{sha}", f"/documents/download/{sha}", f"/static/{sha[:2]}/{sha[2:4]}/{sha}",
                f"/static/../documents/{sha[:2]}/{sha[2:4]}/{sha}", f"/api/v1/document/{sha}/download"):
        assert w.get(url).status_code == 404, url
    assert ">采购合同2026.pdf</a>" not in w.get("/documents/list/?name=采购合同2026").text
    # anonymous: no access at all
    assert api().get(f"/api/v1/document/{doc_id}/download").status_code == 401
    # supervisor, executive, admin and the customer's manager may read
    for user in ("supervisor", "exec", "admin", "manager1"):
        assert api(user).get(f"/api/v1/document/{doc_id}/download").status_code == 200, user


def test_read_scope_customer_lets_all_staff_read(api, app, customer_of):
    cid = customer_of("manager1")
    doc_id = upload(api("manager1"), cid, [("公开资料.pdf", pdf_bytes())]).json["ids"][0]
    app.config["DOCUMENT_READ_SCOPE"] = "customer"
    try:
        assert api("manager2").get(f"/api/v1/document/{doc_id}/download").status_code == 200
    finally:
        app.config.pop("DOCUMENT_READ_SCOPE")
    assert api("manager2").get(f"/api/v1/document/{doc_id}/download").status_code == 403


def test_upload_rights(api, web, app, customer_of, dbs):
    cid = customer_of("manager1")
    before = store_files(app)
    for user in ("manager2", "exec"):
        r = upload(api(user), cid, [("越权.pdf", pdf_bytes())])
        assert r.status_code == 403, user
        r = api(user).post("/api/v1/document/folders", json={"customer_id": cid, "name": "越权"})
        assert r.status_code == 403
    w = web("manager2")
    # manager2 has no form for this customer: take a token from its own customer page
    own = customer_of("manager2")
    r = w.post_form(f"/documents/customer/{cid}/upload",
                    {"file": [(io.BytesIO(pdf_bytes()), "越权.pdf")]},
                    form_url=f"/documents/customer/{own}", content_type="multipart/form-data")
    assert r.status_code == 403
    assert doc_count(dbs, cid) == 0 and store_files(app) == before
    # the supervisor may upload to any customer
    assert upload(api("supervisor"), cid, [("主管上传.pdf", pdf_bytes())]).status_code == 201


# ---- delete ---------------------------------------------------------------------------------------

def test_delete_rights(api, web, customer_of, dbs):
    cid = customer_of("manager1")
    sup = api("supervisor")
    ids = upload(sup, cid, [(f"文件{i}.pdf", pdf_bytes()) for i in range(4)]).json["ids"]
    assert "删除" in api("manager2").delete(f"/api/v1/document/{ids[0]}").json["message"]
    for user in ("manager2", "exec"):
        r = api(user).delete(f"/api/v1/document/{ids[0]}")
        assert r.status_code == 403  # manager2: the row rule; 高管: no delete permission at all
    w2 = web("manager2")
    r = w2.post_form(f"/documents/delete/{ids[0]}", {}, form_url=f"/documents/customer/{customer_of('manager2')}")
    assert r.status_code == 403
    assert doc_count(dbs, cid) == 4
    assert sup.delete(f"/api/v1/document/{ids[0]}").status_code == 200          # the uploader
    assert api("manager1").delete(f"/api/v1/document/{ids[1]}").status_code == 200  # customer's manager
    assert api("admin").delete(f"/api/v1/document/{ids[2]}").status_code == 200     # admin
    w1 = web("manager1")
    r = w1.post_form(f"/documents/delete/{ids[3]}", {}, form_url=f"/documents/customer/{cid}")
    assert r.status_code == 302
    assert doc_count(dbs, cid) == 0
    assert api("admin").delete(f"/api/v1/document/{ids[0]}").status_code == 404
    with dbs() as s:
        events = s.scalars(select(WorkflowEvent).where(WorkflowEvent.entity == "document",
                                                       WorkflowEvent.entity_id.in_(ids),
                                                       WorkflowEvent.action == "delete")).all()
        assert len(events) == 4


def test_blob_removed_only_when_unreferenced(api, app, customer_of, dbs):
    cid = customer_of("manager1")
    c = api("manager1")
    content = pdf_bytes()
    a, b = upload(c, cid, [("甲.pdf", content), ("乙.pdf", content)]).json["result"]
    sha = a["sha256"]
    path = blob_path(app, sha)
    assert c.delete(f"/api/v1/document/{a['id']}").status_code == 200
    assert os.path.isfile(path)
    with dbs() as s:
        assert s.get(DocumentBlob, sha) is not None
    assert c.get(f"/api/v1/document/{b['id']}/download").data == content
    assert c.delete(f"/api/v1/document/{b['id']}").status_code == 200
    assert not os.path.exists(path)
    with dbs() as s:
        assert s.get(DocumentBlob, sha) is None
    # the same content uploaded again is stored again
    again = upload(c, cid, [("甲.pdf", content)]).json["result"][0]
    assert again["sha256"] == sha and os.path.isfile(path)


# ---- lists and the customer page section ------------------------------------------------------------

def test_global_list_search(web, api, customer_of, uniq):
    cid = customer_of("manager1")
    name = uniq("检索") + ".pdf"
    upload(api("manager1"), cid, [(name, pdf_bytes())])
    row = f">{name}</a>"   # a listed document (the search box echoes the term)
    w = web("manager1")
    page = w.get("/documents/list/?name=" + quote(name[:10]))
    assert page.status_code == 200 and row in page.text
    assert row in w.get("/documents/list/?uploader=manager1&name=" + quote(name)).text
    assert row not in w.get("/documents/list/?uploader=supervisor&name=" + quote(name)).text
    assert row not in w.get("/documents/list/?date_from=2000-01-01&date_to=2000-12-31&name=" + quote(name)).text
    assert w.get("/documents/list/?date_from=昨天").status_code == 400
    assert row in web("supervisor").get("/documents/list/?name=" + quote(name)).text
    assert row not in web("manager2").get("/documents/list/?name=" + quote(name)).text
    r = api("manager1").get("/api/v1/document/?name=" + quote(name))
    assert r.json["count"] == 1


def test_customer_section(app, api, customer_of, user_id):
    from app.views.documents import documents_section
    from app.extensions import db
    from app.models import Customer

    cid, empty = customer_of("manager1"), customer_of("manager1")
    upload(api("manager1"), cid, [("章程.pdf", pdf_bytes())])
    m1 = Actor(id=user_id("manager1"), roles=frozenset({"客户经理"}))
    m2 = Actor(id=user_id("manager2"), roles=frozenset({"客户经理"}))
    with app.test_request_context("/"):
        try:
            html = documents_section(db.session.get(Customer, cid), m1)
            assert "章程.pdf" in html
            assert documents_section(db.session.get(Customer, cid), m2) is None
            first = documents_section(db.session.get(Customer, empty), m1)
            assert "上传文档" in first   # an empty customer still offers the first upload
        finally:
            db.session.remove()


def test_unit_name_rules():
    assert wf.clean_file_name("采购合同 2026（终版）.PDF") == "采购合同 2026（终版）.PDF"
    for bad in ("../../etc/passwd", "/etc/passwd", "a\\b.pdf", "C:x.pdf", "a\x00.pdf", "..", " ", ""):
        with pytest.raises(wf.ValidationError):
            wf.clean_file_name(bad)
    assert wf.extension("x.tar.PDF") == "pdf" and wf.extension(".bashrc") == ""


def test_content_disposition_fallbacks():
    from types import SimpleNamespace

    from app.views.documents import content_disposition

    cd = content_disposition(SimpleNamespace(id=7, name="合同.pdf"), False)
    assert cd == "attachment; filename=\"document-7.pdf\"; filename*=UTF-8''%E5%90%88%E5%90%8C.pdf"
    cd = content_disposition(SimpleNamespace(id=8, name='报价 "v2".png'), True)
    assert cd.startswith('inline; filename="_v2_.png"') and "%22v2%22" in cd


# ---- names that display as something else -------------------------------------------------

def test_bidi_and_backslash_names_refused_on_html_upload(web, app, customer_of, dbs):
    """HTML form: the same 400 (Chinese page naming the character), nothing stored."""
    cid = customer_of("manager1")
    w = web("manager1")
    form_url = f"/documents/customer/{cid}"
    before = store_files(app)
    for name, expect in (("合同\u202egpj.pdf", "U+202E"), ("..\\..\\boot.ini.txt", "路径"),
                         ("C:\\boot.ini.txt", "路径")):
        r = w.post_form(f"/documents/customer/{cid}/upload",
                        {"file": [(io.BytesIO(pdf_bytes()), name)]},
                        form_url=form_url, content_type="multipart/form-data")
        assert r.status_code == 400, (name, r.status_code)
        assert expect in r.text, name
    assert doc_count(dbs, cid) == 0
    assert store_files(app) == before


def test_bidi_message_says_which_character_and_how_to_fix(api, customer_of):
    cid = customer_of("manager1")
    r = upload(api("manager1"), cid, [("合同\u202egpj.pdf", pdf_bytes())])
    assert r.status_code == 400 and r.json["field"] == "file"
    msg = r.json["message"]
    assert "U+202E" in msg and "方向" in msg and "改名" in msg
    # the plain name is fine
    assert upload(api("manager1"), cid, [("合同gpj.pdf", pdf_bytes())]).status_code == 201


def test_folder_names_refuse_control_characters(api, customer_of):
    cid = customer_of("manager1")
    c = api("manager1")
    for bad in ("合同\u202e", "a\u200fb", "x\ty"):
        r = c.post("/api/v1/document/folders", json={"customer_id": cid, "name": bad})
        assert r.status_code == 400 and r.json["field"] == "name", (bad, r.json)


def test_upload_name_keeps_backslashes_the_client_sent():
    """Unit: the raw multipart header is used when werkzeug would drop backslashes."""
    from werkzeug.datastructures import FileStorage, Headers

    from app.views.documents import upload_name

    def storage(header, parsed):
        return FileStorage(io.BytesIO(b"x"), filename=parsed,
                           headers=Headers([("Content-Disposition", header)]))

    assert upload_name(storage('form-data; name="file"; filename="..\\..\\boot.ini.txt"',
                               "....boot.ini.txt")) == "..\\..\\boot.ini.txt"
    assert upload_name(storage('form-data; name="file"; filename="采购合同.pdf"',
                               "采购合同.pdf")) == "采购合同.pdf"
    with pytest.raises(wf.ValidationError):
        wf.clean_file_name(upload_name(storage('form-data; name="file"; filename="a\\b.txt"',
                                               "ab.txt")))
