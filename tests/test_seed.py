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
