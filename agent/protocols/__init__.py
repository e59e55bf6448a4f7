"""Application-protocol parsers, one module per protocol."""
