"""The SQLModel tables (shared/models.py) say what the migrations made: no column drifts."""

from __future__ import annotations

import pytest

from shared.models import Category, ChangeLogEntry, Task, User

# Columns the database computes (generated) and the models need not carry.
GENERATED = {"search_text", "due_key_asc", "due_key_desc", "title_key", "name_key", "series_id"}


@pytest.mark.parametrize("model", [User, Category, Task, ChangeLogEntry], ids=lambda m: m.__tablename__)
def test_each_table_model_has_exactly_the_migrated_columns(sql, model):
    table = model.__tablename__
    rows = sql.run(
        "SELECT column_name, is_generated FROM information_schema.columns WHERE table_schema = 'public' AND table_name = :t",
        t=table,
    )
    stored = {name for name, generated in rows if generated == "NEVER"}
    generated = {name for name, generated in rows if generated != "NEVER"}
    assert set(model.__table__.columns.keys()) == stored
    assert generated <= GENERATED
