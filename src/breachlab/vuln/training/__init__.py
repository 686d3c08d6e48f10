"""The training wing of ``breachlab vuln``: ``vuln train`` and what it is made of.

Layers, lowest first; a module imports only from layers below its own (the contract is a
test, ``tests/test_layers.py``, so the order cannot quietly change):

1. ``anatomy``  — where a model keeps its decoder layers, language model and LoRA targets.
2. ``config``   — :class:`~breachlab.vuln.training.config.TrainConfig`; ``curves`` (metrics.csv, curves.png).
3. ``shard``, ``ple``, ``patches``, ``regional`` — FSDP; the per-layer table in CPU memory;
   the speed patches; regional ``torch.compile``.
4. ``ckpt``     — checkpoints that survive ``kill -9``.
5. ``sft``      — encoding, batching, the masked forward and its loss.
6. ``budget``, ``graphs``, ``objectives`` — activation budget; CUDA-graph step; the loss of a
   micro-batch by ``objective``.
7. ``load``     — model (transformers + peft, or Unsloth) and data.
8. ``setup``, ``step``, ``validate``, ``save`` — the trainer's parts.
9. ``loop``     — the :class:`~breachlab.vuln.training.loop.Trainer`.
10. ``run``     — ``run(cfg) -> run_dir`` and ``resume``: the top.

``breachlab.vuln.plan`` (the memory planner) sits beside the package, between layers 3 and 6:
it reads the model's anatomy and the LoRA patch, and ``budget`` reads its counts.
"""
