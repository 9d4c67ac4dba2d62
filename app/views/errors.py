"""Chinese error pages (HTML) and JSON errors (API) for 400/403/404/409/500/503."""
from flask import g, jsonify, render_template, request
from flask_babel import gettext as _
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from ..workflows.errors import DomainError

TITLES = {
    400: "请求有误", 401: "请先登录", 403: "无权执行此操作", 404: "页面或记录不存在",
    405: "不支持的请求方式", 409: "当前状态不允许此操作", 413: "上传的文件太大",
    422: "输入有误", 500: "系统内部错误", 503: "服务暂时不可用",
}


def wants_json():
    return request.path.startswith("/api/") or (
        request.accept_mimetypes.best == "application/json")


def error_response(code, message=None):
    title = _(TITLES.get(code, "出错了"))
    message = str(message) if message else title
    if wants_json():
        return jsonify(message=message), code
    if "user" not in g:
        # errors raised before FAB's before_request (e.g. CSRF) still render the menu
        from flask_login import current_user
        g.user = current_user
    return render_template("error.html", code=code, title=title, message=message), code


def register_error_handlers(app):
    app.after_request(chinese_api_errors)
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
    def _db_down(e):
        from ..extensions import db
        db.session.rollback()
        app.logger.exception("database error")
        return error_response(503, _("数据库暂时无法连接，请稍后重试。"))


# FAB and flask-jwt-extended answer some API errors in English; say them in Chinese.
_API_ENGLISH = {
    "Forbidden": "无权执行此操作：您的角色没有这项权限。",
    "Not authorized": "用户名或密码错误，或账号已被锁定/停用。",
    "Missing Authorization Header": "请先登录：请求缺少访问令牌（Authorization: Bearer …）。",
    "Token has expired": "访问令牌已过期，请重新登录。",
    "Not found": "记录不存在。",
    "Not Found": "记录不存在。",
    "Method Not Allowed": "该资源不支持这种请求方式（只读资源不能修改）。",
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
                data["message"] = _API_ENGLISH[text]
                response.set_data(jsonify(data).get_data())
    return response
