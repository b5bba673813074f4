"""The Hi-WM loop end to end: world-model rollouts, simulated operator, post-training, evaluation, report."""
