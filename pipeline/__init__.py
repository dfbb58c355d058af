"""emotion-gan preprocessing: recordings to normalized optical-flow stores (one module per stage)."""
