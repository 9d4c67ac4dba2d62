# Two commands: `make run` (set up + serve the demo) and `make test` (set up + all tests).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
FLASK   := $(BIN)/flask --app run
STAMP   := $(VENV)/.installed
PASSWORD ?= demo1234
SCALE   ?= 200
export CRM_DEMO_MODE ?= true

.PHONY: test-cluster run test venv translations i18n init seed clean bench docs

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

# every translations/<locale>/ (zh, en); fuzzy entries are left out (an unreviewed
# translation could carry the wrong placeholders)
translations: $(STAMP)
	$(BIN)/pybabel compile -d translations -D messages >/dev/null

# extract → update zh and en → fill zh → check en (fails listing missing English) → compile
i18n: $(STAMP)
	$(BIN)/python tools/i18n.py

init: venv translations
	$(FLASK) crm init

run: init
	$(FLASK) crm seed-demo --scale $(SCALE) --password $(PASSWORD)
	@echo "服务地址 / URL: http://127.0.0.1:5000  (Ctrl+C 停止)"
	@# process workers, not threads: FAB's list filters are not thread-safe (FAB #2366)
	@# login rate limits: Redis on 127.0.0.1:6379 when it answers (shared by both workers), else per worker
	CRM_SCHEDULER_ENABLED=true CRM_RATELIMIT_STORAGE_URI=$${CRM_RATELIMIT_STORAGE_URI:-auto} $(BIN)/gunicorn --workers 2 --bind 127.0.0.1:5000 \
		--limit-request-line 8190 \
		--access-logfile - run:app

test: venv translations
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# two gunicorn nodes behind nginx on PostgreSQL + Redis, one node SIGKILLed under load
test-cluster: venv translations
	$(BIN)/python -m pytest tests/cluster -m cluster -rA $(PYTEST_ARGS)

BENCH_ARGS ?= --scale M --db sqlite,postgresql
bench: venv translations
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

clean:
	rm -rf instance/*.db instance/documents

docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
