"""Keyed pseudonyms: UIDs, patient ids and date offsets.

Every value is an HMAC-SHA256 of the original under the project secret, so
any worker on any machine derives the same pseudonym without coordination
(DESIGN.md, principle 2) and nobody without the secret can reverse or link
them across projects.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

from pydicom.uid import UID_dictionary

# Date offsets are drawn from this many days back (never forward: a shifted
# date must not land in the future), never zero.
MAX_DATE_SHIFT_DAYS = 3650


@dataclass
class Pseudonymizer:
    """Derives pseudonyms and remembers what it derived (for the linkage)."""

    secret: bytes
    linkage: dict[tuple[str, str], str] = field(default_factory=dict)

    def _digest(self, kind: str, value: str) -> bytes:
        message = kind.encode() + b"\x00" + value.encode("utf-8", "surrogateescape")
        return hmac.new(self.secret, message, hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """A new UID under ``2.25.`` for an instance UID; registry UIDs are kept.

        PS3.5 B.2: a UUID-derived UID is ``2.25.`` followed by the decimal value
        of a 128-bit number, at most 44 characters.
        """
        original = original.strip("\x00 ")
        if not original or original in UID_dictionary:
            return original
        number = int.from_bytes(self._digest("uid", original)[:16], "big")
        new = f"2.25.{number}"
        self.linkage[("uid", original)] = new
        return new

    def patient(self, original: str, subject_id: str | None = None) -> str:
        """The pseudonymous patient id: the manifest's SubjectID, else a keyed hash."""
        if subject_id:
            pseudonym = subject_id
        else:
            code = base64.b32encode(self._digest("patient", original)[:10]).decode()
            pseudonym = f"P{code[:12]}"
        self.linkage[("patient", original)] = pseudonym
        return pseudonym

    def date_offset_days(self, patient_key: str) -> int:
        """Days to add to every date of one patient: negative, never zero."""
        raw = int.from_bytes(self._digest("date", patient_key)[:8], "big")
        days = -(1 + raw % MAX_DATE_SHIFT_DAYS)
        self.linkage[("date_offset", patient_key)] = str(days)
        return days
