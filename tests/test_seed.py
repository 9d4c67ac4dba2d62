"""Demo data (``crm seed-demo``) looks like a company's history (issue 18 item 10):
service summaries match their 服务类型, old tickets are archived and recent ones open in
every state, churn confirmations fall in many months; and it is deterministic."""
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import ChurnMeasure, ChurnWarning, DictItem, ServiceTicket

from .conftest import PASSWORD, build_app, dispose_app

SCALE = 120


def _seeded(tmp):
    app = build_app(tmp, "sqlite")
    with app.app_context():
        from app.seed import seed_demo
        seed_demo(scale=SCALE, password=PASSWORD, seed=7, echo=lambda *a, **k: None)
        db.session.remove()
    return app


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    app = _seeded(tmp_path_factory.mktemp("seed"))
    yield app
    dispose_app(app)


def test_service_tickets_history(seeded):
    with seeded.app_context():
        rows = db.session.execute(
            select(ServiceTicket.status, ServiceTicket.created_on, ServiceTicket.summary,
                   DictItem.item, ServiceTicket.assigned_on, ServiceTicket.handled_on)
            .join(DictItem, DictItem.id == ServiceTicket.service_type_id)).all()
        db.session.remove()
    assert len(rows) == 2 * SCALE
    now = datetime.now()
    for status, created, summary, kind, assigned, handled in rows:
        assert summary.startswith(kind), (kind, summary)          # 咨询… / 建议… / 投诉…
        if created < now - timedelta(days=46):
            assert status == "archived", (created, status)
        if assigned:
            assert created <= assigned <= now
        if handled:
            assert assigned <= handled <= now
    recent = {s for s, c, *_ in rows if c >= now - timedelta(days=46)}
    assert recent == {"created", "assigned", "handled", "archived"}
    assert {k for *_, k, _a, _h in rows} == {"咨询", "建议", "投诉"}


def test_churn_confirmations_spread_over_months(seeded):
    with seeded.app_context():
        lost = db.session.scalars(select(ChurnWarning.confirmed_on)
                                  .where(ChurnWarning.status == "lost")).all()
        statuses = set(db.session.scalars(select(ChurnWarning.status)).all())
        warned = set(db.session.scalars(select(ChurnWarning.warned_on)).all())
        without = db.session.scalar(
            select(ChurnWarning.id).where(ChurnWarning.status.in_(("lost", "delaying")),
                                          ~ChurnWarning.measures.any()).limit(1))
        db.session.remove()
    months = {d.strftime("%Y-%m") for d in lost}
    assert len(months) >= 4, months
    assert max(lost) <= datetime.now()
    assert len({w.date() for w in warned}) >= 4          # checks on several past days
    assert {"lost", "recovered", "warning"} <= statuses
    assert without is None                                # 暂缓/已流失 always have measures


def test_seed_is_deterministic(seeded, tmp_path_factory):
    other = _seeded(tmp_path_factory.mktemp("seed2"))

    def fingerprint(app):
        with app.app_context():
            out = (db.session.execute(select(ServiceTicket.status, ServiceTicket.summary)
                                      .order_by(ServiceTicket.id)).all(),
                   db.session.execute(select(ChurnWarning.status, ChurnWarning.customer_id)
                                      .order_by(ChurnWarning.id)).all(),
                   db.session.scalars(select(ChurnMeasure.text).order_by(ChurnMeasure.id)).all())
            db.session.remove()
            return out
    try:
        assert fingerprint(other) == fingerprint(seeded)
    finally:
        dispose_app(other)


# ---- the bulk load switches the search indexes off and builds them once (issue 23) ------

@pytest.fixture(params=["own"])
def seeded_here(request, app, seeded, tmp_path_factory):
    """A seeded database on the backend of ``app`` (SQLite: the module's; PostgreSQL: one of
    its own), beside ``app`` — migrated from scratch, never bulk-loaded — to compare with."""
    if app.config["CRM_TEST_BACKEND"] == "sqlite":
        yield seeded
        return
    tmp = tmp_path_factory.mktemp("seed_pg")
    other = build_app(tmp, "postgresql")
    with other.app_context():
        from app.seed import seed_demo
        seed_demo(scale=SCALE, password=PASSWORD, seed=7, echo=lambda *a, **k: None)
        db.session.remove()
    try:
        yield other
    finally:
        dispose_app(other)


def _catalog(app):
    from app.workflows import search_index
    with app.app_context():
        with db.engine.connect() as conn:
            out = search_index.catalog(conn)
        db.session.remove()
    return out


def test_seed_rebuilds_search_triggers_and_indexes(app, seeded_here):
    """After the load the search triggers (SQLite) / GIN trigram indexes (PostgreSQL) are
    exactly those of a freshly migrated database (migrations 0008 and 0012: per kind 3
    FTS triggers and 3 piece triggers on SQLite; 14 trigram indexes and 18 piece triggers,
    ENABLE ALWAYS, on PostgreSQL)."""
    fresh = _catalog(app)
    assert len(fresh) == (36 if app.config["CRM_TEST_BACKEND"] == "sqlite" else 32)
    assert _catalog(seeded_here) == fresh


