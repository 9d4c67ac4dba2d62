# Two commands: `make run` (set up + serve the demo) and `make test` (set up + all tests).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
FLASK   := $(BIN)/flask --app run
STAMP   := $(VENV)/.installed
PASSWORD ?= demo1234
SCALE   ?= 200
export CRM_DEMO_MODE ?= true

.PHONY: run test venv translations init seed clean bench docs

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

translations: $(STAMP)
	$(BIN)/pybabel compile -f -d translations -D messages >/dev/null

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
		--access-logfile - run:app

test: venv translations
	$(BIN)/python -m pytest $(PYTEST_ARGS)

BENCH_ARGS ?= --scale M --db sqlite,postgresql
bench: venv translations
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

clean:
	rm -rf instance/*.db instance/documents

docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
