"""What a database outage looks like to callers: the errors that mean "down", and the 503 reply."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from parley.core.errors import GatewayError

# A driver's connection and query failures reach us wrapped by SQLAlchemy; a refused or timed-out
# connection may also surface as the OS or asyncio error itself.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError, TimeoutError)

RETRY_AFTER = "5"


def database_unavailable(what: str) -> GatewayError:
    """503 naming what could not be done while the database cannot be reached."""
    return GatewayError(
        503,
        f"database unavailable: {what}; retry shortly",
        "api_error",
        headers={"retry-after": RETRY_AFTER},
    )
