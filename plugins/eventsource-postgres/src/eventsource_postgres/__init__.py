"""PostgreSQL store for eventsource (psycopg 3 + psycopg-pool) and a PostgreSQL advisory-lock lease."""

from __future__ import annotations

from eventsource_postgres.lease import PostgresAdvisoryLease
from eventsource_postgres.provider import PostgresProvider

__all__ = ["PostgresAdvisoryLease", "PostgresProvider"]
__version__ = "0.1.0"
