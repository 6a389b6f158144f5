"""What the web app's views read in the database: what each model's newest assessment said, beside
its id in ``doctor_last`` (so the patients list sorts by risk with a join), backfilled from the
stored RiskAssessments; and the record of each audit-chain verification.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from fhir_twin.store.doctor_state import standing
from fhir_twin.store.schema import audit_verification, doctor_last, resource, resource_version

revision = "0010"
down_revision = "0009"

_COLUMNS = (
    ("score", sa.Float),
    ("probability", sa.Float),
    ("band", lambda: sa.String(32)),
    ("bound", sa.Boolean),
    ("risk", lambda: sa.String(32)),
    ("status", lambda: sa.String(16)),
    ("occurrence", lambda: sa.DateTime(timezone=False)),
)


def upgrade() -> None:
    with op.batch_alter_table("doctor_last") as batch:
        for name, kind in _COLUMNS:
            batch.add_column(sa.Column(name, kind()))
    op.create_index("ix_doctor_last_score", "doctor_last", ["model_id", "score"])
    op.create_index("ix_doctor_last_probability", "doctor_last", ["model_id", "probability"])
    bind = op.get_bind()
    audit_verification.create(bind)
    d = doctor_last.c
    current = resource.join(
        resource_version,
        sa.and_(
            resource_version.c.res_type == resource.c.res_type,
            resource_version.c.res_id == resource.c.res_id,
            resource_version.c.version == resource.c.version,
        ),
    )
    stored = (
        sa.select(d.patient_id, d.model_id, resource_version.c.body)
        .select_from(
            doctor_last.join(
                current, sa.and_(resource.c.res_type == "RiskAssessment", resource.c.res_id == d.assessment_id)
            )
        )
        .where(resource_version.c.body.is_not(None))
    )
    for patient_id, model_id, body in bind.execute(stored).all():
        bind.execute(
            sa.update(doctor_last)
            .where(d.patient_id == patient_id, d.model_id == model_id)
            .values(**standing(json.loads(body)))
        )


def downgrade() -> None:
    op.drop_table("audit_verification")
    op.drop_index("ix_doctor_last_probability", "doctor_last")
    op.drop_index("ix_doctor_last_score", "doctor_last")
    with op.batch_alter_table("doctor_last") as batch:
        for name, _kind in reversed(_COLUMNS):
            batch.drop_column(name)
