"""End-to-end tests: keyservice, proxyservice and the local upstream together, over mTLS gRPC."""
