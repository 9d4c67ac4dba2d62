"""THE rights matrix: who may call which route and method (HTML and API).

Keyed by Flask endpoint + HTTP method; the value is the set of callers that pass
the permission check: ``anon`` (not signed in), ``admin`` (系统管理员), ``exec``
(高管), ``supervisor`` (销售主管), ``manager`` (客户经理).
``tests/test_rights_matrix.py`` enumerates ``app.url_map`` and fails for a
route without an entry here, and for any caller whose outcome differs.

"Allowed" means the permission check passes — row rules ("own customer",
"assignee only", "creator only") and state rules come on top and are tested
separately (manager2 on manager1's rows). Sources: DESIGN.md §3 and the RIGHTS of
each app/views module (written into the database by ``flask crm init``).
"""
ANON, ADMIN_, EXEC, SUP, MGR = "anon", "admin", "exec", "supervisor", "manager"

# the accounts the matrix signs in as
ROLE_USERS = {ADMIN_: "admin", EXEC: "exec", SUP: "supervisor", MGR: "manager1"}

NOBODY = frozenset()
ADMIN = frozenset({ADMIN_})                     # 系统管理员 only
STAFF = frozenset({ADMIN_, EXEC, SUP, MGR})     # every signed-in role
EVERYONE = STAFF | {ANON}
WRITERS = frozenset({ADMIN_, SUP, MGR})         # 客户经理/销售主管 write, 高管 reads
REPORTERS = frozenset({ADMIN_, EXEC, SUP})      # 统计报表
SUPERVISORS = frozenset({ADMIN_, SUP})          # 指派, 合并
MANAGERS = frozenset({ADMIN_, MGR})             # 执行开发计划, 开发成功/终止 (the assignee)
PLANNERS = frozenset({ADMIN_, SUP, MGR})        # 制定开发计划: the assignee or 销售主管
AUDITORS = frozenset({ADMIN_, EXEC})            # 操作记录

# FAB actions: who may run which @action (``/action/<name>/<pk>`` and
# ``/action_post``). The TABLE entry of a view's action routes is the union of its
# actions' callers; an unknown action name is refused to everyone.
ACTIONS = {
    ("CrmRoleModelView", "copyrole"): ADMIN,
    ("CrmUserDBModelView", "resetmypassword"): STAFF,
    ("CrmUserDBModelView", "resetpasswords"): ADMIN,
    ("CrmUserDBModelView", "unlock"): ADMIN,
    ("CrmUserDBModelView", "userinfoedit"): STAFF,
    ("DictItemView", "lock"): ADMIN,
}

