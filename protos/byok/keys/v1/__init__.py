"""Generated code: regenerate with `make protos`, never edit."""
