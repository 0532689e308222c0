"""Route selection: first match wins, every condition must hold, no match means reject."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from gateway.config import Route
from gateway.errors import RouteRejected
from gateway.process.routing import select_route


def _routes(*specs: dict) -> list[Route]:
    return [Route.model_validate(spec) for spec in specs]


def _ds(**attributes: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4"
    ds.Modality = "XC"
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


ROUTES = _routes(
    {"name": "no-ct", "match": {"modality": "CT"}, "reject": True},
    {"name": "eyes", "match": {"calling_ae_title": ["SLITLAMP"], "body_part_examined": "EYE"},
     "profile": "p", "destinations": ["a"]},
    {"name": "vl-by-keyword", "match": {"sop_class": "VLPhotographicImageStorage",
                                        "tags": {"SeriesDescription": {"regex": "face.*"}}},
     "profile": "p", "destinations": ["b"]},
    {"name": "by-tag", "match": {"called_ae_title": "DMASK",
                                 "tags": {"(0008,1030)": {"equals": "Strabismus"}}},
     "profile": "p", "destinations": ["c"]},
)


@pytest.mark.parametrize("calling, attributes, expected", [
    ("SLITLAMP", {"BodyPartExamined": "EYE"}, "eyes"),
    ("CAMERA1", {"BodyPartExamined": "EYE", "SeriesDescription": "face left"}, "vl-by-keyword"),
    ("CAMERA1", {"StudyDescription": "Strabismus"}, "by-tag"),
])
def test_first_matching_route(calling: str, attributes: dict, expected: str) -> None:
    assert select_route(ROUTES, _ds(**attributes), calling_ae=calling, called_ae="DMASK").name == expected


@pytest.mark.parametrize("calling, attributes, message", [
    ("SLITLAMP", {"BodyPartExamined": "EYE", "Modality": "CT"}, "route 'no-ct' rejects"),  # first rule
    ("CAMERA1", {"SeriesDescription": "the face"}, "no route matches"),  # regex must match the whole value
    ("CAMERA1", {"StudyDescription": "strabismus"}, "no route matches"),  # equals is case-sensitive
])
def test_rejected_by_a_route_or_by_none(calling: str, attributes: dict, message: str) -> None:
    with pytest.raises(RouteRejected, match=message):
        select_route(ROUTES, _ds(**attributes), calling_ae=calling, called_ae="DMASK")


def test_absent_attribute_does_not_match_a_tag_condition() -> None:
    with pytest.raises(RouteRejected, match="no route"):
        select_route(ROUTES[3:], _ds(), calling_ae="CAMERA1", called_ae="DMASK")
