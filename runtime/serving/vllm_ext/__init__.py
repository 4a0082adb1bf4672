"""Code that runs inside vLLM's own processes (its interpreter, not this one): see `cascadec_weight_sync`."""
