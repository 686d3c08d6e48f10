"""``breachlab brain``: what a scam message does to a (predicted) brain."""
