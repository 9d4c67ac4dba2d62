"""导入客户/联系人 and 合并客户: encodings, validation, duplicates, commit, merge, rights."""
import csv
import hashlib
import io
import json
import os
import time
import tracemalloc
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from openpyxl import Workbook
from sqlalchemy import delete, func, select

from app.extensions import db
from app.models import (
    Activity, ChurnWarning, Contact, Customer, CustomerNumberAlias, Document, DocumentBlob,
    DocumentFolder, ImportJob, MailMessage, Opportunity, ServiceTicket, WorkflowEvent,
)
from app.workflows import imports as wf
from app.workflows import numbering
from app.workflows.actors import SUPERVISOR, Actor

from . import factories as f

HEAD = ["名称", "地区", "客户经理", "客户等级", "客户满意度", "客户信用度", "地址", "邮政编码",
        "电话", "传真", "法人", "开户银行", "银行帐号", "营业执照注册号", "国税登记号"]


def good(name, manager="manager1", **kw):
    values = {"名称": name, "地区": "北京", "客户经理": manager, "客户等级": "大客户",
              "客户满意度": "4", "客户信用度": "5", "地址": "北京市海淀区中关村大街1号",
              "邮政编码": "100080", "电话": "010-62345678", "传真": "", "法人": "张三",
              "开户银行": "中国银行", "银行帐号": "6216600000000000001", "营业执照注册号": "",
              "国税登记号": ""}
    values.update(kw)
    return values


def csv_bytes(rows, header=HEAD, encoding="utf-8"):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in rows:
        w.writerow([r.get(h, "") for h in header] if isinstance(r, dict) else r)
    return buf.getvalue().encode(encoding)


def xlsx_bytes(rows, header=HEAD):
    wb = Workbook()
    ws = wb.active
    ws.append(header)
    for r in rows:
        ws.append([r.get(h) for h in header])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def upload(client, content, filename="客户.csv", kind="customers", **form):
    data = {"file": (io.BytesIO(content), filename), **form}
    return client.post(f"/api/v1/import/{kind}", data=data, content_type="multipart/form-data")


def commit(client, job_id, default_action="skip", actions=None):
    return client.post(f"/api/v1/import/{job_id}/commit",
                       json={"default_action": default_action, "actions": actions or {}})


def customers_named(dbs, names):
    with dbs() as s:
        rows = s.scalars(select(Customer).where(Customer.name.in_(list(names)))).all()
        for c in rows:
            c.region_text = c.region.item if c.region else None
            c.level_text = c.level.item if c.level else None
        s.expunge_all()
        return {c.name: c for c in rows}


def errors_by_row(preview):
    return {r["row"]: {e["field"]: e["message"] for e in r["errors"]}
            for r in preview["error_rows"]}


def actor(user_id, username, role):
    return Actor(id=user_id(username), roles=frozenset({role}), name=username)


# ---- formats and encodings ----------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["utf-8", "utf-8-sig", "gbk", "xlsx"])
def test_formats_with_chinese(api, dbs, uniq, user_id, fmt):
    tag = uniq()
    rows = [good(f"华夏{tag}贸易有限公司", 营业执照注册号=f"L{tag}1", 传真="010-62345679"),
            good(f"长城{tag}电子股份有限公司", 客户经理="manager2", 地区="华北",
                 客户等级="战略合作伙伴", 国税登记号=f"T{tag}2")]
    if fmt == "xlsx":
        content, name = xlsx_bytes(rows), "客户资料.xlsx"
    else:
        content, name = csv_bytes(rows, encoding=fmt), "客户资料.csv"
    if fmt == "gbk":
        with pytest.raises(UnicodeDecodeError):
            content.decode("utf-8")
    if fmt == "utf-8-sig":
        assert content.startswith(b"\xef\xbb\xbf")
    c = api("supervisor")
    r = upload(c, content, name)
    assert r.status_code == 201, r.text
    pv = r.json["preview"]
    assert pv["total"] == 2 and pv["new"] == 2 and pv["errors"] == 0, pv
    assert [col["header"] for col in pv["columns"]] == HEAD
    assert all(col["field"] for col in pv["columns"])
    # preview writes nothing
    assert customers_named(dbs, [rows[0]["名称"]]) == {}
    r = commit(c, r.json["id"])
    assert r.status_code == 200, r.text
    assert r.json["created"] == 2 and r.json["status"] == "committed"
    got = customers_named(dbs, [x["名称"] for x in rows])
    a, b = got[rows[0]["名称"]], got[rows[1]["名称"]]
    assert a.region_text == "北京" and a.level_text == "大客户" and a.satisfaction == 4
    assert a.credit == 5 and a.zip_code == "100080" and a.fax == "010-62345679"
    assert a.license_no == f"L{tag}1" and a.manager_id == user_id("manager1")
    assert a.import_id == r.json["id"] and a.status == "normal" and a.number.startswith("KH")
    assert b.manager_id == user_id("manager2") and b.level_text == "战略合作伙伴"
    assert b.national_tax_no == f"T{tag}2" and a.number != b.number
    with dbs() as s:
        job = s.get(ImportJob, r.json["id"])
        assert job.file_name == name and job.created_by_fk == user_id("supervisor")
        assert job.created_count == 2 and job.committed_on is not None


