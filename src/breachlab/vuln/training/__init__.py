"""The training wing of ``breachlab vuln``: ``vuln train`` and what it is made of.

Layers, lowest first; a module imports only from layers below its own (the contract is a
test, ``tests/test_layers.py``, so the order cannot quietly change):

1. ``anatomy``, ``pairloss``, ``buckets`` — where a model keeps its decoder layers, language
   model and LoRA targets; pair-keeping batches and the pair-margin term (pure tensor
   functions); which CUDA graph serves a batch (``cuda_graph_limit``).
2. ``config``, ``curves`` — :class:`~breachlab.vuln.training.config.TrainConfig`; metrics.csv, curves.png.
3. ``shard``, ``ple``, ``patches``, ``regional``, ``headloss`` — FSDP2; the per-layer embedding
   table off the GPU; the speed patches; regional ``torch.compile``; the LM head's loss in chunks.
4. ``ckpt``, ``sft`` — checkpoints that survive ``kill -9``; encoding, batching, the masked
   forward and its loss.  (``breachlab.vuln.training.plan``, the memory planner beside the package,
   counts at this height: it reads ``anatomy``, ``ple`` and ``patches``; ``budget`` reads it.)
5. ``budget``, ``objectives``, ``load`` — the activation budget; the loss of a micro-batch by
   ``objective``; model (transformers + peft, or Unsloth) and data.
6. ``graphs``, ``setup`` — the CUDA-graph step; the trainer's set-up (model, data, optimizer).
7. ``step``, ``validate``, ``save`` — one micro-batch; validation; weights, checkpoints, manifest.
8. ``loop``      — the :class:`~breachlab.vuln.training.loop.Trainer`.
9. ``run``       — ``run(cfg) -> run_dir`` and ``resume``: the top (the CLI calls it).
"""
