"""proxyservice: streams provider responses to internal callers with short-lived key leases."""
