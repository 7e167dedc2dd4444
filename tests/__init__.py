"""The test suite: unit, integration (real OpenBao and PostgreSQL), e2e, helm."""
