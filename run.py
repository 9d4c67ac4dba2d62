"""WSGI entry point: ``flask --app run ...`` and ``gunicorn run:app``."""
import sys

from app import ConfigError, cli_needs_views, create_app

try:
    # `flask --app run crm churn-check` / `crm rollup …` start without the web views
    app = create_app(views=cli_needs_views())
except ConfigError as e:
    # a configuration mistake is a message for the operator, not a traceback
    sys.stderr.write(f"配置错误 / configuration error: {e}\n")
    raise SystemExit(2)
