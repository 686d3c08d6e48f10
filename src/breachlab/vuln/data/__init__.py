"""Data: each source's loader (``sources/``), pools, grouped leak-checked splits, statistics.

``breachlab vuln data build`` is :func:`breachlab.vuln.data.build.build.run`.
"""
