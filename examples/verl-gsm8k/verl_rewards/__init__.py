"""Reward functions written for veRL's `compute_score(data_source, solution_str, ground_truth, extra_info)`
contract, used unchanged by `py("verl_rewards.gsm8k:compute_score", contract = verl)`."""
