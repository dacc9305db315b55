"""Identifiers made from an injected random source.

Kubernetes uids, generateName suffixes, AWS unique ids and access keys all come
from one ``random.Random`` so a seeded lab shows the same values every run. The
source is not cryptographic on purpose: these ids protect nothing in a loopback lab,
and secrets that clients check (secret keys, session tokens) come from
:func:`secret_token`, which uses ``secrets`` unless a seeded source is given.
"""

from __future__ import annotations

import random
import secrets
import string
import threading
import uuid

from .constants import GENERATE_NAME_ALPHABET

__all__ = ["Ids"]

_UPPER_DIGITS = string.ascii_uppercase + string.digits
_B64ISH = string.ascii_letters + string.digits + "+/"
# IAM's unique ids and access key ids are written in the RFC 4648 base32 alphabet,
# A-Z and 2-7: docs/reference/sts.md §3 gives [A-Z2-7] for access key ids, and its
# role id example (AROA2AVYNEVMZEZ2AFVYI) uses no other symbol. They are drawn from
# A-Z0-9 as before, and the four symbols base32 leaves out (0 1 8 9) become the
# letters it left them out for (O I B G). The ids are then base32, and every other
# id a seeded lab draws after them (uids, pod name suffixes, tokens) stays the same.
_TO_BASE32 = str.maketrans("0189", "OIBG")


class Ids:
    """A thread-safe source of ids; seeded for determinism, random otherwise."""

    def __init__(self, seed: int | None = None) -> None:
        self.seeded = seed is not None
        self._rng = random.Random(seed) if seed is not None else random.SystemRandom()
        self._lock = threading.Lock()

    def _choice(self, alphabet: str, n: int) -> str:
        with self._lock:
            return "".join(self._rng.choice(alphabet) for _ in range(n))

    def uuid4(self) -> str:
        with self._lock:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def hex(self, n: int) -> str:
        return self._choice("0123456789ABCDEF", n)

    def generate_name_suffix(self, n: int = 5) -> str:
        return self._choice(GENERATE_NAME_ALPHABET, n)

    def aws_unique_id(self, prefix: str) -> str:
        """``AROA`` + 17 base32 chars: the 21-character ids IAM gives roles, users, policies."""
        return prefix + self._choice(_UPPER_DIGITS, 17).translate(_TO_BASE32)

    def access_key_id(self, prefix: str) -> str:
        """``ASIA``/``AKIA`` + 16 base32 chars: a 20-character access key id."""
        return prefix + self._choice(_UPPER_DIGITS, 16).translate(_TO_BASE32)

    def secret_token(self, n: int) -> str:
        """A secret string; seeded only when the whole lab is seeded."""
        if self.seeded:
            return self._choice(_B64ISH, n)
        return "".join(secrets.choice(_B64ISH) for _ in range(n))

    def digits(self, n: int) -> str:
        return self._choice(string.digits, n)
