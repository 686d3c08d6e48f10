"""``breachlab vuln``: a local LLM that says whether a C/C++ function is VULNERABLE or SAFE."""