def test_encoding_detection_and_mapping_units(tmp_path):
    p = tmp_path / "a.csv"
    p.write_bytes("名称\n北京".encode("gb18030"))
    assert wf.detect_encoding(str(p)) == "gb18030"
    p.write_bytes("\ufeff名称\n北京".encode("utf-8"))
    assert wf.detect_encoding(str(p)) == "utf-8-sig"
    assert list(wf.iter_rows(str(p), "csv")) == [(1, ["名称"]), (2, ["北京"])]
    # Chinese labels (with * or full-width brackets), English API names
    cols = wf.auto_mapping("customer", ["名称*", "注册资金（万元）", "zip_code", "银行账号", "x"])
    assert cols == {0: "name", 1: "registered_capital", 2: "zip_code", 3: "bank_account"}
    mapped = wf._apply_mapping("customer", ["公司", "名称"], {"公司": "name", "名称": ""})
    assert mapped == {0: "name"}
    with pytest.raises(wf.ValidationError):
        wf._apply_mapping("customer", ["公司"], {"公司": "no_such_field"})


def test_explicit_mapping_and_bad_files(api, dbs, uniq):
    c = api("supervisor")
    tag = uniq()
    content = csv_bytes([[f"映射{tag}公司", "北京", "manager1", "大客户", "3", "3", "地址",
                          "100080", "13800138000", "李四", "工行", "123"]],
                        header=["公司", "区域", "负责人", "等级", "满意", "信用", "地址", "邮编",
                                "电话", "法人", "开户银行", "银行帐号"])
    r = upload(c, content, mapping=json.dumps({"公司": "name", "区域": "region", "负责人": "manager",
                                               "满意": "satisfaction", "信用": "credit"}))
    assert r.status_code == 201, r.text
    assert r.json["preview"]["new"] == 1 and r.json["preview"]["errors"] == 0
    # no name column → 400 naming the problem
    r = upload(c, csv_bytes([["x"]], header=["什么"]))
    assert r.status_code == 400 and "名称" in r.json["message"]
    for content, name in ((b"", "a.csv"), (b"abc", "a.pdf"), (b"not a zip", "a.xlsx"),
                          ("名称\n".encode(), "a.csv")):
        r = upload(c, content, name)
        assert r.status_code == 400, (name, r.text)
        assert r.json["message"]
    r = upload(c, b"x", "a.csv", mapping="{bad json")
    assert r.status_code == 400 and r.json["field"] == "mapping"


# ---- validation ---------------------------------------------------------------------------------

def test_every_validation_error_kind(api, dbs, uniq):
    tag = uniq()
    head = HEAD + ["网址", "注册资金(万元)", "年营业额"]
    rows = [
        good(f"全对{tag}公司"),
        # 2 required fields missing
        good(f"缺项{tag}公司", 地址="", 法人="", 开户银行=""),
        # 3 dictionary values
        good(f"字典{tag}公司", 地区="火星", 客户等级="超级客户"),
        # 4 ranges
        good(f"范围{tag}公司", 客户满意度="0", 客户信用度="6", **{"注册资金(万元)": "-5"}),
        # 5 formats
        good(f"格式{tag}公司", 邮政编码="12345", 电话="abc", 传真="12", **{"网址": "www.x",
                                                                          "年营业额": "很多"}),
        # 6 an unknown user as 客户经理; 7 no name at all
        good(f"经理{tag}公司", 客户经理="nobody_here"),
        good("", 地区=""),
        # 8 too long
        good("长" * 200),
    ]
    c = api("supervisor")
    r = upload(c, csv_bytes(rows, header=head))
    assert r.status_code == 201, r.text
    pv = r.json["preview"]
    errs = errors_by_row(pv)
    assert pv["total"] == 8 and pv["new"] == 1 and pv["errors"] == 7
    assert 2 not in errs
    assert errs[3] == {"address": "地址不能为空。", "legal_person": "法人不能为空。",
                       "bank": "开户银行不能为空。"}
    assert "不是有效的地区" in errs[4]["region"] and "火星" in errs[4]["region"]
    assert "不是有效的客户等级" in errs[4]["level"]
    assert errs[5]["satisfaction"] == "客户满意度必须是 1 到 5 之间的整数。"
    assert errs[5]["credit"] == "客户信用度必须是 1 到 5 之间的整数。"
    assert "不小于 0" in errs[5]["registered_capital"]
    assert errs[6]["zip_code"].startswith("邮政编码必须是 6 位数字")
    assert errs[6]["phone"].startswith("电话格式不正确") and errs[6]["fax"].startswith("传真格式不正确")
    assert errs[6]["website"].startswith("网址格式不正确")
    assert "不小于 0" in errs[6]["annual_turnover"]
    assert "nobody_here" in errs[7]["manager"]
    assert errs[8]["name"] == "名称不能为空。" and errs[8]["region"] == "地区不能为空。"
    assert "太长" in errs[9]["name"]
    labels = {e["field"]: e["label"] for row in pv["error_rows"] for e in row["errors"]}
    assert labels["zip_code"] == "邮政编码" and labels["manager"] == "客户经理"
    # nothing was written by the preview; commit creates only the valid row
    assert customers_named(dbs, [f"缺项{tag}公司", f"全对{tag}公司"]) == {}
    r = commit(c, r.json["id"])
    assert r.json["created"] == 1 and r.json["failed"] == 7
    assert set(customers_named(dbs, [x["名称"] for x in rows])) == {f"全对{tag}公司"}
    report = c.get(f"/api/v1/import/{r.json['id']}/report")
    assert report.status_code == 200 and report.data.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(report.data.decode("utf-8-sig"))))
    assert lines[0][:3] == ["行号", "结果", "原因"]
    outcome = {int(x[0]): (x[1], x[2]) for x in lines[1:]}
    assert outcome[2][0] == "新建" and outcome[3] == ("失败", "地址不能为空。；法人不能为空。；开户银行不能为空。")
    assert outcome[4][0] == "失败" and "火星" in outcome[4][1]


