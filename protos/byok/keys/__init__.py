"""Generated gRPC contracts of byok (see protos/)."""
