"""keyservice: provider credentials in Vault, references in the DB, served over mTLS gRPC."""
