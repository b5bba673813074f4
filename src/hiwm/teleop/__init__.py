"""Operator side: policy/operator arbitration, key mapping, the browser playground and the terminal keyboard."""
