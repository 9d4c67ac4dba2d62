"""Step 7: mixed load — gunicorn with process workers, N client threads for S seconds.

Only loopback traffic. Every client thread loops until the deadline (bounded), picking
weighted actions: reads (customer list HTML/API, customer page, reports, opportunity
and service lists) and writes through the REST API with JWT (create an opportunity,
assign it, add a plan item; create a service ticket, assign, handle, feedback). Each
thread walks its own records through the workflow, so a 409 is an error, not a race
the benchmark provoked. Errors = transport errors, HTTP 5xx and any unexpected status.
"""
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from datetime import date
from urllib.parse import quote

import requests

from .common import GUNICORN, PASSWORD, ROOT, app_env, summary

SEARCH = "科技"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(t, workers, port, log_path):
    env = app_env(t)
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [GUNICORN, "-w", str(workers), "-b", f"127.0.0.1:{port}", "--timeout", "120",
         "run:app"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({proc.returncode}), see {log_path}")
        try:
            if requests.get(base + "/login/", timeout=2).status_code == 200:
                return proc, base
        except requests.RequestException:
            pass
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"gunicorn did not answer within 90 s, see {log_path}")


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)   # the group we started (master + workers)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def jwt(base, username):
    r = requests.post(base + "/api/v1/security/login", timeout=30,
                      json={"username": username, "password": PASSWORD, "provider": "db"})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def html_cookies(base, username):
    s = requests.Session()
    page = s.get(base + "/login/", timeout=30)
    token = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', page.text).group(1)
    r = s.post(base + "/login/", data={"csrf_token": token, "username": username,
                                        "password": PASSWORD}, allow_redirects=False, timeout=30)
    if r.status_code != 302:
        raise RuntimeError(f"form login of {username}: HTTP {r.status_code}")
    return s.cookies.get_dict()