def test_contact_validation_and_import(api, dbs, uniq, user_id):
    with dbs() as s:
        mine = f.customer(s, user_id("manager1"), name=f"联系人{uniq()}有限公司")
        theirs = f.customer(s, user_id("manager2"))
        lost = f.customer(s, user_id("manager1"), status="lost")
        f.contact(s, mine, user_id("manager1"), name="王五", mobile=None, email=None)
        s.commit()
        mine_id, mine_no, mine_name = mine.id, mine.number, mine.name
        theirs_no, lost_no = theirs.number, lost.number
    head = ["客户编号", "客户名称", "姓名", "性别", "职位", "办公电话", "手机", "电子邮件", "备注"]
    rows = [
        [mine_no, "", "赵一", "女", "采购经理", "010-88886666", "13900139000", "zhao@example.com", ""],
        ["", mine_name.replace("有限公司", "公司"), "钱二", "男", "总经理", "010-88886667", "", "", "按名称"],
        [mine_no, "", "孙三", "未知", "", "abc", "123", "not-mail", ""],
        [theirs_no, "", "李四", "男", "经理", "010-88886668", "", "", ""],
        ["KH-NO-SUCH", "", "周五", "男", "经理", "010-88886668", "", "", ""],
        [lost_no, "", "吴六", "男", "经理", "010-88886668", "", "", ""],
        [mine_no, "", "赵一", "女", "采购经理", "010-88886666", "", "", "同文件重复"],
        [mine_no, "", "王五", "男", "销售经理", "010-11112222", "13700137000", "", ""],
    ]
    c = api("manager1")
    r = upload(c, csv_bytes(rows, header=head), "联系人.csv", kind="contacts")
    assert r.status_code == 201, r.text
    pv = r.json["preview"]
    errs = errors_by_row(pv)
    assert set(errs) == {4, 5, 6, 7}
    assert errs[4]["gender"] == "性别只能是“男”或“女”。" and errs[4]["position"] == "职位不能为空。"
    assert errs[4]["office_phone"].startswith("办公电话格式不正确")
    assert errs[4]["mobile"].startswith("手机格式不正确") and errs[4]["email"].startswith("电子邮件格式")
    assert errs[5]["customer_number"] == "只能为自己负责的客户导入联系人。"
    assert "不存在" in errs[6]["customer_number"] and "已流失" in errs[7]["customer_number"]
    dups = {d["row"]: d for d in pv["duplicate_rows"]}
    assert dups[8]["in_file_of"] == 2 and dups[9]["existing"]["name"] == "王五"
    r = commit(c, r.json["id"], "update")
    assert r.status_code == 200, r.text
    assert (r.json["created"], r.json["updated"], r.json["failed"]) == (2, 1, 5)
    with dbs() as s:
        contacts = {x.name: x for x in s.scalars(select(Contact).where(Contact.customer_id == mine_id))}
        assert set(contacts) == {"王五", "赵一", "钱二"}
        assert contacts["钱二"].memo == "按名称" and contacts["赵一"].email == "zhao@example.com"
        # update = only the empty fields: mobile filled, position kept
        assert contacts["王五"].mobile == "13700137000" and contacts["王五"].position == "采购经理"


# ---- duplicates -----------------------------------------------------------------------------------

def test_normalize_name():
    n = wf.normalize_name
    assert n("北京 华夏 科技有限公司") == n("北京华夏科技有限责任公司") == n("北京华夏科技公司")
    assert n("ＡＢＣ（北京）科技股份有限公司") == n("abc(北京)科技有限公司") == n("ABC北京科技")
    assert n("北京华夏科技（股份）有限公司") == n("北京华夏科技")
    assert n("北京华夏科技") != n("北京华夏电子")
    assert n("") is None and n("公司") == "公司"
    assert wf.normalize_code(" 9111-0000 mA ") == "91110000MA"


def test_duplicate_rules(api, dbs, uniq, user_id):
    tag = uniq()
    with dbs() as s:
        by_license = f.customer(s, user_id("manager1"), license_no=f"LIC{tag}")
        by_tax = f.customer(s, user_id("manager1"), national_tax_no=f"TAX{tag}")
        by_name = f.customer(s, user_id("manager1"), name=f"ＨＸ{tag}科技（北京）有限公司")
        by_number = f.customer(s, user_id("manager1"))
        s.commit()
        ids = {"license": by_license.id, "tax": by_tax.id, "name": by_name.id,
               "number": by_number.id}
        number = by_number.number
    head = HEAD + ["客户编号"]
    rows = [
        good(f"别名{tag}A公司", 营业执照注册号=f"lic-{tag}"),
        good(f"别名{tag}B公司", 国税登记号=f"TAX{tag}"),
        good(f"hx {tag} 科技(北京)有限责任公司"),
        good(f"编号{tag}公司", 客户编号=number),
        good(f"新的{tag}公司"),
        good(f"新的 {tag} 有限公司"),           # same as row 6 after normalisation
        good(f"另一{tag}公司", 营业执照注册号=f"NEW{tag}"),
        good(f"再一{tag}公司", 营业执照注册号=f"NEW{tag}"),  # same license as row 8
    ]
    c = api("supervisor")
    r = upload(c, csv_bytes(rows, header=head))
    pv = r.json["preview"]
    assert pv["errors"] == 0 and pv["duplicates"] == 4 and pv["in_file_duplicates"] == 2
    assert pv["new"] == 2
    dups = {d["row"]: d for d in pv["duplicate_rows"]}
    assert dups[2]["existing"]["id"] == ids["license"] and dups[2]["match"] == "营业执照注册号相同"
    assert dups[3]["existing"]["id"] == ids["tax"] and dups[3]["match"] == "国税登记号相同"
    assert dups[4]["existing"]["id"] == ids["name"] and dups[4]["match"] == "名称相同"
    assert dups[5]["existing"]["id"] == ids["number"] and dups[5]["match"] == "客户编号相同"
    assert dups[7]["in_file_of"] == 6 and dups[9]["in_file_of"] == 8
    assert not dups[7]["can_update"] and "第 6 行" in dups[7]["blocked"]
    r = commit(c, r.json["id"])
    assert (r.json["created"], r.json["skipped"], r.json["failed"]) == (2, 4, 2)


