"""Name checks for FAB's user forms (安全 › 用户列表 add/edit, and 修改个人信息).

The rule itself is ``app.workflows.names.check_name``; this module only adapts it to
WTForms. ``app/security.py`` plugs ``NAME_VALIDATORS`` into the user model view and
uses ``UserInfoEditView`` below for the own-profile form (same class name as FAB's, so
the endpoint and permission names do not change).
"""
from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
from flask_appbuilder.security.forms import UserInfoEdit
from flask_appbuilder.security.views import UserInfoEditView as FabUserInfoEditView
from flask_babel import lazy_gettext as _l
from wtforms import StringField
from wtforms import ValidationError as FormValidationError
from wtforms.validators import DataRequired

from ..workflows.errors import ValidationError
from ..workflows.names import check_name


class PlainName:
    """WTForms validator: no control/format characters (CR, LF, TAB, U+202E …)."""

    def __init__(self, label):
        self.label = label

    def __call__(self, form, field):
        try:
            check_name(field.data or "", field.name, self.label)
        except ValidationError as e:
            raise FormValidationError(str(e.message))


NAME_VALIDATORS = {"first_name": [PlainName(_l("姓"))], "last_name": [PlainName(_l("名"))]}


class CrmUserInfoEdit(UserInfoEdit):
    # this project keeps the 姓 in first_name and the 名 in last_name (see app/security.py)
    first_name = StringField(_l("姓"),
                             validators=[DataRequired()] + NAME_VALIDATORS["first_name"],
                             widget=BS3TextFieldWidget(),
                             description=_l("您的姓，例如“张”"))
    last_name = StringField(_l("名"),
                            validators=[DataRequired()] + NAME_VALIDATORS["last_name"],
                            widget=BS3TextFieldWidget(),
                            description=_l("您的名，例如“伟”"))


class UserInfoEditView(FabUserInfoEditView):
    """FAB's 修改个人信息 with the name check."""

    form = CrmUserInfoEdit
