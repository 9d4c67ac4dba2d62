"""Chinese error pages (HTML) and JSON errors (API) for 400/403/404/409/500/503.

When the database is unreachable the usual error page cannot be rendered: its menu
and the signed-in user are read from the database. Those errors get a plain page
(``error_plain.html``, no menu, no user, no context processors) and 503; the API
answers 503 ``{"message": ...}`` in Chinese, also when the connection is lost
inside one of FAB's ``@safe`` API methods (which would otherwise say "Fatal error").
"""
import logging
import sys

from flask import current_app, g, jsonify, render_template, request
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from ..workflows.errors import DomainError

log = logging.getLogger(__name__)

# the database cannot be reached (refused, dropped, pool exhausted): 503, try again later
DB_UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)

TITLES = {
    400: _l("请求有误"), 401: _l("请先登录"), 403: _l("无权执行此操作"), 404: _l("页面或记录不存在"),
    405: _l("不支持的请求方式"), 409: _l("当前状态不允许此操作"), 413: _l("上传的文件太大"),
    414: _l("网址太长"), 429: _l("请求过于频繁"),
    422: _l("输入有误"), 500: _l("系统内部错误"), 503: _l("服务暂时不可用"),
}


def wants_json():
    return request.path.startswith("/api/") or (
        request.accept_mimetypes.best == "application/json")


def error_response(code, message=None):
    title = str(TITLES.get(code) or _l("出错了"))
    message = str(message) if message else title
    if wants_json():
        return jsonify(message=message), code
    try:
        if "user" not in g:
            # errors raised before FAB's before_request (e.g. CSRF) still render the menu
            from flask_login import current_user
            g.user = current_user
        return render_template("error.html", code=code, title=title, message=message), code
    except DB_UNAVAILABLE:
        # the menu/user needed the database and it is unreachable: the same answer
        # on a page that needs no database
        _rollback()
        log.exception("database error while rendering an error page")
        return plain_error_response(code, message)


def plain_error_response(code, message):
    """An error page that needs no database: rendered straight from the Jinja
    environment (no context processors: Flask-Login's would load the user), with
    no menu and no user. For the API the same Chinese JSON as ``error_response``."""
    title = str(TITLES.get(code) or _l("出错了"))
    if wants_json():
        return jsonify(message=str(message)), code
    from flask_login import AnonymousUserMixin
    g._login_user = AnonymousUserMixin()   # nothing later in this request loads the user
    template = current_app.jinja_env.get_template("error_plain.html")
    html = template.render(code=code, title=title, message=str(message),
                           lang=str(get_locale() or "zh"),
                           retry_url="/" + request.full_path.lstrip("/"),   # never //host
                           retry_label=_("重试"))
    response = current_app.response_class(html, status=code, mimetype="text/html")
    response.headers["Retry-After"] = "30"
    return response


def _rollback():
    from ..extensions import db
    try:
        db.session.rollback()
    except Exception:   # the connection is gone: nothing to roll back
        log.debug("rollback after a database error failed", exc_info=True)


def _api_response_500(original):
    """FAB's ``@safe`` turns every exception of an API method into 500 "Fatal error"
    (said in Chinese by ``chinese_api_errors``). A lost database connection is
    not an internal error: 503 with a Chinese message."""
    def response_500(self, message=None):
        if isinstance(sys.exc_info()[1], DB_UNAVAILABLE):   # inside @safe's except
            _rollback()
            resp = self.response(503, message=_("数据库暂时无法连接，请稍后重试。"))
            resp.headers["Retry-After"] = "30"
            return resp
        return original(self, message=message)
    response_500._crm_wrapped = True
    return response_500


def request_target_length(environ):
    """The length of the request target as it goes over the wire: path + query,
    percent-encoded (a 汉字 counts 9: %E5%8C%97). Servers hand the raw target over
    (gunicorn RAW_URI, others REQUEST_URI); bytes a client sent unencoded are counted
    as their encoding."""
    from urllib.parse import quote

    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:
        raw = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        if environ.get("QUERY_STRING"):
            raw += "?" + environ["QUERY_STRING"]
    return len(quote(raw.encode("latin-1", "replace"), safe="".join(
        chr(c) for c in range(0x21, 0x7f))))


