"""Pick the route of an instance: the first rule of the ordered list whose conditions all hold.

A route either names a profile and destinations or rejects. An instance that no route matches is
rejected too: forwarding something nobody configured would let unmasked data through.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from gateway.config import Route, RouteMatch, TagCondition, tag_of
from gateway.errors import RouteRejected


def _text(ds: Dataset, tag: int) -> str | None:
    """The attribute's value as DICOM text (multiple values joined by backslash), None if absent."""
    element = ds.get(tag)
    if element is None or element.value is None:
        return None
    value = element.value
    if isinstance(value, (list, MultiValue)):
        return "\\".join(str(item) for item in value)
    return str(value)


def _condition_holds(condition: TagCondition, value: str | None) -> bool:
    if value is None:
        return False
    if condition.equals is not None:
        return value == condition.equals
    assert condition.regex is not None
    return re.fullmatch(condition.regex, value) is not None


def matches(match: RouteMatch, ds: Dataset, *, calling_ae: str, called_ae: str) -> bool:
    """Whether every condition of ``match`` holds (an empty list is no condition)."""
    sop_class = str(ds.get("SOPClassUID", "")) or str(
        getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
    checks = (
        (match.calling_ae_title, calling_ae.strip()),
        (match.called_ae_title, called_ae.strip()),
        (match.sop_class, sop_class),
        (match.modality, str(ds.get("Modality", ""))),
        (match.body_part_examined, str(ds.get("BodyPartExamined", ""))),
    )
    if any(allowed and value not in allowed for allowed, value in checks):
        return False
    return all(_condition_holds(condition, _text(ds, tag_of(key)))
               for key, condition in match.tags.items())


def select_route(routes: Sequence[Route], ds: Dataset, *, calling_ae: str,
                 called_ae: str) -> Route:
    """The first route that matches; raise RouteRejected when it rejects or none matches.

    Raises
    ------
    RouteRejected
        The matching route says ``reject``, or no route matches.
    """
    for route in routes:
        if matches(route.match, ds, calling_ae=calling_ae, called_ae=called_ae):
            if route.reject:
                raise RouteRejected(f"route '{route.name}' rejects the instance")
            return route
    raise RouteRejected("no route matches the instance")
