"""The shape of ``/link`` codes: hard to guess, easy to type.

A code is 12 characters of Crockford's base32 alphabet (digits and capitals without I, L, O
and U, so nothing reads as something else): 60 bits of randomness, shown in groups of four,
``7KQ2-M9XD-HT4B``. People type it any way: in any case, with or without the dashes, and an
``O`` is read as ``0``, an ``I`` or ``L`` as ``1``. It is stored in the shown form.
"""

from __future__ import annotations

import math
import re
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
GROUP = 4
LENGTH = 12
BITS = LENGTH * math.log2(len(ALPHABET))  # 60.0
# Dashes of any kind, underscores and spaces between groups are not part of the code.
_SEPARATORS = re.compile(r"[\s_\-\u2010-\u2015\u2212]")
_MISREAD = str.maketrans({"O": "0", "I": "1", "L": "1"})


def new_code() -> str:
    """A fresh random code, in its shown (and stored) form."""
    return _grouped("".join(secrets.choice(ALPHABET) for _ in range(LENGTH)))


def normalise(typed: str) -> str | None:
    """The stored form of a code as someone typed it, or None when it cannot be one."""
    if len(typed) > 4 * LENGTH:  # no need to clean up a page of text
        return None
    chars = _SEPARATORS.sub("", typed).upper().translate(_MISREAD)
    if len(chars) != LENGTH or any(c not in ALPHABET for c in chars):
        return None
    return _grouped(chars)


def _grouped(chars: str) -> str:
    return "-".join(chars[i : i + GROUP] for i in range(0, len(chars), GROUP))
