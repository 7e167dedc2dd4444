"""`python -m keyservice.migrate`: bring the database named by BYOK_DATABASE_URL (default
sqlite:///.byok/keyservice.db) to the newest schema. Run before starting keyservice, e.g. as a Helm hook.

The URL is read from the environment only, never from argv, because it may carry a password.
"""

from __future__ import annotations

import os
import sys

from keyservice.errors import KeyServiceError
from keyservice.store import Store

DEFAULT_DATABASE_URL = "sqlite:///.byok/keyservice.db"


def main() -> int:
    url = os.environ.get("BYOK_DATABASE_URL") or DEFAULT_DATABASE_URL
    try:
        store = Store(url, pool_size=1)
        try:
            store.migrate()
            revision = store.schema_revision()
        finally:
            store.close()
    except KeyServiceError as exc:
        # Safe message only; the URL (which may hold a password) is never printed.
        print(f"keyservice.migrate: {type(exc).__name__}: {exc.message}", file=sys.stderr)
        return 1
    print(f"keyservice.migrate: {store.dialect} database at revision {revision}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
