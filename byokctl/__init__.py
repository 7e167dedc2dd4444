"""byokctl: the admin and ops command line for keyservice (and a chat client for the proxy)."""