def test_skip_update_overwrite(api, dbs, uniq, user_id):
    tag = uniq()
    with dbs() as s:
        made = [f.customer(s, user_id("manager1"), name=f"{w}{tag}有限公司", fax=None,
                           license_no=f"{w}{tag}") for w in ("甲", "乙", "丙", "丁")]
        s.commit()
        ids = [m.id for m in made]
    rows = [good(f"{w}{tag}有限公司", 营业执照注册号=f"{w}{tag}", 电话="13800138000",
                 传真="010-11112222", 客户信用度="2") for w in ("甲", "乙", "丙", "丁")]
    c = api("supervisor")
    r = upload(c, csv_bytes(rows))
    assert r.json["preview"]["duplicates"] == 4
    # 甲 default (update empty fields), 乙 overwrite, 丙 skip, 丁 default
    r = commit(c, r.json["id"], "update", {"3": "overwrite", "4": "skip"})
    assert r.status_code == 200, r.text
    assert (r.json["created"], r.json["updated"], r.json["skipped"]) == (0, 3, 1)
    with dbs() as s:
        a, b, cc, d = (s.get(Customer, i) for i in ids)
        assert a.fax == "010-11112222" and a.phone == "010-62345678" and a.credit == 4
        assert b.fax == "010-11112222" and b.phone == "13800138000" and b.credit == 2
        assert cc.fax is None and cc.phone == "010-62345678" and cc.credit == 4
        assert d.fax == "010-11112222" and d.credit == 4
        assert a.changed_by_fk == user_id("supervisor")
    # committing twice → 409
    again = commit(c, r.json["id"], "overwrite")
    assert again.status_code == 409 and "不能再次确认" in again.json["message"]
    bad = upload(c, csv_bytes(rows))
    r = commit(c, bad.json["id"], "replace")
    assert r.status_code == 400 and r.json["field"] == "default_action"


# ---- all or nothing ---------------------------------------------------------------------------------

def test_all_or_nothing_on_failure(api, dbs, uniq, user_id, monkeypatch):
    """A unique-number collision in the middle of the insert → nothing written, job failed."""
    tag = uniq()
    monkeypatch.setattr(wf, "CHUNK", 3)
    with dbs() as s:
        existing = f.customer(s, user_id("manager1"), name=f"原子{tag}已有公司", fax=None,
                              license_no=f"AT{tag}")
        s.commit()
        existing_id = existing.id
    # the update comes first, in the first chunk: it must be rolled back too
    rows = [good(f"原子{tag}已有公司", 营业执照注册号=f"AT{tag}", 传真="010-11112222")]
    rows += [good(f"原子{tag}{i}公司") for i in range(10)]
    c = api("supervisor")
    r = upload(c, csv_bytes(rows))
    job_id = r.json["id"]
    with dbs() as s:
        # someone takes the 8th number that the import will reserve
        day = date.today()
        key = f"{numbering.PREFIX_CUSTOMER}{day:%Y%m%d}"
        current = numbering.next_value(s, key, by=0)
        squatter = f.customer(s, user_id("manager1"), name=f"占号{tag}",
                              number=numbering.format_number(numbering.PREFIX_CUSTOMER, day,
                                                             current + 8))
        s.commit()
        squatter_id = squatter.id
        before = s.scalar(select(func.count()).select_from(Customer))
    r = commit(c, job_id, "update")
    assert r.status_code == 409, r.text
    assert r.json["message"].startswith("导入失败，没有写入任何数据")
    with dbs() as s:
        assert s.scalar(select(func.count()).select_from(Customer)) == before
        assert s.scalar(select(func.count()).select_from(Customer)
                        .where(Customer.name.like(f"原子{tag}%公司"),
                               Customer.import_id == job_id)) == 0
        assert s.get(Customer, existing_id).fax is None      # the update was rolled back too
        job = s.get(ImportJob, job_id)
        assert job.status == "failed" and "导入失败" in json.loads(job.report)["message"]
    got = api("supervisor").get(f"/api/v1/import/{job_id}")
    assert got.json["status"] == "failed" and got.json["message"]
    with dbs() as s:  # the rolled-back numbers will be handed out again: free the squatted one
        s.execute(delete(Customer).where(Customer.id == squatter_id))
        s.commit()


# ---- scale ---------------------------------------------------------------------------------------------

