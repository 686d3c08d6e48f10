"""Evaluation: predictions, metrics (pairwise too), bootstrap intervals, summaries, reports, compare.

``breachlab vuln eval`` is :func:`breachlab.vuln.eval.evaluate.run`; the metric modules are pure.
"""
