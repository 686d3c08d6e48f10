"""breachlab: understand LLMs by using them on security problems, locally.

Two parts, one CLI: ``breachlab vuln`` (fine-tune, evaluate, export and scan with a local
vulnerability classifier) and ``breachlab brain`` (the scam-message brain-encoding
experiment).  Neither part imports the other; both share config, run directories and CLI.
"""

__version__ = "0.1.0"