def _rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _big_csv(path, n, tag):
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEAD)
        base = good("x")
        for i in range(n):
            row = dict(base, 名称=f"批量{tag}客户{i}有限公司", 营业执照注册号=f"B{tag}{i}")
            w.writerow([row[h] for h in HEAD])


@pytest.fixture
def own_app(tmp_path, backend):
    """A separate SQLite app for the big imports (the shared test database stays small)."""
    if backend != "sqlite":
        pytest.skip("the 100k-row import runs on SQLite only (time)")
    from tests.conftest import build_app, dispose_app
    app = build_app(tmp_path / "own", "sqlite")
    yield app
    dispose_app(app)


def test_100k_rows_bounded_memory(own_app, uniq, tmp_path):
    """100k rows: preview + commit stream (memory sampled at every chunk stays flat);
    the Python heap peak (tracemalloc) of a 10k-row import is a few MB and does not
    grow with the file (tracemalloc makes Python ~4x slower, so it traces 10k rows).
    Measured: tracemalloc peak 8.2 MB for 10k rows and 8.2 MB for 100k rows."""
    app = own_app
    with app.app_context():
        sup = Actor(id=app.appbuilder.sm.find_user(username="supervisor").id,
                    roles=frozenset({SUPERVISOR}))
        db.session.remove()
    store = str(tmp_path / "store")
    job_ids = []
    # 1. 100k rows, resident memory sampled at every chunk of the preview and the commit
    n = int(os.environ.get("CRM_IMPORT_BIG_ROWS", "100000"))
    path = tmp_path / "big.csv"
    _big_csv(path, n, uniq())
    samples = []
    sample = lambda *a: samples.append(_rss())  # noqa: E731
    with app.app_context():
        t0 = time.perf_counter()
        job = wf.create_import(db.session, sup, "customer", "big.csv", str(path), store,
                               progress=sample)
        db.session.commit()
        job_ids.append(job.id)
        assert job.total_rows == n and json.loads(job.report)["new"] == n
        t1 = time.perf_counter()
        job = wf.commit(db.session, sup, job.id, "skip", progress=sample)
        db.session.commit()
        assert job.created_count == n
        t2 = time.perf_counter()
        db.session.remove()
    growth = max(samples) - samples[0]
    print(f"\n100k rows: preview {t1 - t0:.1f}s, commit {t2 - t1:.1f}s, "
          f"RSS growth after the first chunk {growth / 1e6:.1f} MB")
    assert len(samples) >= 90 and growth < 60e6   # holding 100k rows would take 150+ MB
    # 2. the Python heap peak of a 10k-row import (preview + commit) with tracemalloc
    path = tmp_path / "10k.csv"
    _big_csv(path, 10_000, uniq())
    tracemalloc.start()
    try:
        with app.app_context():
            job = wf.create_import(db.session, sup, "customer", "10k.csv", str(path), store)
            db.session.commit()
            job_ids.append(job.id)
            wf.commit(db.session, sup, job.id, "skip")
            db.session.commit()
            db.session.remove()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"10k rows: tracemalloc peak {peak / 1e6:.1f} MB")
    assert peak < 25e6
    with app.app_context():
        s = db.session
        assert s.scalar(select(func.count()).select_from(Customer)
                        .where(Customer.import_id.in_(job_ids))) == n + 10_000
        assert s.scalar(select(func.count(func.distinct(Customer.number)))) == \
            s.scalar(select(func.count()).select_from(Customer))
        s.remove()


# ---- export → import round trip -------------------------------------------------------------------

