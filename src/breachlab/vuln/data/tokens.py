"""Code tokens for lexical retrieval: identifiers, numbers, and C/C++ operators, in order.

Comments and string contents are dropped (a fix's commit message in a comment says nothing
about the code); operators stay, because a fix is often ``<`` turned into ``<=`` or a new
``if (… > …) return``.
"""

from __future__ import annotations

import re

_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_STRING = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'')
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|0[xX][0-9a-fA-F]+|\d+|->|\+\+|--|<<=|>>=|<<|>>|<=|>=|==|!=|&&|\|\||"
                    r"[-+*/%&|^]=|::|[^\sA-Za-z0-9_]")


_TOKEN_OR_STRING = re.compile(_STRING.pattern + "|" + _TOKEN.pattern)


def code_tokens(code: str, keep_strings: bool = False) -> list[str]:
    """The tokens of ``code`` without comments; a string literal becomes the one token ``STR``
    (``keep_strings``: the literal itself, as one token)."""
    code = _COMMENT.sub(" ", code)
    if keep_strings:
        return _TOKEN_OR_STRING.findall(code)
    return _TOKEN.findall(_STRING.sub(" STR ", code))
