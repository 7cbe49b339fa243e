"""The local Prefect server on SQLite: write transactions that read first wait their turn
instead of failing "database is locked" when another writer commits in between."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from prefect.server.database import provide_database_interface
from prefect.server.database.dependencies import temporary_database_config
from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, temporary_settings

from rearguard.flows.prefect_infra.server_app import write_transactions_immediate


async def _read_then_write(count: int) -> list[str]:
    """``count`` concurrent transactions, each reading the flows and then adding one, as
    Prefect's API does when it creates a flow run; the errors they ended with."""
    db = provide_database_interface()
    await db.create_db()

    async def one(index: int) -> str | None:
        try:
            async with db.session_context(begin_transaction=True) as session:
                await session.execute(sa.select(sa.func.count()).select_from(db.Flow))
                await asyncio.sleep(0.01)  # the others read meanwhile, and one commits
                session.add(db.Flow(name=f"flow-{index}"))
        except sa.exc.OperationalError as exc:
            return str(exc.orig)
        return None

    errors = await asyncio.gather(*(one(i) for i in range(count)))
    async with db.session_context() as session:
        flows = (await session.execute(sa.select(sa.func.count()).select_from(db.Flow))).scalar()
    assert flows == count - sum(1 for e in errors if e)
    return [e for e in errors if e]


def test_concurrent_read_then_write_transactions_all_commit(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}"
    with (
        temporary_settings({PREFECT_API_DATABASE_CONNECTION_URL: url}),
        temporary_database_config(None),
    ):
        assert write_transactions_immediate()
        assert asyncio.run(_read_then_write(12)) == []


def test_a_postgresql_server_is_left_as_prefect_configures_it() -> None:
    url = "postgresql+asyncpg://prefect@127.0.0.1:5432/prefect"
    with (
        temporary_settings({PREFECT_API_DATABASE_CONNECTION_URL: url}),
        temporary_database_config(None),
    ):
        assert not write_transactions_immediate()
        assert type(provide_database_interface().database_config).__name__ == (
            "AsyncPostgresConfiguration"
        )
