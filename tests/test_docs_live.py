"""Docs you can paste (issue 18 item 8), against a real server started like ``make run``:

* a make-run-like instance dir (``crm init`` + ``crm seed-demo --password demo1234`` in
  demo mode, the secret key file written there);
* every documented CLI command line ``flask --app run crm churn-check`` works in it
  *without* CRM_DEMO_MODE; without the key file it explains in Chinese (no traceback);
* gunicorn (this repository's gunicorn.conf.py, as ``make run`` starts it) serves; every
  ```bash block's curl login example of docs/ returns a token;
* an over-long URL is answered by the app in Chinese (414), not by gunicorn;
* what ``curl -OJ`` really saves for a Chinese document name (the docs say it).
"""
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
DOCS = ROOT / "docs"
PASSWORD = "demo1234"          # the Makefile's PASSWORD

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def _env(instance, demo):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update(CRM_INSTANCE_DIR=str(instance), CRM_SCHEDULER_ENABLED="false",
               PATH=f"{BIN}:{env.get('PATH', '')}")
    if demo:
        env["CRM_DEMO_MODE"] = "true"
    return env


def _flask(instance, *args, demo=False, timeout=600):
    return subprocess.run([str(BIN / "flask"), "--app", "run", *args], cwd=ROOT,
                          env=_env(instance, demo), capture_output=True, text=True,
                          timeout=timeout)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """An instance dir as ``make run`` leaves it (small scale)."""
    inst = tmp_path_factory.mktemp("makerun")
    for args in (("crm", "init"), ("crm", "seed-demo", "--scale", "12", "--password", PASSWORD)):
        r = _flask(inst, *args, demo=True)
        assert r.returncode == 0, r.stderr[-2000:]
    assert (inst / "secret_key").exists()
    return inst


@pytest.fixture(scope="module")
def server(instance):
    port = _free_port()
    log = open(instance / "gunicorn.log", "w")
    # as the Makefile's run target: cwd = the repository (gunicorn.conf.py is read)
    proc = subprocess.Popen([str(BIN / "gunicorn"), "--workers", "1", "--bind",
                             f"127.0.0.1:{port}", "run:app"], cwd=ROOT,
                            env=_env(instance, demo=True), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            assert proc.poll() is None, (instance / "gunicorn.log").read_text()[-2000:]
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                base + "/login/"], capture_output=True, text=True)
            if r.stdout == "200":
                break
            assert time.time() < deadline, "gunicorn did not answer"
            time.sleep(0.5)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)     # the group we started
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _bash_blocks():
    for path in sorted(DOCS.rglob("*.md")):
        for m in re.finditer(r"```bash\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
            yield path, m.group(1)


def _on(base, command):
    return re.sub(r"(https?://)?(localhost|127\.0\.0\.1):5000", base, command)


# ---- the password ---------------------------------------------------------------------

def test_docs_use_the_demo_password():
    wrong = [str(p.relative_to(ROOT)) for p in DOCS.rglob("*.md")
             if re.search(r"demo123(?!4)", p.read_text(encoding="utf-8"))]
    assert not wrong, f"demo123 (the demo password is {PASSWORD}) in {wrong}"


# ---- the CLI as documented --------------------------------------------------------------

def test_documented_churn_check_works_without_demo_mode(instance):
    assert "flask --app run crm churn-check" in (DOCS / "modules/churn.md").read_text()
    r = _flask(instance, "crm", "churn-check", demo=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def test_cli_without_any_key_explains_in_chinese(tmp_path):
    r = _flask(tmp_path, "crm", "churn-check", demo=False, timeout=120)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "CRM_SECRET_KEY" in r.stderr and "未设置" in r.stderr
    assert not (tmp_path / "secret_key").exists()      # only demo mode writes a key


# ---- every documented curl login ---------------------------------------------------------

def test_every_documented_curl_login_returns_a_token(server):
    logins = 0
    for path, block in _bash_blocks():
        for m in re.finditer(r"TOKEN=\$\((curl .*?/security/login.*?)\)\n", block, re.S):
            script = _on(server, f"TOKEN=$({m.group(1)})\necho \"$TOKEN\"")
            r = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                               timeout=60)
            token = r.stdout.strip()
            assert r.returncode == 0 and token.count(".") == 2 and token != "null", (
                f"{path.relative_to(ROOT)}: {r.stdout!r} {r.stderr!r}")
            logins += 1
        for m in re.finditer(r"^(curl -s -X POST \S+/security/login \\\n(?:.*\\\n)*.*)$",
                             block, re.M):
            r = subprocess.run(["bash", "-c", _on(server, m.group(1))], capture_output=True,
                               text=True, timeout=60)
            assert '"access_token"' in r.stdout, f"{path.relative_to(ROOT)}: {r.stdout!r}"
            logins += 1
    assert logins >= 7, logins


# ---- over-long URLs ----------------------------------------------------------------------

def _curl_status(url):
    r = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", url],
                       capture_output=True, text=True, timeout=60)
    body, _, code = r.stdout.rpartition("\n")
    return int(code), body


