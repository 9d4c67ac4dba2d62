"""Default configuration.

Every key can be overridden by an environment variable ``CRM_<KEY>`` (Flask's
``from_prefixed_env``: values are parsed as JSON when they look like JSON, so
``CRM_MAIL_PORT=25`` is an int and ``CRM_MAIL_USE_TLS=true`` a bool).
"""
import os

BASE_DIR = os.path.abspath(os.path.dirname(__file__))
INSTANCE_DIR = os.environ.get("CRM_INSTANCE_DIR", os.path.join(BASE_DIR, "instance"))

# --- mode -----------------------------------------------------------------
# DEMO_MODE allows a generated SECRET_KEY persisted under instance/ (make run).
DEMO_MODE = False
SECRET_KEY = None  # required from the environment outside debug/demo mode

# --- databases --------------------------------------------------------------
SQLALCHEMY_DATABASE_URI = "sqlite:///" + os.path.join(INSTANCE_DIR, "crm.db")
# The company's sales system (products, stock, orders); read-only for the CRM.
SALES_DATABASE_URI = "sqlite:///" + os.path.join(INSTANCE_DIR, "sales.db")
SQLALCHEMY_TRACK_MODIFICATIONS = False
SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}

# --- Flask-AppBuilder -------------------------------------------------------
APP_NAME = "客户关系管理系统"
APP_THEME = ""
FAB_CREATE_DB = False        # the schema belongs to Alembic migrations
FAB_UPDATE_PERMS = False     # permissions are written by `flask crm init`
FAB_API_SWAGGER_UI = True
FAB_ADD_OPENAPI_VIEWS = False  # app/views/openapi.py registers them (a corrected document)
FAB_API_MAX_PAGE_SIZE = 100
AUTH_TYPE = 1                # AUTH_DB
AUTH_ROLE_ADMIN = "系统管理员"
AUTH_ROLE_PUBLIC = "Public"
AUTH_USER_REGISTRATION = False
FAB_ADD_SECURITY_VIEWS = True
FAB_PASSWORD_HASH_METHOD = "scrypt"
PAGE_SIZE_MAX = 100

# --- language -------------------------------------------------------------
BABEL_DEFAULT_LOCALE = "zh"
BABEL_DEFAULT_TIMEZONE = "Asia/Shanghai"
LANGUAGES = {
    "zh": {"flag": "cn", "name": "中文"},
    "en": {"flag": "gb", "name": "English"},
}
# set in create_app: FAB's own catalogue first, ours (translations/) last

# --- forms / security ---------------------------------------------------------
WTF_CSRF_ENABLED = True
WTF_CSRF_TIME_LIMIT = None
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# The longest request target (path + query string, percent-encoded) the app serves;
# longer → 414 with a Chinese page. Below gunicorn's limit_request_line (8190,
# gunicorn.conf.py) so the app, not gunicorn's English page, answers.
MAX_URL_LENGTH = 8000

# --- documents ----------------------------------------------------------------
DOCUMENT_DIR = os.path.join(INSTANCE_DIR, "documents")
DOCUMENT_MAX_BYTES = 20 * 1024 * 1024
DOCUMENT_MAX_FILES = 20
DOCUMENT_ALLOWED_TYPES = ["pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "png", "jpg",
                          "jpeg", "gif", "webp", "txt", "csv", "zip"]
# "restricted": the customer's 客户经理, 销售主管, 高管, admin and the uploader read a
# customer's documents; "customer": everyone who may read the customer (all staff)
DOCUMENT_READ_SCOPE = "restricted"

# --- mail (Flask-Mail) ----------------------------------------------------------
MAIL_SERVER = "127.0.0.1"
MAIL_PORT = 25
MAIL_USE_TLS = False
MAIL_USE_SSL = False
MAIL_USERNAME = None
MAIL_PASSWORD = None
MAIL_DEFAULT_SENDER = "crm@example.com"
IMAP_HOST = "127.0.0.1"
IMAP_PORT = 143
IMAP_USER = None
IMAP_PASSWORD = None
IMAP_SSL = False
IMAP_MAILBOX = "INBOX"

# --- jobs -------------------------------------------------------------------------
SCHEDULER_ENABLED = False   # `make run` turns it on (one process)
CHURN_MONTHS = 6
# The churn check reads the order rollup; it refreshes it first unless the rollup is
# *fresh*: refreshed no more than this many minutes ago (the hourly rollup job keeps it
# so). 0 = always refresh first. `crm churn-check --refresh` forces a refresh.
CHURN_ROLLUP_MAX_AGE = 60
# when the scheduled churn check runs (APScheduler cron fields); default Saturday 02:00
# e.g. CRM_CHURN_CRON='{"day_of_week": "sun", "hour": 3, "minute": 30}'
CHURN_CRON = None
# 每日计划提醒 (APScheduler cron fields, in BABEL_DEFAULT_TIMEZONE); default 08:00
DIGEST_CRON = None
# 服务超时升级: how often the job looks for missed service deadlines (minutes)
SLA_ESCALATION_MINUTES = 10
# the address users open the CRM at, for the links in notification mails
BASE_URL = "http://127.0.0.1:5000"

# --- login defences -----------------------------------------------------------------
RATELIMIT_ENABLED = True
# Where the login rate-limit counters live. "memory://" = in each process (gunicorn -w 4
# → each worker counts alone, 4× the limit; a warning is logged at start-up).
# Several workers/servers: "redis://host:6379/0" (shared). "auto" (`make run`): Redis at
# RATELIMIT_REDIS_URL if it answers at start-up, else memory://.
RATELIMIT_STORAGE_URI = "memory://"
RATELIMIT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Redis configured but down: count in memory per process meanwhile (logins keep
# working, no 5xx), retry Redis with back-off; never fail a request over the limiter.
RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
RATELIMIT_SWALLOW_ERRORS = True
AUTH_RATE_LIMITED = True                # form login (FAB) and API login (ours)
AUTH_RATE_LIMIT = "10 per 20 second"
LOCKOUT_ATTEMPTS = 5                    # failed logins in a row before the account locks
LOCKOUT_MINUTES = 15
FAB_PASSWORD_COMPLEXITY_ENABLED = True
FAB_PASSWORD_COMPLEXITY_VALIDATOR = "app.security.password_complexity"  # resolved in create_app

# --- web defences -------------------------------------------------------------------
FORCE_HTTPS = False                     # behind TLS: CRM_FORCE_HTTPS=true
# Behind a reverse proxy (nginx terminating TLS): how many proxies set X-Forwarded-*.
# Needed so the app sees https (no redirect loop, Secure cookies) and the client's
# address (login rate limits per client, not per proxy). 0 = not behind a proxy.
PROXY_COUNT = 0
SESSION_COOKIE_SECURE = False           # set true when served over HTTPS
CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data:",
    "font-src": "'self' data:",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
}

# --- operations (app/ops.py) -----------------------------------------------------------
# /healthz, /readyz and /metrics need no login. /metrics answers only a scraper on the
# node's loopback that does not come through the load balancer, or one that sends
# "Authorization: Bearer <METRICS_TOKEN>".
METRICS_ENABLED = True
METRICS_TOKEN = None
LOG_FORMAT = None        # "json": one JSON object per log line (with request_id); "text"
ACCESS_LOG = False       # one log line per request (method, path, status, duration, user)