def test_export_import_round_trip(web, api, dbs, uniq, user_id):
    tag = uniq()
    with dbs() as s:
        made = [f.customer(s, user_id("manager1"), name=f"往返{tag}{i}有限公司",
                           fax="010-62345670", website="https://www.example.com",
                           license_no=f"RT{tag}{i}", registered_capital=Decimal("123.45"),
                           annual_turnover=Decimal("1000000.50"), national_tax_no=f"N{tag}{i}",
                           local_tax_no=f"D{tag}{i}", credit=i + 1)
                for i in range(3)]
        s.commit()
        ids = [m.id for m in made]
    cols = ["number", "name", "region", "manager", "level", "satisfaction", "credit", "address",
            "zip_code", "phone", "fax", "website", "license_no", "legal_person",
            "registered_capital", "annual_turnover", "bank", "bank_account", "local_tax_no",
            "national_tax_no", "status"]

    def snapshot():
        with dbs() as s:
            out = []
            for i in ids:
                c = s.get(Customer, i)
                out.append({k: getattr(c, k) for k in ("name", "region_id", "manager_id", "level_id",
                            "satisfaction", "credit", "address", "zip_code", "phone", "fax",
                            "website", "license_no", "legal_person", "registered_capital",
                            "annual_turnover", "bank", "bank_account", "local_tax_no",
                            "national_tax_no", "status")})
            return out
    before = snapshot()
    # 1. the customer list export (CSV, UTF-8 with BOM) imports back: same customers, no change
    w = web("supervisor")
    exported = w.get(f"/customer/export/csv/?_flt_2_name=往返{tag}")
    assert exported.status_code == 200 and exported.data.startswith(b"\xef\xbb\xbf")
    assert len(exported.data.decode("utf-8-sig").strip().splitlines()) == 4
    c = api("supervisor")
    r = upload(c, exported.data, "客户信息.csv")
    assert r.status_code == 201, r.text
    pv = r.json["preview"]
    assert pv["errors"] == 0 and pv["duplicates"] == 3 and pv["new"] == 0, pv
    assert {d["match"] for d in pv["duplicate_rows"]} == {"客户编号相同"}
    r = commit(c, r.json["id"], "overwrite")
    assert (r.json["updated"], r.json["skipped"]) == (0, 3)
    assert snapshot() == before
    # an edited export: the changed cell is applied, the rest stays
    text = exported.data.decode("utf-8-sig")
    lines = list(csv.reader(io.StringIO(text)))
    credit_col = lines[0].index("客户信用度")
    lines[1][credit_col] = "5" if lines[1][credit_col] != "5" else "1"
    changed_number = lines[1][0]
    r = upload(c, csv_bytes(lines[1:], header=lines[0], encoding="utf-8-sig"))
    r = commit(c, r.json["id"], "overwrite")
    assert (r.json["updated"], r.json["skipped"]) == (1, 2)
    with dbs() as s:
        assert s.scalar(select(Customer.credit).where(Customer.number == changed_number)) == \
            int(lines[1][credit_col])
    # 2. a full export (every column, our Chinese labels) re-imports as identical new customers
    from app.views.customer import fmt_user
    from app.reports.common import cell_text
    header = [str(wf.FIELD_LABELS["customer"][k]) for k in cols]
    body = []
    with dbs() as s:
        for i in ids:
            cust = s.get(Customer, i)
            row = []
            for k in cols:
                v = getattr(cust, k)
                if k in ("region", "level"):
                    v = v.item if v else ""
                elif k == "manager":
                    v = fmt_user(v)
                elif k == "number":
                    v = ""
                elif k == "name":
                    v = f"复制{v}"
                elif k in ("license_no", "national_tax_no"):
                    v = f"C{v}"
                elif k == "status":
                    v = "正常"
                row.append(cell_text(v))
            body.append(row)
    r = upload(c, xlsx_bytes([dict(zip(header, b)) for b in body], header=header), "全部.xlsx")
    assert r.json["preview"]["new"] == 3 and r.json["preview"]["errors"] == 0, r.json
    r = commit(c, r.json["id"])
    assert r.json["created"] == 3
    with dbs() as s:
        for orig in snapshot():
            copy = s.scalar(select(Customer).where(Customer.name == f"复制{orig['name']}"))
            for k, v in orig.items():
                want = f"C{v}" if k in ("license_no", "national_tax_no") else v
                if k == "name":
                    want = f"复制{v}"
                assert getattr(copy, k) == want, k


# ---- rights --------------------------------------------------------------------------------------------

def test_manager_imports_only_own_customers(api, dbs, uniq, user_id):
    tag = uniq()
    with dbs() as s:
        foreign = f.customer(s, user_id("manager2"), license_no=f"F{tag}")
        own = f.customer(s, user_id("manager1"), license_no=f"O{tag}", fax=None)
        s.commit()
        foreign_id, own_id = foreign.id, own.id
    rows = [good(f"经理{tag}A公司", 客户经理=""),
            good(f"经理{tag}B公司", 客户经理="manager2"),
            good(f"经理{tag}C公司", 营业执照注册号=f"F{tag}", 传真="010-11112222"),
            good(f"经理{tag}D公司", 营业执照注册号=f"O{tag}", 传真="010-11112222")]
    c = api("manager1")
    r = upload(c, csv_bytes(rows))
    pv = r.json["preview"]
    assert errors_by_row(pv)[3]["manager"].startswith("客户经理只能导入自己负责的客户")
    dups = {d["row"]: d for d in pv["duplicate_rows"]}
    assert not dups[4]["can_update"] and "其他客户经理" in dups[4]["blocked"]
    assert dups[5]["can_update"]
    job_id = r.json["id"]
    # other users cannot see or commit it; 高管 cannot import at all
    assert api("manager2").get(f"/api/v1/import/{job_id}").status_code == 403
    assert commit(api("manager2"), job_id).status_code == 403
    assert upload(api("exec"), csv_bytes(rows)).status_code == 403
    assert api("supervisor").get(f"/api/v1/import/{job_id}").status_code == 200
    assert api().get(f"/api/v1/import/{job_id}").status_code == 401
    r = commit(c, job_id, "overwrite")
    assert (r.json["created"], r.json["updated"], r.json["skipped"], r.json["failed"]) == (1, 1, 1, 1)
    got = customers_named(dbs, [f"经理{tag}A公司"])
    assert got[f"经理{tag}A公司"].manager_id == user_id("manager1")
    with dbs() as s:
        assert s.get(Customer, foreign_id).name != f"经理{tag}C公司"
        assert s.get(Customer, own_id).fax == "010-11112222"
    # the 高管 sees no import pages
    assert web_status(api, "exec") == 403


def web_status(api, username):
    return api(username).get("/api/v1/import/999999").status_code


def test_default_manager_for_supervisor(api, dbs, uniq, user_id):
    tag = uniq()
    c = api("supervisor")
    r = upload(c, csv_bytes([good(f"默认{tag}公司", 客户经理="")]))
    assert errors_by_row(r.json["preview"])[2] == {"manager_id": "客户经理不能为空。"} or \
        errors_by_row(r.json["preview"])[2] == {"manager": "客户经理不能为空。"}
    r = upload(c, csv_bytes([good(f"默认{tag}公司", 客户经理="")]),
               default_manager_id=str(user_id("manager2")))
    assert r.json["preview"]["new"] == 1
    commit(c, r.json["id"])
    assert customers_named(dbs, [f"默认{tag}公司"])[f"默认{tag}公司"].manager_id == user_id("manager2")


