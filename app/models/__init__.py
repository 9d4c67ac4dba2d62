"""All models; importing this package registers every table."""
from .base import Model, SalesBase, sales_metadata  # noqa: F401
from .user import Role, User  # noqa: F401
from .dictionary import DictItem, NumberSequence, RoleGrant  # noqa: F401
from .customer import Activity, ChurnMeasure, ChurnWarning, Contact, Customer  # noqa: F401
from .opportunities import Opportunity, PlanItem  # noqa: F401
from .service import ServiceTicket  # noqa: F401
from .audit import WorkflowEvent  # noqa: F401
from .document import Document, DocumentBlob, DocumentFolder  # noqa: F401
from .mail import MailAttachment, MailMessage  # noqa: F401
from .imports import CustomerNumberAlias, ImportJob  # noqa: F401
from .sales import Order, OrderLine, Product, Stock  # noqa: F401
from .notification import JobRun, Notification, NotificationSetting  # noqa: F401
from .session import LoginSession  # noqa: F401
from .list_prefs import ListPreference  # noqa: F401
from .rollup import (  # noqa: F401
    OrderCustomer, OrderDay, OrderLast, OrderMonth, OrderOwner, RollupState,
)
