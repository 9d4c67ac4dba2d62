"""销售机会看板: the opportunities as a pipeline board (a column per status).

``/opportunity/board/`` shows the page; ``/opportunity/board/data`` answers its
refresh (counts, forecast, and one card after a step). Both are 查看销售机会
(``can_list`` · ``Opportunity``: one function, one permission — the board is another
way of showing the opportunity list, with the same rows). The steps a card offers
(指派, 开发成功, 终止开发) are the opportunity REST resource's, so their permissions
(``can_assign`` / ``can_develop``) and the workflow's row rules apply unchanged; here
they only decide which buttons and drops a card offers (``may``).
"""
from datetime import date
from types import SimpleNamespace

from flask import current_app, jsonify, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ..api.opportunity_forecast import forecast_json
from ..extensions import db
from ..workflows import forecast as board_wf
from ..workflows import opportunities as opp_wf
from .common import current_actor
from ..workflows.errors import ValidationError
from ..workflows.service import user_name

ORDER = 11
RIGHTS = {}          # 查看销售机会 (can_list · Opportunity) is granted by app/views/opportunities.py

COLUMN_LABELS = {
    opp_wf.UNASSIGNED: _l("未指派"), opp_wf.ASSIGNED: _l("开发中"),
    opp_wf.SUCCEEDED: _l("开发成功"), opp_wf.FAILED: _l("开发失败"),
}


def _may_step(permission):
    return current_app.appbuilder.sm.has_access(permission, "Opportunity")


def card_json(actor, card, steps, today):
    # the fields the workflow's rules read (a card row is not an Opportunity)
    row = SimpleNamespace(id=card.id, number=card.number, status=card.status,
                          assignee_id=card.assignee_id,
                          created_by_fk=getattr(card, "created_by_fk", None))
    return {
        "id": card.id, "number": card.number, "customer_name": card.customer_name,
        "summary": card.summary, "success_rate": card.success_rate, "status": card.status,
        "assignee": card.assignee or None,
        "next_plan_on": card.next_plan_on.isoformat() if card.next_plan_on else None,
        "overdue": bool(card.next_plan_on and card.next_plan_on < today),
        "expected_amount": None if card.expected_amount is None else f"{card.expected_amount:.2f}",
        "expected_close_on": card.expected_close_on.isoformat() if card.expected_close_on else None,
        "url": url_for("OpportunityView.show", pk=card.id),
        "may": {"assign": steps["assign"] and opp_wf.can_assign(actor, row),
                "succeed": steps["develop"] and opp_wf.can_succeed(actor, row),
                "fail": steps["develop"] and opp_wf.can_fail(actor, row),
                # 更新预计成交 (the form on the opportunity page): can_plan + the row rule
                "update_forecast": steps["plan"] and opp_wf.can_update_forecast(actor, row)},
    }


def _steps():
    return {"assign": _may_step("can_assign"), "develop": _may_step("can_develop"),
            "plan": _may_step("can_plan")}


def board_json(actor, today=None):
    today = today or date.today()
    steps = _steps()
    return {
        "today": today.isoformat(),
        "columns": [{"status": status, "label": str(COLUMN_LABELS[status]), "count": n,
                     "cards": [card_json(actor, c, steps, today) for c in cards]}
                    for status, n, cards in board_wf.board(db.session, actor)],
        "forecast": forecast_json(board_wf.forecast(db.session, actor)),
    }


def _texts():
    """The strings board.js shows (translated here: the script has none of its own)."""
    return {
        "success_rate": _("成功机率"), "assignee": _("客户经理"), "next_plan": _("下次计划"),
        "no_plan": _("无待执行计划"), "overdue": _("已过期"), "unassigned": _("未指派"),
        "amount": _("预计金额"), "close_on": _("预计成交"), "details": _("详情"),
        "assign": _("指派…"), "succeed": _("开发成功"), "fail": _("终止开发"),
        "forecast": _("更新预计成交"),
        "confirm_succeed": _("确定开发成功？将自动建立客户。"),
        "confirm_fail": _("确定终止开发？"),
        "not_allowed": _("不能移到这一列：%(why)s", why="{why}"),
        "why_status": _("只有未指派的可以指派（移到开发中），只有开发中的可以移到开发成功或开发失败。"),
        "why_rights": _("您无权对这条销售机会执行此操作。"),
        "working": _("正在保存…"), "network": _("网络错误，没有保存，请稍后重试。"),
        "assigned_ok": _("指派成功"), "succeed_ok": _("开发成功：已建立客户 %(number)s",
                                                     number="{number}"),
        "linked_ok": _("开发成功：已关联到客户 %(number)s", number="{number}"),
        "fail_ok": _("已终止开发"), "link_to": _("关联到 %(number)s %(name)s", number="{number}",
                                                   name="{name}"),
        "create_anyway": _("仍然新建客户"), "more": _("另有 %(n)s 条，在列表中查看", n="{n}"),
        "empty": _("（无）"), "money": _("%(amount)s 元", amount="{amount}"),
        "month_none": _("未填预计成交日期"), "weighted": _("加权预计金额"),
        "without_amount": _("另有 %(n)s 条开发中的销售机会未填预计金额，不计入预测。", n="{n}"),
        "moved": _("已移到“%(column)s”", column="{column}"),
    }


def _card_id(raw):
    text = raw.strip()
    if not text.isdigit() or int(text) > 2**31 - 1:
        raise ValidationError(_l("参数 id 必须是销售机会的编号（正整数），例如 ?id=12。"), field="id")
    return int(text)


class BoardView(BaseView):
    route_base = "/opportunity/board"
    default_view = "index"
    class_permission_name = "Opportunity"
    method_permission_name = {"index": "list", "data": "list"}

    @expose("/")
    @has_access
    def index(self):
        actor = current_actor()
        steps = _steps()
        managers = ([{"id": u.id, "name": user_name(u)}
                     for u in opp_wf.assignable_managers(db.session)]
                    if steps["assign"] and opp_wf.can_assign(actor) else [])
        data = board_json(actor)
        return self.render_template(
            "board/index.html", data=data, texts=_texts(), managers=managers,
            list_url=url_for("OpportunityView.list"),
            status_filter=url_for("OpportunityView.list") + "?_flt_3_status=",
            title=_("销售机会看板"))

    @expose("/data")
    @has_access
    def data(self):
        """The counts and the forecast; with ``?id=`` also that card (null when the
        user may not read it or it does not exist)."""
        actor = current_actor()
        today = date.today()
        out = {"counts": board_wf.counts(db.session, actor),
               "forecast": forecast_json(board_wf.forecast(db.session, actor))}
        raw = request.args.get("id")
        if raw is not None:
            try:
                pk = _card_id(raw)
            except ValidationError as e:
                return jsonify(e.to_dict()), 400
            card = board_wf.card(db.session, actor, pk)
            out["card"] = card_json(actor, card, _steps(), today) if card else None
        return jsonify(out)


def register(appbuilder):
    appbuilder.add_view(BoardView, "OpportunityBoard", label=_l("销售机会看板"),
                        icon="fa-columns", category="Marketing")
