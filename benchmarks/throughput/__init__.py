"""The training-throughput benchmark (``benchmarks/train_throughput.py``), one concept per module.

``shapes`` (configs, model building), ``examples`` (the token batches), ``measure`` (speed,
memory, MFU, the summary), one module per arm family (``arm_hf``: the floor, ``arm_trl``,
``arm_unsloth``, ``arm_breachlab``), ``memory_history`` (where a graph arm's GPU memory peaks),
``child`` (one arm in its own process) and ``cli``.
"""
