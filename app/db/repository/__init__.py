"""Every query the service makes, one module per table; the tenant and ownership rules live here.

Functions take the session first and flush, never commit: the caller (a request's session
dependency, a job runner, the group-commit writer) owns the transaction.
"""

from typing import TypeVar

from sqlalchemy.orm import Session

from app.db.base import Base

Row = TypeVar("Row", bound=Base)


def add(session: Session, row: Row) -> Row:
    """Insert a new row of any table (a dataset, a job, a key); flushed, so its id is set."""
    session.add(row)
    session.flush()
    return row
