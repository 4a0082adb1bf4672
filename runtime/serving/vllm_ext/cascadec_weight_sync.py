"""cascadec's vLLM worker extension, loaded inside a rollout server's workers (``--worker-extension-cls
cascadec_weight_sync.WeightSync``, with this directory on the server's ``PYTHONPATH``). It runs under vLLM's
interpreter, so it imports nothing from cascadec.

``cascadec_reload`` is vLLM's own ``reload_weights(weights_path=...)`` (an in-place reload that re-runs each
layer's post-load processing), then the same processing for an output head tied to the input embedding: the
tied head receives no weight of its own, so the reload skips it, and a backend that keeps a processed copy of
the head (vLLM's CPU backend packs it for its GEMM) would go on sampling from the old one. The colocated engine
calls :func:`refresh_tied_head` in process (`runtime.rollout.vllm`).
"""


def refresh_tied_head(model) -> None:
    """Re-run the output head's post-load processing when it shares the input embedding's weight."""
    head = getattr(model, "lm_head", None)
    method = getattr(head, "quant_method", None)
    if head is not None and method is not None and getattr(model.config, "tie_word_embeddings", False):
        method.process_weights_after_loading(head)


class WeightSync:
    """Mixed into vLLM's worker class; called by ``POST /collective_rpc {"method": "cascadec_reload", ...}``."""

    def cascadec_reload(self, weights_path: str) -> None:
        """Load the checkpoint at ``weights_path`` (safetensors, the served model's architecture) in place."""
        self.reload_weights(weights_path=weights_path)
        refresh_tied_head(self.get_model())
