"""Keyed, deterministic pseudonyms: UIDs, patient name and ID, per-patient date shifts.

Everything derives from HMAC-SHA256 under the gateway's secret, with a distinct domain per use,
so that the same input gives the same output in every worker process, after every restart and
on every gateway that shares the key, while nobody without the key can link or reverse them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

#: Longest UID PS3.5 allows.
MAX_UID_LENGTH = 64


class Pseudonymizer:
    """Pseudonyms under one secret key and UID root.

    Parameters
    ----------
    secret
        The HMAC key (at least 16 bytes).
    uid_root
        Root of remapped UIDs. Under ``2.25`` a UID is the integer form of a 128-bit
        UUID (version 8, "custom", PS3.5 B.2); under another root the remaining characters
        are filled with decimal digits of the HMAC.
    """

    def __init__(self, secret: bytes, uid_root: str = "2.25") -> None:
        if len(secret) < 16:
            raise ValueError("the pseudonym key must be at least 16 bytes")
        self._secret = secret
        self._uid_root = uid_root
        self.uid = lru_cache(maxsize=65536)(self._uid)

    def _digest(self, domain: str, value: str) -> bytes:
        message = domain.encode("ascii") + b"\x00" + value.encode("utf-8", "surrogateescape")
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def _uid(self, uid: str) -> str:
        """The remapped form of ``uid`` (memoised: references repeat the same UIDs)."""
        digest = int.from_bytes(self._digest("uid", uid.strip("\x00 ")), "big")
        if self._uid_root == "2.25":
            value = digest >> 128
            value &= ~(0xF000 << 64) & ~(0xC000 << 48)
            value |= (0x8000 << 64) | (0x8000 << 48)  # version 8, RFC 4122 variant
            return f"2.25.{value}"
        digits = str(digest)[: MAX_UID_LENGTH - len(self._uid_root) - 1]
        return f"{self._uid_root}.{digits}"

    def patient_id(self, patient: str) -> str:
        """Pseudonymous Patient ID for a patient key (the original Patient ID)."""
        return "DM" + self._code(patient, 16)

    def patient_name(self, patient: str) -> str:
        """Pseudonymous Patient's Name (family name ``DMASK``, given name a code)."""
        return "DMASK^" + self._code(patient, 10)

    def _code(self, patient: str, length: int) -> str:
        digest = self._digest("patient", patient)
        return base64.b32encode(digest).decode("ascii")[:length]

    def date_shift_days(self, patient: str, max_days: int) -> int:
        """Days (1 to ``max_days``) by which this patient's dates move into the past."""
        digest = self._digest("date-shift", patient)
        return 1 + int.from_bytes(digest[:8], "big") % max_days


@lru_cache(maxsize=8)
def pseudonymizer(secret: bytes, uid_root: str) -> Pseudonymizer:
    """One shared Pseudonymizer per key and root, so its UID memo survives across instances."""
    return Pseudonymizer(secret, uid_root)
