"""Alembic migrations for the key service's schema, configured in code (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(url: str | None = None) -> Config:
    """An alembic Config pointing at this package's scripts. `Store.migrate()` passes its connection in
    `config.attributes["connection"]`; `url` is only for running alembic commands by hand."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        # '%' is configparser's interpolation character; URL-encoded passwords contain it.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg
