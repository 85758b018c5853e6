"""A random id of this database, made once: what tells two installs (or a reset database) apart.

Message-IDs were built from the edition and reader numbers alone, signed with the key: a database reset
after trial sends, or a second install sharing the key, made the same Message-IDs again, and receivers
silently drop a message whose Message-ID they have seen. The install id goes into every Message-ID.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.storage import db

INSTALL_KEY = "install_id"


def install_id(engine: Engine) -> str:
    """This database's id, created at first use (concurrent first uses agree: the first insert wins)."""
    with engine.begin() as connection:
        found = connection.execute(sa.select(db.meta.c.value).where(db.meta.c.key == INSTALL_KEY)).scalar()
        if found is not None:
            return str(found)
        connection.execute(db.insert_ignoring_duplicates(engine, db.meta),
                           [{"key": INSTALL_KEY, "value": secrets.token_hex(8)}])
        return str(connection.execute(sa.select(db.meta.c.value).where(db.meta.c.key == INSTALL_KEY)).scalar_one())
