"""Memory- and launch-lean building blocks for the GPU hot paths (see docs/gpu.md)."""

from runtime.ops.token_divergence import linear_token_divergence
from runtime.ops.token_logprobs import linear_token_logprobs

__all__ = ["linear_token_divergence", "linear_token_logprobs"]