def test_search_finds_seeded_rows_and_keeps_indexing(seeded_here, uniq):
    from sqlalchemy import func, or_, update

    from app.models import Contact, Customer
    from app.workflows import search
    from app.workflows.actors import ADMIN, Actor

    with seeded_here.app_context():
        s = db.session
        admin = Actor(id=1, roles=frozenset({ADMIN}))
        # every seeded customer is found by its number (index built after the load) …
        some = s.execute(select(Customer.id, Customer.number, Customer.name)
                         .order_by(Customer.id.desc()).limit(3)).all()
        for cid, number, name in some:
            hits = search.search(s, admin, number, ["customer"], limit=100)["customer"]["items"]
            assert cid in {c.id for c in hits}, number
            part = name[:4]
            found = search.search(s, admin, part, ["customer"], limit=5)["customer"]
            expected = s.scalar(select(func.count()).select_from(Customer)
                                .where(Customer.name.like(f"%{part}%")))
            assert found["count"] == min(expected, search.COUNT_CAP), part
            # 1–2 汉字 are answered by the piece table (migration 0012), refilled after the load
            two = name[:2]
            found = search.search(s, admin, two, ["customer"], limit=5)["customer"]
            expected = s.scalar(select(func.count()).select_from(Customer).where(or_(
                *(getattr(Customer, c).like(f"%{two}%")
                  for c in ("name", "number", "phone", "legal_person")))))
            assert expected and found["count"] == min(expected, search.COUNT_CAP), two
        contact = s.execute(select(Contact.id, Contact.email).order_by(Contact.id).limit(1)).one()
        hits = search.search(s, admin, contact.email, ["contact"])["contact"]["items"]
        assert contact.id in {c.id for c in hits}
        # … and the triggers / indexes are live again: a later change is searchable
        marker = f"检索{uniq()}"
        s.execute(update(Customer).where(Customer.id == some[0].id).values(name=marker, changed_by_fk=1))
        s.flush()
        hits = search.search(s, admin, marker, ["customer"])["customer"]["items"]
        assert [c.id for c in hits] == [some[0].id]
        hits = search.search(s, admin, "检索", ["customer"], limit=100)["customer"]["items"]
        assert some[0].id in {c.id for c in hits}
        s.rollback()
        db.session.remove()


def test_search_index_ensure_heals_a_killed_load(seeded):
    """A load killed between the drop and the rebuild (SQLite runs the DDL outside the
    load's transaction) is healed by ``ensure`` (the seed's resume path and crm init)."""
    from app.models import Customer
    from app.workflows import search, search_index
    from app.workflows.actors import ADMIN, Actor

    with seeded.app_context():
        before = _catalog(seeded)
        conn = db.session.connection()
        number = db.session.scalar(select(Customer.number).order_by(Customer.id).limit(1))
        search_index._sqlite_drop(conn, ["customer"])
        conn.exec_driver_sql("INSERT INTO crm_search_customer(crm_search_customer) VALUES ('delete-all')")
        db.session.commit()
        admin = Actor(id=1, roles=frozenset({ADMIN}))
        assert search.search(db.session, admin, number, ["customer"])["customer"]["count"] == 0
        assert search_index.ensure(db.session.connection()) == ["customer"]
        db.session.commit()
        assert search.search(db.session, admin, number, ["customer"])["customer"]["count"] == 1
        assert search_index.ensure(db.session.connection()) == []      # nothing missing now
        db.session.remove()
    assert _catalog(seeded) == before


def test_seed_leaves_the_sales_indexes_and_foreign_keys(seeded_here):
    """The orders are loaded without their secondary indexes (and foreign keys on
    PostgreSQL), which are created again afterwards: the sales tables end as the models
    define them."""
    from sqlalchemy import inspect

    from app.models import Order, OrderLine

    with seeded_here.app_context():
        insp = inspect(db.engines["sales"])
        for model in (Order, OrderLine):
            t = model.__table__
            assert {ix["name"] for ix in insp.get_indexes(t.name)} == {ix.name for ix in t.indexes}
            fks = {(tuple(fk["constrained_columns"]), fk["referred_table"])
                   for fk in insp.get_foreign_keys(t.name)}
            assert fks == {(tuple(fk.column_keys), fk.referred_table.name)
                           for fk in t.foreign_key_constraints}
            assert fks or model is Order
        db.session.remove()


def _schema(app):
    """Every CRM table's indexes and foreign keys, as the database reports them."""
    from sqlalchemy import inspect
    with app.app_context():
        insp = inspect(db.engine)
        out = {}
        for t in insp.get_table_names():
            if t.startswith("crm_search_"):
                continue
            out[t] = (sorted((ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                             for ix in insp.get_indexes(t)),
                      sorted((fk["name"] or "", tuple(fk["constrained_columns"]), fk["referred_table"],
                              tuple(fk["referred_columns"])) for fk in insp.get_foreign_keys(t)))
        db.session.remove()
    return out


def test_seed_leaves_the_crm_indexes_and_foreign_keys(app, seeded_here):
    """The CRM tables are loaded without their secondary indexes (and PostgreSQL foreign
    keys) and get them back exactly: the same as a freshly migrated database."""
    fresh, after = _schema(app), _schema(seeded_here)
    assert after.keys() == fresh.keys()
    for table in ("crm_contact", "crm_activity", "crm_opportunity", "crm_plan_item", "crm_service"):
        assert fresh[table][0] and fresh[table][1], table
    assert after == fresh