# ---- HTML ----------------------------------------------------------------------------------------------

def test_html_upload_preview_commit(web, dbs, uniq):
    tag = uniq()
    w = web("manager1")
    page = w.get("/imports/customers")
    assert page.status_code == 200 and "导入客户" in page.text and "上传并预览" in page.text
    rows = [good(f"网页{tag}公司", 客户经理=""), good(f"网页坏{tag}公司", 邮政编码="1", 客户经理="")]
    r = w.post_form("/imports/customers", {"file": (io.BytesIO(csv_bytes(rows, encoding="gbk")),
                                                   "客户.csv")},
                    form_url="/imports/customers", content_type="multipart/form-data")
    assert r.status_code == 302, r.text
    preview_url = r.headers["Location"]
    page = w.get(preview_url)
    assert page.status_code == 200
    assert "导入预览" in page.text and "第 3 行" in page.text and "邮政编码必须是 6 位数字" in page.text
    job_id = int(preview_url.rstrip("/").split("/")[-1])
    # POST without CSRF is refused
    assert w.post(f"/imports/{job_id}/commit", data={"default_action": "skip"}).status_code == 400
    r = w.post_form(f"/imports/{job_id}/commit", {"default_action": "skip"}, form_url=preview_url)
    assert r.status_code == 302
    page = w.get(preview_url)
    assert "导入结果" in page.text and "下载结果报告" in page.text
    prog = w.get(f"/imports/{job_id}/progress").json
    assert prog["state"] == "done" and prog["status"] == "committed"
    rep = w.get(f"/imports/{job_id}/report.csv")
    assert rep.status_code == 200 and "新建" in rep.data.decode("utf-8-sig")
    assert w.get("/imports/list/").status_code == 200
    assert f"网页{tag}公司" in customers_named(dbs, [f"网页{tag}公司"])
    tpl = w.get("/imports/template/customer.csv")
    assert tpl.data.decode("utf-8-sig").startswith("名称,地区,客户经理")
    # another manager may not open it
    assert web("manager2").get(preview_url).status_code == 403
    assert web("exec").get("/imports/customers").status_code in (302, 403)
    bad = w.post_form("/imports/customers", {"file": (io.BytesIO(b"x"), "a.doc")},
                      form_url="/imports/customers", content_type="multipart/form-data")
    assert bad.status_code == 400 and "只支持 CSV" in bad.text


# ---- merge --------------------------------------------------------------------------------------------

def _everything(s, cust, uid, tag, folder_name="合同"):
    f.contact(s, cust, uid)
    f.activity(s, cust, uid)
    f.service(s, cust, uid)
    f.opportunity(s, uid, customer_id=cust.id)
    sha = hashlib.sha256(f"{tag}{cust.id}".encode()).hexdigest()
    s.add(DocumentBlob(sha256=sha, size=1, mime="text/plain", created_on=datetime.now()))
    folder = DocumentFolder(customer_id=cust.id, name=folder_name, created_by_fk=uid,
                            changed_by_fk=uid)
    s.add(folder)
    s.flush()
    s.add(Document(customer_id=cust.id, folder_id=folder.id, name="a.txt", sha256=sha, size=1,
                   mime="text/plain", created_by_fk=uid, changed_by_fk=uid))
    s.add(MailMessage(status="sent", subject="报价", body="x", sender="a@example.com",
                      recipients="b@example.com", customer_id=cust.id, owner_id=uid,
                      created_by_fk=uid, changed_by_fk=uid))
    s.flush()


