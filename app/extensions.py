"""Extension objects, bound to an app in create_app()."""
from flask_appbuilder.utils.legacy import get_sqla_class
from flask_mail import Mail
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect

from .models.base import Model

# One SQLAlchemy extension on FAB's metadata, so Alembic sees every CRM table.
db = get_sqla_class()(metadata=Model.metadata)
migrate = Migrate()
mail = Mail()
csrf = CSRFProtect()
