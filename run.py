"""WSGI entry point: ``flask --app run ...`` and ``gunicorn run:app``."""
import sys

from app import ConfigError, create_app

try:
    app = create_app()
except ConfigError as e:
    # a configuration mistake is a message for the operator, not a traceback
    sys.stderr.write(f"配置错误 / configuration error: {e}\n")
    raise SystemExit(2)
