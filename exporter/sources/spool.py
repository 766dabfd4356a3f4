"""The spool: where a PACS's files for one study wait while the study is exported.

It lives in the job folder of the workspace (never in the export). The engine
removes a study's spool once the study is recorded, and the whole spool at the
start of every run, so nothing un-anonymized outlives an interrupted job.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from exporter.sources.base import NOT_RETRIEVED, Retrieved

logger = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9][0-9.]{0,63}$")


class Spool:
    """One study's received files, one per SOP instance, each written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.received: dict[str, Path] = {}

    def write(self, sop_uid: str, data: bytes) -> None:
        """Store one instance's file (a second copy of the same instance replaces it).

        Raises
        ------
        OSError
            When the file cannot be written.
        """
        name = (
            sop_uid
            if _UID.match(sop_uid)
            else hashlib.sha256(sop_uid.encode()).hexdigest()
        )
        path = self.folder / f"{name}.dcm"
        tmp = self.folder / f".{name}.part"
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
        self.received[sop_uid] = path

    def store(self, event: Any) -> int:
        """pynetdicom's EVT_C_STORE: keep the dataset as the PACS sent it.

        Returns 0x0000, or 0xA700 (out of resources) when it cannot be written,
        which the PACS counts as a failed sub-operation.
        """
        sop = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
        try:
            self.write(sop, event.encoded_dataset())
        except OSError:
            logger.warning("could not write a received instance to the spool")
            return 0xA700
        return 0x0000

    def items(self) -> tuple[str, ...]:
        """The received files, by SOP Instance UID."""
        return tuple(str(self.received[sop]) for sop in sorted(self.received))

    def result(self, expected: Iterable[str], error: str | None) -> Retrieved:
        """What arrived, and each expected instance that did not, with the reason."""
        why = f"{NOT_RETRIEVED}: {error}" if error else NOT_RETRIEVED
        missing = sorted(set(expected) - self.received.keys())
        return Retrieved(self.items(), tuple((f"sop:{sop}", why) for sop in missing))


def unlisted(study_uid: str, error: Exception) -> Retrieved:
    """A study whose instances could not even be listed: nothing, and why."""
    return Retrieved((), ((f"study:{study_uid}", f"{NOT_RETRIEVED}: {error}"),))
