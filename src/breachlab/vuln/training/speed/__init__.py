"""The trainer's speed machinery: CUDA graphs, packed-row patches, the per-layer table off the GPU,
buckets, the chunked LM head, the activation budget, regional compile.

The plain step (:mod:`breachlab.vuln.training.sft`, :mod:`breachlab.vuln.training.step`) reads
without it; every speed-up is proven equal to the plain path by ``tests/vuln/test_speed.py``.
"""