def _reject_long_url():
    """414 in Chinese for a URL over MAX_URL_LENGTH (before anything else runs)."""
    limit = current_app.config.get("MAX_URL_LENGTH")
    if limit and request_target_length(request.environ) > limit:
        return error_response(414, _("网址太长（超过 %(n)d 个字符），请减少搜索条件后重试。",
                                     n=limit))
    return None


def register_error_handlers(app):
    # first of all before_request functions: no query, no session work for such a URL
    app.before_request_funcs.setdefault(None, []).insert(0, _reject_long_url)
    app.after_request(chinese_api_errors)
    from .request_args import install as install_args_check
    install_args_check(app)     # malformed list arguments (HTML and REST q) → 400
    @app.errorhandler(DomainError)
    def _domain(e):
        return error_response(e.status, e.message)

    @app.errorhandler(HTTPException)
    def _http(e):
        if e.code in TITLES and e.code != 401:
            desc = e.description if isinstance(e.description, str) and not e.description.startswith(("The ", "You ", "Method", "The server")) else None
            return error_response(e.code, desc)
        return e

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(DisconnectionError)
    @app.errorhandler(PoolTimeoutError)
    def _db_down(e):
        _rollback()
        app.logger.exception("database error")
        return plain_error_response(503, _("数据库暂时无法连接，请稍后重试。"))

    from flask_appbuilder.api import BaseApi
    if not getattr(BaseApi.response_500, "_crm_wrapped", False):
        BaseApi.response_500 = _api_response_500(BaseApi.response_500)


# FAB and flask-jwt-extended answer some API errors in English; say them in Chinese.
_API_ENGLISH = {
    "Forbidden": _l("无权执行此操作：您的角色没有这项权限。"),
    "Not authorized": _l("用户名或密码错误，或账号已被锁定/停用。"),
    "Missing Authorization Header": _l("请先登录：请求缺少访问令牌（Authorization: Bearer …）。"),
    "Token has expired": _l("访问令牌已过期，请重新登录。"),
    "Not found": _l("记录不存在。"),
    "Not Found": _l("记录不存在。"),
    "Method Not Allowed": _l("该资源不支持这种请求方式（只读资源不能修改）。"),
    "Fatal error": _l("系统内部错误，请稍后重试；如果问题持续，请联系系统管理员。"),
    "Internal error": _l("系统内部错误，请稍后重试；如果问题持续，请联系系统管理员。"),
}


def chinese_api_errors(response):
    """after_request: replace FAB's/JWT's English error bodies on /api/ with Chinese."""
    if (response.status_code >= 400 and request.path.startswith("/api/")
            and response.mimetype == "application/json" and not response.is_streamed):
        data = response.get_json(silent=True)
        if isinstance(data, dict):
            text = data.get("message") if isinstance(data.get("message"), str) else data.get("msg")
            if isinstance(text, str) and text in _API_ENGLISH:
                data.pop("msg", None)
                data["message"] = str(_API_ENGLISH[text])
                if text == "Forbidden" and response.status_code == 403:
                    data["message"] = _forbidden_message() or data["message"]
                response.set_data(jsonify(data).get_data())
    return response


def _forbidden_message():
    """FAB's 403 names no permission; say which function's permission is missing."""
    try:
        from .common import ACTION_LABELS, FUNCTION_VIEW_LABELS, route_permission

        pair = route_permission(current_app.appbuilder, request.endpoint)
        if pair is None or pair[1] not in FUNCTION_VIEW_LABELS:
            return None
        perm, view = pair
        return _("无权执行此操作：您的角色没有“%(perm)s · %(view)s”（%(code)s · %(name)s）权限；"
                 "如需使用，请联系系统管理员在 安全 › 角色列表 中授予。",
                 perm=_(ACTION_LABELS.get(perm, perm)), view=str(FUNCTION_VIEW_LABELS[view]),
                 code=perm, name=view)
    except Exception:      # never let the message break the answer
        log.debug("no permission name for the 403", exc_info=True)
        return None
