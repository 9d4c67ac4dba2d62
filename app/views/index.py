from flask_appbuilder import IndexView


class CrmIndexView(IndexView):
    index_template = "index.html"
