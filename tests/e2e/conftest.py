"""Browser tests: a real server on 127.0.0.1 (fresh database seeded by
``crm seed-demo``) driven by Playwright with Debian's Chromium.

Skipped with a message when /usr/bin/chromium is missing (``apt-get install
chromium``); .ci/run installs it. Each journey fails on a browser console error
or a failed request, and saves a full-page screenshot under tests/e2e/artifacts/.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts"
CHROMIUM = os.environ.get("CRM_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "E2e-pass-123"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """(base_url, env) of a live server on a fresh, seeded database."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium not found: apt-get install chromium (Debian package)")
    tmp = tmp_path_factory.mktemp("e2e")
    env = dict(os.environ, CRM_INSTANCE_DIR=str(tmp), CRM_DEMO_MODE="true",
               CRM_SECRET_KEY="e2e-secret", FLASK_APP="run", PYTHONUNBUFFERED="1",
               CRM_MAIL_SERVER="127.0.0.1", CRM_MAIL_PORT=str(_free_port()))
    env.pop("CRM_TEST_DATABASE_URL", None)
    flask = [sys.executable, "-m", "flask", "--app", "run"]
    subprocess.run(flask + ["crm", "init"], env=env, cwd=ROOT, check=True, capture_output=True)
    subprocess.run(flask + ["crm", "seed-demo", "--scale", "60", "--password", PASSWORD],
                   env=env, cwd=ROOT, check=True, capture_output=True)
    port = _free_port()
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(flask + ["run", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/login/", timeout=1)
            break
        except Exception:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("server did not start: " + (tmp / "server.log").read_text())
    yield base, env
    proc.terminate()
    proc.wait(10)


# ``browser`` (one Chromium for the whole run) lives in tests/conftest.py: Playwright's
# sync API allows one instance per thread, and tests outside e2e/ use it too.


class Session:
    """One user's browser tab with console/request error tracking."""

    def __init__(self, browser, base):
        self.base = base
        self.context = browser.new_context(viewport={"width": 1366, "height": 900},
                                           locale="zh-CN")
        self.page = self.context.new_page()
        self.errors = []
        self.allowed_statuses = set()
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.attachments = set()
        self.page.on("requestfailed", self._on_failed)
        self.page.on("response", self._on_response)

    def _on_console(self, msg):
        if msg.type != "error":
            return
        m = re.search(r"status of (\d{3})", msg.text)
        if m and int(m.group(1)) in self.allowed_statuses:
            return  # an error page the journey expects (403/409), already checked
        self.errors.append(f"console: {msg.text}")

    def _on_failed(self, req):
        # ERR_ABORTED: Chromium aborts downloads and the in-flight loads of a page the
        # journey navigates away from (e.g. the favicon) — not a failure of the app.
        if "ERR_ABORTED" in (req.failure or ""):
            return
        self.errors.append(f"requestfailed: {req.url} {req.failure}")

    def _on_response(self, resp):
        try:
            if "attachment" in (resp.headers.get("content-disposition") or ""):
                self.attachments.add(resp.url)
        except Exception:
            pass
        if resp.status >= 400 and resp.status not in self.allowed_statuses:
            self.errors.append(f"HTTP {resp.status}: {resp.url}")

    def goto(self, path):
        return self.page.goto(self.base + path)

    def login(self, username, password=PASSWORD):
        self.goto("/login/")
        self.page.fill("#username", username)
        self.page.fill("#password", password)
        self.page.click("input[type=submit]")
        self.page.wait_for_load_state()
        assert "/login" not in self.page.url, f"login of {username} failed"
        return self

    def logout(self):
        self.goto("/logout/")

    def screenshot(self, name):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def text(self):
        return self.page.inner_text("body")

    def close(self):
        self.context.close()


@pytest.fixture
def session(server, browser, request):
    base, _env = server
    opened = []

    def _open(username=None):
        s = Session(browser, base)
        opened.append(s)
        if username:
            s.login(username)
        return s

    yield _open
    name = request.node.name
    for i, s in enumerate(opened):
        try:
            s.screenshot(f"{name}-{i}")
        except Exception:
            pass
    errors = [e for s in opened for e in s.errors]
    for s in opened:
        s.close()
    assert not errors, "browser errors:\n" + "\n".join(errors)


@pytest.fixture
def cli(server):
    """Run ``flask crm ...`` against the server's database."""
    _base, env = server

    def _run(*args):
        return subprocess.run([sys.executable, "-m", "flask", "--app", "run", "crm", *args],
                              env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    return _run


__all__ = ["PASSWORD", "shutil"]