class Client(threading.Thread):
    WEIGHTS = [  # (action, weight)
        ("list_html", 16), ("list_api", 12), ("customer_page", 12), ("report", 6),
        ("opportunity_list", 6), ("service_list", 6),
        ("opp_create", 10), ("opp_assign", 6), ("plan_item", 6),
        ("svc_create", 8), ("svc_assign", 5), ("svc_handle", 4), ("svc_feedback", 3),
    ]

    def __init__(self, n, base, auth, ids, deadline, out):
        super().__init__(daemon=True)
        self.n, self.base, self.auth, self.ids = n, base, auth, ids
        self.deadline, self.out = deadline, out
        self.rnd = random.Random(1000 + n)
        self.http = requests.Session()
        self.http.cookies.update(auth["cookies"])   # HTML pages: manager1's session cookie
        self.api = requests.Session()   # JWT only: with a cookie the API would use that user
        self.unassigned, self.assigned = [], []
        self.svc = {"created": [], "assigned": [], "handled": []}

    def call(self, action, method, url, expect=(200,), **kw):
        t0 = time.perf_counter()
        try:
            http = self.api if "headers" in kw else self.http
            r = http.request(method, self.base + url, timeout=60, **kw)
            status = r.status_code
        except requests.RequestException as e:
            r, status = None, type(e).__name__
        dt = time.perf_counter() - t0
        ok = status in expect
        self.out.append((action, dt, ok, status))
        return r if ok else None

    def run(self):
        actions, weights = zip(*self.WEIGHTS)
        m1, sup = self.auth["manager1"], self.auth["supervisor"]
        m1_id = self.auth["manager1_id"]
        year = date.today().year - 1
        while time.time() < self.deadline:
            a = self.rnd.choices(actions, weights)[0]
            cid = self.rnd.choice(self.ids)
            if a == "list_html":
                qs = self.rnd.choice(["", f"?_flt_2_name={quote(SEARCH)}",
                                      "?_oc_CustomerView=name&_od_CustomerView=asc",
                                      f"?page_CustomerView={self.rnd.randint(1, 50)}"])
                self.call(a, "GET", "/customer/list/" + qs)
            elif a == "list_api":
                q = self.rnd.choice(["(page:0,page_size:20)",
                                     f"(filters:!((col:name,opr:ct,value:{SEARCH})),page:0,page_size:20)",
                                     "(order_column:name,order_direction:asc,page:3,page_size:20)"])
                self.call(a, "GET", f"/api/v1/customer/?q={quote(q)}", headers=m1)
            elif a == "customer_page":
                self.call(a, "GET", f"/customer/show/{cid}")
            elif a == "report":
                url = self.rnd.choice(["/api/v1/report/composition", "/api/v1/report/service",
                                       f"/api/v1/report/service?year={year}",
                                       "/api/v1/report/churn",
                                       f"/api/v1/report/contribution?customer={quote(SEARCH)}1"])
                self.call(a, "GET", url, headers=sup)
            elif a == "opportunity_list":
                self.call(a, "GET", "/api/v1/opportunity/?q=(page:0,page_size:20)", headers=m1)
            elif a == "service_list":
                self.call(a, "GET", "/api/v1/service/?q=(page:0,page_size:20)", headers=m1)
            elif a == "opp_create":
                r = self.call(a, "POST", "/api/v1/opportunity/", expect=(201,), headers=m1, json={
                    "customer_name": f"压测客户{self.n}-{self.rnd.randint(1, 10**6)}",
                    "success_rate": 50, "summary": "压测：采购意向", "description": "压测数据",
                    "source": "压测", "contact": "张三", "contact_phone": "13900139000"})
                if r is not None:
                    self.unassigned.append(r.json()["id"])
            elif a == "opp_assign" and self.unassigned:
                pk = self.unassigned.pop()
                if self.call(a, "POST", f"/api/v1/opportunity/{pk}/assign", headers=sup,
                             json={"assignee_id": m1_id}) is not None:
                    self.assigned.append(pk)
            elif a == "plan_item" and self.assigned:
                pk = self.rnd.choice(self.assigned)
                self.call(a, "POST", f"/api/v1/opportunity/{pk}/plan_items", expect=(201,),
                          headers=m1, json={"date": date.today().isoformat(),
                                            "content": "压测：电话回访"})
            elif a == "svc_create":
                r = self.call(a, "POST", "/api/v1/service/", expect=(201,), headers=m1, json={
                    "service_type": "咨询", "summary": "压测：咨询价格", "customer_id": cid,
                    "request": "压测数据"})
                if r is not None:
                    self.svc["created"].append(r.json()["id"])
            elif a == "svc_assign" and self.svc["created"]:
                pk = self.svc["created"].pop()
                if self.call(a, "POST", f"/api/v1/service/{pk}/assign", headers=sup,
                             json={"assignee_id": m1_id}) is not None:
                    self.svc["assigned"].append(pk)
            elif a == "svc_handle" and self.svc["assigned"]:
                pk = self.svc["assigned"].pop()
                if self.call(a, "POST", f"/api/v1/service/{pk}/handle", headers=m1,
                             json={"handling": "压测：已处理"}) is not None:
                    self.svc["handled"].append(pk)
            elif a == "svc_feedback" and self.svc["handled"]:
                pk = self.svc["handled"].pop()
                self.call(a, "POST", f"/api/v1/service/{pk}/feedback", headers=m1,
                          json={"result": "满意", "satisfaction": 5})


def run_load(t, seconds, clients, workers, ids, manager1_id, log_path):
    port = free_port()
    proc, base = start_gunicorn(t, workers, port, log_path)
    try:
        auth = {"manager1": jwt(base, "manager1"), "supervisor": jwt(base, "supervisor"),
                "cookies": html_cookies(base, "manager1")}
        auth["manager1_id"] = manager1_id
        out = []
        deadline = time.time() + seconds
        threads = [Client(i, base, auth, ids, deadline, out) for i in range(clients)]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join(seconds + 120)
        elapsed = time.perf_counter() - t0
    finally:
        stop(proc)
    times = [dt for _, dt, _, _ in out]
    errors = [(a, s) for a, _, ok, s in out if not ok]
    by_action = {}
    for a, dt, ok, s in out:
        by_action.setdefault(a, []).append(dt)
    err_kinds = {}
    for a, s in errors:
        err_kinds[f"{a}:{s}"] = err_kinds.get(f"{a}:{s}", 0) + 1
    return {"requests": len(out), "seconds": elapsed, "throughput": len(out) / elapsed,
            "latency": summary(times), "errors": len(errors), "error_kinds": err_kinds,
            "by_action": {a: summary(v) for a, v in sorted(by_action.items())},
            "clients": clients, "workers": workers}


if __name__ == "__main__":  # pragma: no cover - manual use
    import sys
    from .common import target
    t = target(sys.argv[1], sys.argv[2])
    print(json.dumps(run_load(t, 10, 4, 2, [1, 2, 3], 4, "/tmp/gunicorn-bench.log"), indent=1))
