"""Does a closed mouth stay closed? The mouth's state on the release of labelled photos.

Whether the lips touch is a sign a neurologist reads, and a drawn mouth can open what was
closed. Which photos show a closed mouth is labelled by a person (a list of photo keys, e.g.
``tests/data/closed-mouths.txt``), not read by Face Mesh, so that the check does not
share the landmarker's mistakes. The release is read by Face Mesh with the classes the clinical
question uses: closed when the inner-lip gap is under 5% of the mouth's width, open over 12%,
parted in between.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import AuditError

#: Inner-lip gap over mouth width under which a mouth reads as closed.
CLOSED_BELOW = 0.05
#: Inner-lip gap over mouth width over which a mouth reads as open.
OPEN_ABOVE = 0.12


def mouth_class(aperture: float) -> str:
    """``closed``, ``parted`` or ``open`` for a mouth aperture (inner-lip gap over mouth width)."""
    if aperture < CLOSED_BELOW:
        return "closed"
    return "open" if aperture > OPEN_ABOVE else "parted"


def read_labels(path: Path) -> frozenset[str]:
    """Photo keys (``person/file``) listed in a labels file; ``#`` starts a comment.

    Raises
    ------
    AuditError
        The file cannot be read or lists nothing.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuditError(f"cannot read the labels file {path} ({exc.strerror})") from None
    keys = frozenset(line for raw in text.splitlines() if (line := raw.partition("#")[0].strip()))
    if not keys:
        raise AuditError(f"the labels file {path} lists no photo")
    return keys


@dataclass(frozen=True)
class MouthStates:
    """How a transform's releases of the labelled closed mouths read.

    Attributes
    ----------
    labelled:
        Labelled photos the transform released (and whose original has landmarks).
    redetected:
        Of those, the ones on which Face Mesh found the face again.
    classes:
        Re-detected releases by class (``closed``, ``parted``, ``open``).
    """

    labelled: int
    redetected: int
    classes: dict[str, int]

    @property
    def stayed_closed(self) -> int:
        return self.classes.get("closed", 0)


def closed_mouth_states(labelled: Iterable[str], released: Iterable[str], apertures: dict[str, float]) -> MouthStates:
    """Classify the releases of the ``labelled`` photos among ``released`` by ``apertures``
    (the aperture read on each re-detected release, by photo key)."""
    keys = set(labelled) & set(released)
    read = [apertures[key] for key in keys if key in apertures]
    classes = {name: sum(mouth_class(a) == name for a in read) for name in ("closed", "parted", "open")}
    return MouthStates(len(keys), len(read), classes)


def check_labels(labels: frozenset[str], photos: Iterable[str]) -> None:
    """Refuse labels that name photos the faces folder lacks (labels of another set).

    Raises
    ------
    AuditError
        Some labelled keys are not photos of the folder.
    """
    missing = sorted(labels - set(photos))
    if missing:
        raise AuditError(f"{len(missing)} labelled photos are not in the faces folder, e.g. {missing[0]}")