def test_merge_moves_everything(api, dbs, uniq, user_id, app):
    tag = uniq()
    uid = user_id("manager1")
    old = datetime.now() - timedelta(days=400)
    with dbs() as s:
        survivor = f.customer(s, uid, name=f"保留{tag}有限公司", fax=None, created_on=old)
        merged = f.customer(s, user_id("manager2"), name=f"合并{tag}有限公司",
                            fax="010-99998888", phone="13800000000", created_on=old)
        earlier = f.customer(s, uid, name=f"更早{tag}公司", created_on=old)
        for c in (survivor, merged):
            _everything(s, c, uid, tag)
        s.add(ChurnWarning(customer_id=merged.id, manager_id=merged.manager_id,
                           warned_on=datetime.now(), status="warning",
                           created_by_fk=uid, changed_by_fk=uid))
        s.commit()
        sid, mid, eid = survivor.id, merged.id, earlier.id
        s_no, m_no, e_no = survivor.number, merged.number, earlier.number
        prod = f.product(s)
        f.order(s, m_no, [(prod, 2, "50.00")], status=6, day=date.today() - timedelta(days=3))
        f.order(s, e_no, [(prod, 1, "10.00")], status=5, day=date.today() - timedelta(days=2))
        f.order(s, s_no, [(prod, 1, "1.00")], status=6, day=date.today() - timedelta(days=300))
        s.commit()
    sup = api("supervisor")
    # the earlier customer is merged into the one that is merged next: aliases follow
    r = sup.post("/api/v1/import/merge", json={"survivor_id": mid, "merged_id": eid})
    assert r.status_code == 200, r.text
    r = sup.post("/api/v1/import/merge", json={
        "survivor_id": sid, "merged_id": mid, "fields": {"fax": "merged", "phone": "merged",
                                                         "name": "survivor"}})
    assert r.status_code == 200, r.text
    assert r.json["moved"]["contacts"] == 1 and r.json["moved"]["aliases"] == 1
    with dbs() as s:
        for model in (Contact, Activity, ServiceTicket, Document, DocumentFolder, MailMessage,
                      ChurnWarning, Opportunity):
            assert s.scalar(select(func.count()).select_from(model)
                            .where(model.customer_id == mid)) == 0, model
            assert s.scalar(select(func.count()).select_from(model)
                            .where(model.customer_id == sid)) >= 2 - (model is ChurnWarning), model
        folders = s.scalars(select(DocumentFolder.name).where(DocumentFolder.customer_id == sid)).all()
        assert sorted(folders) == ["合同", f"合同（{m_no}）"]
        surv, gone = s.get(Customer, sid), s.get(Customer, mid)
        assert surv.fax == "010-99998888" and surv.phone == "13800000000"
        assert surv.name == f"保留{tag}有限公司" and surv.status == "normal"
        assert gone.status == "merged" and gone.merged_into_id == sid
        aliases = {a.number: a for a in s.scalars(select(CustomerNumberAlias)
                                                 .where(CustomerNumberAlias.customer_id == sid))}
        assert set(aliases) == {m_no, e_no} and aliases[m_no].merged_from_id == mid
        evs = {(e.entity_id, e.action) for e in s.scalars(
            select(WorkflowEvent).where(WorkflowEvent.entity == "customer",
                                        WorkflowEvent.entity_id.in_((sid, mid))))}
        assert {(sid, "merge"), (mid, "merged")} <= evs
        # the CRM reads the aliases' orders for the survivor
        from app.workflows.sales import orders_of_customer
        count, orders = orders_of_customer(s, s_no, page_size=10)
        assert count == 3 and {o.customer_number for o, _ in orders} == {s_no, m_no, e_no}
        from app.reports import contribution
        df = contribution.run(s, {"customer": f"{tag}"})
        # one row for the survivor, its own and its aliases' orders (amounts in cents)
        assert [(r["customer_name"], int(r["amount"])) for r in df.to_dict("records")] == \
            [(f"保留{tag}有限公司", 11100)]
        # churn: the survivor's own last order is old, but an alias ordered 3 days ago
        from app.workflows.churn import check_churn
        from app.cli import system_user_id
        warning_id = s.scalar(select(ChurnWarning.id).where(ChurnWarning.customer_id == sid))
        from app.workflows import rollup
        rollup.refresh(s)          # the check reads the order rollup's last order dates
        res = check_churn(s, db.engines["sales"], actor_id=system_user_id(),
                          customer_ids=[sid, mid, eid])
        assert res["opened"] == [] and (warning_id, sid) in res["recovered"]
        s.rollback()
    # the customer page shows the merge record and the alias
    from tests.conftest import WebClient
    page = WebClient(app, "supervisor").get(f"/customer/show/{sid}")
    assert page.status_code == 200 and "合并记录" in page.text and m_no in page.text


def test_merge_refusals(api, dbs, uniq, user_id, web):
    with dbs() as s:
        a = f.customer(s, user_id("manager1"))
        b = f.customer(s, user_id("manager1"))
        lost = f.customer(s, user_id("manager1"), status="lost")
        gone = f.customer(s, user_id("manager1"), status="merged")
        f.contact(s, b, user_id("manager1"))
        s.commit()
        aid, bid, lid, gid = a.id, b.id, lost.id, gone.id
    sup = api("supervisor")

    def merge(s_id, m_id, **kw):
        return sup.post("/api/v1/import/merge", json={"survivor_id": s_id, "merged_id": m_id, **kw})
    r = merge(aid, aid)
    assert r.status_code == 409 and r.json["message"] == "不能把客户合并到它自己。"
    r = merge(aid, gid)
    assert r.status_code == 409 and "已经合并" in r.json["message"]
    r = merge(aid, lid)
    assert r.status_code == 409 and "已流失" in r.json["message"]
    r = merge(aid, bid, fields={"number": "merged"})
    assert r.status_code == 400 and r.json["field"] == "fields"
    assert merge(aid, 99999999).status_code == 404
    assert merge("x", bid).status_code == 400
    # a 客户经理 may not merge (API 403, page 403)
    r = api("manager1").post("/api/v1/import/merge", json={"survivor_id": aid, "merged_id": bid})
    assert r.status_code == 403
    assert web("manager1").get(f"/customer/merge?survivor={aid}&merged={bid}").status_code in (302, 403)
    with dbs() as s:
        assert s.get(Customer, lid).status == "lost" and s.get(Customer, bid).status == "normal"
        assert s.scalar(select(func.count()).select_from(Contact)
                        .where(Contact.customer_id == bid)) == 1
        assert s.scalar(select(func.count()).select_from(CustomerNumberAlias)
                        .where(CustomerNumberAlias.customer_id == aid)) == 0
    # the lost one with confirmation, through the HTML page
    w = web("supervisor")
    url = f"/customer/merge?survivor={aid}&merged={lid}"
    page = w.get(url)
    assert page.status_code == 200 and "确认合并" in page.text and "我确认要合并" in page.text
    r = w.post_form("/customer/merge", {"survivor_id": aid, "merged_id": lid}, form_url=url)
    assert r.status_code == 409
    r = w.post_form("/customer/merge", {"survivor_id": aid, "merged_id": lid, "confirm_lost": "y",
                                        "field_fax": "merged"}, form_url=url)
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/customer/show/{aid}")
    with dbs() as s:
        assert s.get(Customer, lid).status == "merged"
