"""The ``report`` REST resource: ``GET /api/v1/report/<name>`` — the four 统计报表 with
the same args as the pages (date range, comparison, sort, page; docs/modules/reports.md).

JSON answers one page of rows with ``page``, ``page_size``, ``count`` and the totals
(never the whole set); ``format=csv|xlsx`` answers the whole set as a file.
Permission: the pages' (``can_report`` on ``Report``).
"""
from flask import request
from flask_appbuilder.api import BaseApi, expose, protect

from .. import reports
from ..extensions import db
from ..views.reports import file_response
from .base import api_step

ORDER = 45


class ReportApi(BaseApi):
    resource_name = "report"
    class_permission_name = "Report"
    method_permission_name = {"get": "report"}
    allow_browser_login = True
    openapi_spec_tag = "Reports"

    @expose("/<name>", methods=["GET"])
    @protect()
    @api_step
    def get(self, name):
        """统计报表: one page of rows as JSON, or the whole set as CSV / XLSX.
        ---
        get:
          summary: 统计报表
          parameters:
          - in: path
            name: name
            schema: {type: string, enum: [contribution, composition, service, churn]}
          - {in: query, name: from, schema: {type: string, format: date}}
          - {in: query, name: to, schema: {type: string, format: date}}
          - {in: query, name: year, schema: {type: integer}}
          - {in: query, name: compare, schema: {type: string, enum: [previous, last_year]}}
          - {in: query, name: customer, schema: {type: string}}
          - {in: query, name: by, schema: {type: string, enum: [level, credit, satisfaction, region]}}
          - {in: query, name: manager, schema: {type: string}}
          - {in: query, name: sort, schema: {type: string}}
          - {in: query, name: order, schema: {type: string, enum: [asc, desc]}}
          - {in: query, name: page, schema: {type: integer, minimum: 0}}
          - {in: query, name: page_size, schema: {type: integer, minimum: 1, maximum: 500}}
          - {in: query, name: format, schema: {type: string, enum: [json, csv, xlsx]}}
          responses:
            200: {description: one page of rows, or the file}
            400: {description: bad filter}
            403: {description: forbidden}
            404: {description: no such report}
        """
        report = reports.build(db.session, name, request.args)
        fmt = report.params["format"]
        if fmt in ("csv", "xlsx"):
            return file_response(report, fmt)
        return self.response(200, **report.to_json())


def register(appbuilder):
    appbuilder.add_api(ReportApi)
