"""Training losses: ``grpo`` (advantages, strict on-policy policy-gradient loss, k3 KL) and ``distill``
(MOPD, GKD-style KL variants). Import the submodule you need; this package stays import-light."""