def test_long_urls_are_served_or_refused_in_chinese(server):
    code, body = _curl_status(server + "/login/?q=" + "x" * 6000)
    assert code == 200, body[:300]          # gunicorn's default (4094) refused this
    code, body = _curl_status(server + "/login/?q=" + "x" * 8100)
    assert code == 414 and "网址太长" in body and "Request Line" not in body
    code, body = _curl_status(server + "/api/v1/customer/?q=" + "x" * 8100)
    assert code == 414 and "网址太长" in json.loads(body)["message"]
    # beyond gunicorn's own maximum (8190) gunicorn answers before the app can
    code, body = _curl_status(server + "/login/?q=" + "x" * 8300)
    assert code == 400 and "Request Line is too large" in body


# ---- what curl -OJ saves -------------------------------------------------------------------

def test_download_file_names_with_real_curl(server, tmp_path):
    """The header carries an ASCII fallback and the exact UTF-8 name; this records what
    curl itself does with them (docs/modules/documents.md says the same)."""
    login = subprocess.run(
        ["curl", "-s", "-X", "POST", server + "/api/v1/security/login", "-H",
         "Content-Type: application/json", "-d",
         json.dumps({"username": "supervisor", "password": PASSWORD, "provider": "db"})],
        capture_output=True, text=True, timeout=60)
    auth = "Authorization: Bearer " + json.loads(login.stdout)["access_token"]
    customers = subprocess.run(["curl", "-s", "-H", auth, server + "/api/v1/customer/"],
                               capture_output=True, text=True, timeout=60)
    cid = json.loads(customers.stdout)["ids"][0]
    src = tmp_path / "采购合同2026.pdf"
    src.write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    up = subprocess.run(["curl", "-s", "-H", auth, "-F", f"customer_id={cid}",
                         "-F", f"file=@{src}", server + "/api/v1/document/"],
                        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "ids" in json.loads(up.stdout), up.stdout
    doc_id = json.loads(up.stdout)["ids"][0]
    url = f"{server}/api/v1/document/{doc_id}/download"

    head = subprocess.run(["curl", "-s", "-D", "-", "-o", "/dev/null", "-H", auth, url],
                          capture_output=True, text=True, timeout=60).stdout
    disposition = re.search(r"(?im)^content-disposition: (.*)\r?$", head).group(1).strip()
    m = re.fullmatch(r'attachment; filename="([\x21-\x7e]+)"; filename\*=UTF-8\'\'(\S+)',
                     disposition)
    assert m, disposition
    fallback = m.group(1)
    assert fallback == "2026.pdf"                       # the ASCII part of the name
    assert m.group(2) == "%E9%87%87%E8%B4%AD%E5%90%88%E5%90%8C2026.pdf"

    out = tmp_path / "oj"
    out.mkdir()
    subprocess.run(["curl", "-s", "-OJ", "-H", auth, url], cwd=out, check=True, timeout=60)
    # curl (7.88 here) reads only filename=, not filename*: it saves the ASCII fallback
    assert [p.name for p in out.iterdir()] == [fallback]

    # the command the docs give for the exact name: the name from the header's filename*
    named = tmp_path / "named"
    named.mkdir()
    block = (DOCS / "modules/documents.md").read_text(encoding="utf-8")
    m = re.search(r"^(NAME=.*\n(?:.*\n)*?curl .*-o \"\$NAME\".*)$", block, re.M)
    assert m, "docs/modules/documents.md: the exact-name download command"
    script = f'TOKEN="{auth.split()[-1]}"\n' + _on(server, m.group(1)).replace(
        "document/7/", f"document/{doc_id}/")
    r = subprocess.run(["bash", "-c", script], cwd=named, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in named.iterdir()] == ["采购合同2026.pdf"]
    assert (named / "采购合同2026.pdf").read_bytes() == src.read_bytes()