TABLE = {
    # 操作记录: read-only for 系统管理员 and 高管; no write route exists
    ("AuditView.list", "GET"): AUDITORS,
    ("AuditView.show", "GET"): AUDITORS,
    ("AuditApi.get_list", "GET"): AUDITORS,
    ("AuditApi.get", "GET"): AUDITORS,
    ("AuditApi.info", "GET"): AUDITORS,

    ("ActivityApi.get", "GET"): STAFF,
    ("ActivityApi.get_list", "GET"): STAFF,
    ("ActivityApi.info", "GET"): STAFF,
    ("ActivityApi.post", "POST"): WRITERS,
    ("ActivityApi.put", "PUT"): WRITERS,

    ("ActivityView.add", "GET"): WRITERS,
    ("ActivityView.add", "POST"): WRITERS,
    ("ActivityView.edit", "GET"): WRITERS,
    ("ActivityView.edit", "POST"): WRITERS,
    ("ActivityView.list", "GET"): STAFF,

    ("AuthDBView.login", "GET"): EVERYONE,
    ("AuthDBView.login", "POST"): EVERYONE,
    ("AuthDBView.logout", "GET"): EVERYONE,

    # 订单汇总: the state for whoever reads the reports, 刷新 for 系统管理员
    ("RollupView.list", "GET"): REPORTERS,
    ("RollupView.refresh", "POST"): ADMIN,
    ("RollupApi.get", "GET"): REPORTERS,
    ("RollupApi.refresh", "POST"): ADMIN,

    ("ChurnApi.confirm", "POST"): WRITERS,
    ("ChurnApi.get", "GET"): STAFF,
    ("ChurnApi.get_list", "GET"): STAFF,
    ("ChurnApi.info", "GET"): STAFF,
    ("ChurnApi.measures", "POST"): WRITERS,

    ("ChurnView.confirm", "POST"): WRITERS,
    ("ChurnView.list", "GET"): STAFF,
    ("ChurnView.export_list", "GET"): STAFF,  # 导出: whoever sees the list
    ("ChurnView.measure", "POST"): WRITERS,
    ("ChurnView.show", "GET"): STAFF,

    ("ContactApi.delete", "DELETE"): WRITERS,
    ("ContactApi.get", "GET"): STAFF,
    ("ContactApi.get_list", "GET"): STAFF,
    ("ContactApi.info", "GET"): STAFF,
    ("ContactApi.post", "POST"): WRITERS,
    ("ContactApi.put", "PUT"): WRITERS,

    ("ContactView.add", "GET"): WRITERS,
    ("ContactView.add", "POST"): WRITERS,
    ("ContactView.delete", "POST"): WRITERS,
    ("ContactView.edit", "GET"): WRITERS,
    ("ContactView.edit", "POST"): WRITERS,
    ("ContactView.list", "GET"): STAFF,
    ("ContactView.export_list", "GET"): STAFF,  # 导出: whoever sees the list

    ("CrmIndexView.index", "GET"): EVERYONE,

    ("CrmUserDBModelView.action", "GET"): NOBODY,
    ("CrmUserDBModelView.action", "POST"): STAFF,
    ("CrmUserDBModelView.action_post", "POST"): STAFF,
    ("CrmUserDBModelView.add", "GET"): ADMIN,
    ("CrmUserDBModelView.add", "POST"): ADMIN,
    ("CrmUserDBModelView.delete", "GET"): NOBODY,
    ("CrmUserDBModelView.delete", "POST"): ADMIN,
    ("CrmUserDBModelView.edit", "GET"): ADMIN,
    ("CrmUserDBModelView.edit", "POST"): ADMIN,
    ("CrmUserDBModelView.list", "GET"): ADMIN,
    ("CrmUserDBModelView.show", "GET"): ADMIN,
    ("CrmUserDBModelView.userinfo", "GET"): STAFF,

    ("CustomerApi.get", "GET"): STAFF,
    ("CustomerApi.get_list", "GET"): STAFF,
    ("CustomerApi.info", "GET"): STAFF,
    ("CustomerApi.post", "POST"): WRITERS,
    ("CustomerApi.put", "PUT"): WRITERS,
    ("CustomerApi.timeline", "GET"): STAFF,  # 客户动态: what each caller may read of it

    ("CustomerView.add", "GET"): WRITERS,
    ("CustomerView.add", "POST"): WRITERS,
    ("CustomerView.delete", "GET"): NOBODY,
    ("CustomerView.delete", "POST"): NOBODY,
    ("CustomerView.edit", "GET"): WRITERS,
    ("CustomerView.edit", "POST"): WRITERS,
    ("CustomerView.export_list", "GET"): STAFF,
    ("CustomerView.list", "GET"): STAFF,
    ("CustomerView.mine", "GET"): STAFF,
    ("CustomerView.show", "GET"): STAFF,

    ("DictItemApi.delete", "DELETE"): ADMIN,
    ("DictItemApi.get", "GET"): STAFF,
    ("DictItemApi.get_list", "GET"): STAFF,
    ("DictItemApi.info", "GET"): STAFF,
    ("DictItemApi.post", "POST"): ADMIN,
    ("DictItemApi.put", "PUT"): ADMIN,

    ("DictItemView.action", "GET"): NOBODY,
    ("DictItemView.action", "POST"): ADMIN,
    ("DictItemView.action_post", "POST"): ADMIN,
    ("DictItemView.add", "GET"): ADMIN,
    ("DictItemView.add", "POST"): ADMIN,
    ("DictItemView.delete", "GET"): ADMIN,
    ("DictItemView.delete", "POST"): ADMIN,
    ("DictItemView.edit", "GET"): ADMIN,
    ("DictItemView.edit", "POST"): ADMIN,
    ("DictItemView.export_list", "GET"): STAFF,
    ("DictItemView.list", "GET"): STAFF,
    ("DictItemView.show", "GET"): STAFF,

    ("DocumentApi.create_folder", "POST"): WRITERS,
    ("DocumentApi.delete", "DELETE"): WRITERS,
    ("DocumentApi.download", "GET"): STAFF,
    ("DocumentApi.folders", "GET"): STAFF,
    ("DocumentApi.get", "GET"): STAFF,
    ("DocumentApi.get_list", "GET"): STAFF,
    ("DocumentApi.post", "POST"): WRITERS,

    ("DocumentView.create_folder", "POST"): WRITERS,
    ("DocumentView.customer", "GET"): STAFF,
    ("DocumentView.delete", "POST"): WRITERS,
    ("DocumentView.download", "GET"): STAFF,
    ("DocumentView.list", "GET"): STAFF,
    ("DocumentView.preview", "GET"): STAFF,
    ("DocumentView.upload", "POST"): WRITERS,

    ("ImportApi.commit", "POST"): WRITERS,
    ("ImportApi.contacts", "POST"): WRITERS,
    ("ImportApi.customers", "POST"): WRITERS,
    ("ImportApi.get", "GET"): WRITERS,
    ("ImportApi.merge", "POST"): SUPERVISORS,
    ("ImportApi.report", "GET"): WRITERS,

    ("ImportView.commit", "POST"): WRITERS,
    ("ImportView.contacts", "GET"): WRITERS,
    ("ImportView.contacts", "POST"): WRITERS,
    ("ImportView.customers", "GET"): WRITERS,
    ("ImportView.customers", "POST"): WRITERS,
    ("ImportView.jobs", "GET"): WRITERS,
    ("ImportView.progress", "GET"): WRITERS,
    ("ImportView.remap", "POST"): WRITERS,
    ("ImportView.report", "GET"): WRITERS,
    ("ImportView.show", "GET"): WRITERS,
    ("ImportView.template", "GET"): WRITERS,

    ("LocaleView.index", "GET"): EVERYONE,

    ("MailApi.get", "GET"): STAFF,
    ("MailApi.get_list", "GET"): STAFF,
    ("MailApi.post", "POST"): STAFF,
    ("MailApi.retry", "POST"): STAFF,

    ("MailView.box", "GET"): STAFF,
    ("MailView.compose", "GET"): STAFF,
    ("MailView.compose", "POST"): STAFF,
    ("MailView.retry", "POST"): STAFF,
    ("MailView.show", "GET"): STAFF,

    ("MenuApi.get_menu_data", "GET"): ADMIN,

    ("MergeView.merge", "GET"): SUPERVISORS,
    ("MergeView.merge", "POST"): SUPERVISORS,

    ("MyPlanView.list", "GET"): MANAGERS,
    ("MyPlanView.export_list", "GET"): MANAGERS,  # 导出: whoever sees the list

    ("OpenApi.get", "GET"): STAFF,      # the OpenAPI document (app/views/openapi.py)

    ("OpportunityApi.assign", "POST"): SUPERVISORS,
    ("OpportunityApi.bulk_assign", "POST"): SUPERVISORS,    # 批量指派
    ("OpportunityApi.delete", "DELETE"): WRITERS,
    ("OpportunityApi.fail", "POST"): MANAGERS,
    ("OpportunityApi.get", "GET"): STAFF,
    ("OpportunityApi.get_list", "GET"): STAFF,
    ("OpportunityApi.info", "GET"): STAFF,
    ("OpportunityApi.forecast", "POST"): PLANNERS,
    ("OpportunityApi.plan_item_add", "POST"): PLANNERS,
    ("OpportunityApi.plan_item_delete", "DELETE"): PLANNERS,
    ("OpportunityApi.plan_item_put", "PUT"): PLANNERS,
    ("OpportunityApi.post", "POST"): WRITERS,
    ("OpportunityApi.put", "PUT"): WRITERS,
    ("OpportunityApi.succeed", "POST"): MANAGERS,

    ("OpportunityView.add", "GET"): WRITERS,
    ("OpportunityView.add", "POST"): WRITERS,
    ("OpportunityView.assign", "GET"): SUPERVISORS,
    ("OpportunityView.assign", "POST"): SUPERVISORS,
    ("OpportunityView.bulk_assign", "GET"): SUPERVISORS,   # 批量指派
    ("OpportunityView.bulk_assign", "POST"): SUPERVISORS,
    ("OpportunityView.delete", "GET"): WRITERS,
    ("OpportunityView.delete", "POST"): WRITERS,
    ("OpportunityView.edit", "GET"): WRITERS,
    ("OpportunityView.edit", "POST"): WRITERS,
    ("OpportunityView.execute", "GET"): MANAGERS,
    ("OpportunityView.execute_item", "POST"): MANAGERS,
    ("OpportunityView.fail", "POST"): MANAGERS,
    ("OpportunityView.list", "GET"): STAFF,
    ("OpportunityView.export_list", "GET"): STAFF,  # 导出: whoever sees the list
    ("OpportunityView.forecast", "POST"): PLANNERS,
    ("OpportunityView.plan", "GET"): PLANNERS,
    ("OpportunityView.plan_add", "POST"): PLANNERS,
    ("OpportunityView.plan_delete", "POST"): PLANNERS,
    ("OpportunityView.plan_edit", "POST"): PLANNERS,
    ("OpportunityView.show", "GET"): STAFF,
    ("OpportunityView.succeed", "POST"): MANAGERS,

    # 销售机会看板 and its forecast: 查看销售机会 (can_list · Opportunity); the steps a
    # card offers are the OpportunityApi routes above
    ("BoardView.index", "GET"): STAFF,
    ("BoardView.data", "GET"): STAFF,
    ("OpportunityForecastApi.get", "GET"): STAFF,

    ("OrderApi.get", "GET"): STAFF,
    ("OrderApi.get_list", "GET"): STAFF,
    ("OrderApi.info", "GET"): STAFF,

    ("OrderView.export_list", "GET"): STAFF,
    ("OrderView.list", "GET"): STAFF,
    ("OrderView.show", "GET"): STAFF,

    ("CrmPermissionModelView.add", "GET"): NOBODY,
    ("CrmPermissionModelView.add", "POST"): NOBODY,
    ("CrmPermissionModelView.delete", "GET"): NOBODY,
    ("CrmPermissionModelView.delete", "POST"): NOBODY,
    ("CrmPermissionModelView.edit", "GET"): NOBODY,
    ("CrmPermissionModelView.edit", "POST"): NOBODY,
    ("CrmPermissionModelView.list", "GET"): ADMIN,
    ("CrmPermissionModelView.show", "GET"): NOBODY,

    ("CrmPermissionViewModelView.add", "GET"): NOBODY,
    ("CrmPermissionViewModelView.add", "POST"): NOBODY,
    ("CrmPermissionViewModelView.delete", "GET"): NOBODY,
    ("CrmPermissionViewModelView.delete", "POST"): NOBODY,
    ("CrmPermissionViewModelView.edit", "GET"): NOBODY,
    ("CrmPermissionViewModelView.edit", "POST"): NOBODY,
    ("CrmPermissionViewModelView.list", "GET"): ADMIN,
    ("CrmPermissionViewModelView.show", "GET"): NOBODY,

    ("ProductApi.get", "GET"): STAFF,
    ("ProductApi.get_list", "GET"): STAFF,
    ("ProductApi.info", "GET"): STAFF,

    ("ProductView.export_list", "GET"): STAFF,  # 导出: whoever sees the list
    ("ProductView.list", "GET"): STAFF,
    ("ProductView.show", "GET"): STAFF,

    ("ReportApi.get", "GET"): REPORTERS,

    ("ReportView.index", "GET"): REPORTERS,
    ("ReportView.report", "GET"): REPORTERS,

    ("ResetMyPasswordView.this_form_get", "GET"): STAFF,
    ("ResetMyPasswordView.this_form_post", "POST"): STAFF,

    ("ResetPasswordView.this_form_get", "GET"): ADMIN,
    ("ResetPasswordView.this_form_post", "POST"): ADMIN,

    ("CrmRoleModelView.action", "GET"): NOBODY,
    ("CrmRoleModelView.action", "POST"): ADMIN,
    ("CrmRoleModelView.action_post", "POST"): ADMIN,
    ("CrmRoleModelView.add", "GET"): ADMIN,
    ("CrmRoleModelView.add", "POST"): ADMIN,
    ("CrmRoleModelView.delete", "GET"): NOBODY,
    ("CrmRoleModelView.delete", "POST"): ADMIN,
    ("CrmRoleModelView.edit", "GET"): ADMIN,
    ("CrmRoleModelView.edit", "POST"): ADMIN,
    ("CrmRoleModelView.list", "GET"): ADMIN,
    ("CrmRoleModelView.show", "GET"): ADMIN,

    ("SecurityApi.login", "POST"): EVERYONE,
    ("SecurityApi.refresh", "POST"): STAFF,

    ("ServiceApi.assign", "POST"): SUPERVISORS,   # 服务分配 = can_assign on Service, as the page
    ("ServiceApi.bulk_assign", "POST"): SUPERVISORS,  # 批量分配: part of 服务分配 (can_assign)
    ("ServiceApi.reassign", "POST"): SUPERVISORS,  # part of 服务分配 (can_assign on Service)
    ("ServiceApi.priority", "POST"): SUPERVISORS,  # 调整优先级: part of 服务分配 (can_assign)
    ("ServiceApi.feedback", "POST"): WRITERS,
    ("ServiceApi.get", "GET"): STAFF,
    ("ServiceApi.get_list", "GET"): STAFF,
    ("ServiceApi.handle", "POST"): WRITERS,
    ("ServiceApi.info", "GET"): STAFF,
    ("ServiceApi.post", "POST"): WRITERS,

    ("ServiceArchiveView.list", "GET"): STAFF,
    ("ServiceArchiveView.export_list", "GET"): STAFF,  # 导出: whoever sees the list
    ("ServiceArchiveView.show", "GET"): STAFF,

    ("ServiceAssignView.assign", "POST"): SUPERVISORS,
    ("ServiceAssignView.bulk", "POST"): SUPERVISORS,  # 批量分配 (can_assign on Service)
    ("ServiceAssignView.reassign", "POST"): SUPERVISORS,
    ("ServiceAssignView.priority", "POST"): SUPERVISORS,  # 调整优先级 (can_assign on Service)
    ("ServiceAssignView.list", "GET"): SUPERVISORS,

    ("ServiceCreateView.create", "GET"): WRITERS,
    ("ServiceCreateView.create", "POST"): WRITERS,
    ("ServiceCreateView.customers", "GET"): WRITERS,

    ("ServiceFeedbackView.feedback", "GET"): WRITERS,
    ("ServiceFeedbackView.feedback", "POST"): WRITERS,
    ("ServiceFeedbackView.list", "GET"): WRITERS,

    ("ServiceHandleView.handle", "GET"): WRITERS,
    ("ServiceHandleView.handle", "POST"): WRITERS,
    ("ServiceHandleView.list", "GET"): WRITERS,

    ("StockApi.get", "GET"): STAFF,
    ("StockApi.get_list", "GET"): STAFF,
    ("StockApi.info", "GET"): STAFF,

    ("StockView.export_list", "GET"): STAFF,  # 导出: whoever sees the list
    ("StockView.list", "GET"): STAFF,
    ("StockView.show", "GET"): STAFF,

    ("SwaggerView.show", "GET"): STAFF,  # Swagger UI; each call still needs its own right

    ("UserDirectoryApi.get", "GET"): STAFF,
    ("UserDirectoryApi.get_list", "GET"): STAFF,

    ("CrmUserGroupModelView.add", "GET"): ADMIN,
    ("CrmUserGroupModelView.add", "POST"): ADMIN,
    ("CrmUserGroupModelView.delete", "GET"): NOBODY,
    ("CrmUserGroupModelView.delete", "POST"): ADMIN,
    ("CrmUserGroupModelView.edit", "GET"): ADMIN,
    ("CrmUserGroupModelView.edit", "POST"): ADMIN,
    ("CrmUserGroupModelView.list", "GET"): ADMIN,
    ("CrmUserGroupModelView.show", "GET"): ADMIN,

    ("UserInfoEditView.this_form_get", "GET"): STAFF,
    ("UserInfoEditView.this_form_post", "POST"): STAFF,

    ("UserStatsChartView.chart", "GET"): ADMIN,
    ("UserStatsChartView.chart", "GET"): ADMIN,

    ("UtilView.back", "GET"): EVERYONE,

    ("CrmViewMenuModelView.add", "GET"): NOBODY,
    ("CrmViewMenuModelView.add", "POST"): NOBODY,
    ("CrmViewMenuModelView.delete", "GET"): NOBODY,
    ("CrmViewMenuModelView.delete", "POST"): NOBODY,
    ("CrmViewMenuModelView.edit", "GET"): NOBODY,
    ("CrmViewMenuModelView.edit", "POST"): NOBODY,
    ("CrmViewMenuModelView.list", "GET"): ADMIN,
    ("CrmViewMenuModelView.show", "GET"): NOBODY,

    ("favicon", "GET"): EVERYONE,
    # 工作台 and notifications: every signed-in user, each for their own data
    ("DashboardView.list", "GET"): STAFF,
    # 全局搜索: every signed-in user; each kind filtered by its module's read rule
    ("SearchView.index", "GET"): STAFF,
    ("SearchApi.get", "GET"): STAFF,
    ("DashboardApi.get", "GET"): STAFF,
    ("NotificationView.list", "GET"): STAFF,
    ("NotificationView.read", "POST"): STAFF,
    ("NotificationView.read_all", "POST"): STAFF,
    ("NotificationView.settings", "GET"): STAFF,
    ("NotificationView.settings", "POST"): STAFF,
    ("NotificationApi.get_list", "GET"): STAFF,
    ("NotificationApi.read", "POST"): STAFF,
    ("NotificationApi.read_all", "POST"): STAFF,
    ("NotificationApi.settings", "GET"): STAFF,
    ("NotificationApi.put_settings", "PUT"): STAFF,
    # operations (app/ops.py): no login; /metrics answers loopback scrapers only
    ("ops.healthz", "GET"): EVERYONE,
    ("ops.readyz", "GET"): EVERYONE,
    ("prometheus_metrics", "GET"): EVERYONE,
}
