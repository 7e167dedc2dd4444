"""`make reliability`: failure-injection and security scenarios run against the real processes (OpenBao,
PostgreSQL, keyservice, proxyservice) on loopback, each measuring what the "Reliability and security" issue
asks and writing one row per scenario to reliability/report.md and reliability/report.json."""
