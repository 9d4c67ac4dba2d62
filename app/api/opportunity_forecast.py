"""``GET /api/v1/opportunity/forecast/``: the forecast of the opportunities in progress.

Σ 预计金额 × 成功机率 by month of 预计成交日期 and by 客户经理 (app/workflows/forecast.py).
Permission: 查看销售机会 (``can_list`` · ``Opportunity``), the function that shows the
销售机会看板 — one function, one permission; the rows are those the list shows.
"""
from flask_appbuilder import expose
from flask_appbuilder.api import BaseApi, protect, safe

from ..extensions import db
from ..views.common import current_actor
from ..workflows import forecast as wf
from .base import api_step

ORDER = 20


def _money(value):
    return f"{value:.2f}"


def forecast_json(data):
    """The workflow's figures with money as two-decimal text (as every money field)."""
    def fig(row):
        return dict(row, weighted=_money(row["weighted"]), amount=_money(row["amount"]))
    return {"total": fig(data["total"]), "by_month": [fig(r) for r in data["by_month"]],
            "by_manager": [fig(r) for r in data["by_manager"]],
            "without_amount": data["without_amount"]}


class OpportunityForecastApi(BaseApi):
    resource_name = "opportunity_forecast"
    route_base = "/api/v1/opportunity/forecast"
    class_permission_name = "Opportunity"
    method_permission_name = {"get": "list"}
    allow_browser_login = True
    openapi_spec_tag = "opportunity"

    @expose("/", methods=["GET"])
    @protect()
    @safe
    @api_step
    def get(self):
        """预计成交：开发中的销售机会 Σ 预计金额 × 成功机率，按预计成交月份和客户经理汇总.
        ---
        get:
          responses:
            200:
              description: the forecast (money as two-decimal text, 元)
              content:
                application/json:
                  schema: {$ref: '#/components/schemas/Forecast'}
            401: {$ref: '#/components/responses/401'}
            403: {$ref: '#/components/responses/401'}
        """
        return self.response(200, result=forecast_json(wf.forecast(db.session, current_actor())))


def register(appbuilder):
    appbuilder.add_api(OpportunityForecastApi)
