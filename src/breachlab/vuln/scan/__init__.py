"""``breachlab vuln scan``: an offline C/C++ scanner (extract → score → findings → formats)."""
