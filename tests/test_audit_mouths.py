"""Labels of closed mouths and the mouth's class read on a release."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.audit.mouths import check_labels, closed_mouth_states, mouth_class, read_labels
from gateway.audit.privacy import load_face_set
from gateway.errors import AuditError

LABELS = Path(__file__).parent / "data" / "closed-mouths.txt"
FACES_DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces-dev"
TUNING_CLOSED = Path(__file__).parent / "data" / "tuning-closed-mouths.txt"
TUNING_PARTED = Path(__file__).parent / "data" / "tuning-parted-mouths.txt"
FACES_TUNE = FACES_DEV.parent / "faces-tune"


def test_classes_follow_the_clinical_cut_offs() -> None:
    assert [mouth_class(a) for a in (0.0, 0.049, 0.05, 0.12, 0.121, 0.6)] == [
        "closed", "closed", "parted", "parted", "open", "open",
    ]


def test_labels_file_lists_keys_and_ignores_comments(tmp_path: Path) -> None:
    path = tmp_path / "closed.txt"
    path.write_text("# header\n\nann/ann_0001.jpg\n  bob/bob_0002.jpg  # lips just touch\n# cy/cy_0001.jpg\n")
    assert read_labels(path) == {"ann/ann_0001.jpg", "bob/bob_0002.jpg"}
    path.write_text("# nothing\n")
    with pytest.raises(AuditError, match="lists no photo"):
        read_labels(path)
    with pytest.raises(AuditError, match="cannot read the labels file"):
        read_labels(tmp_path / "missing.txt")


def test_the_faces_dev_labels_are_person_and_file() -> None:
    labels = read_labels(LABELS)
    assert len(labels) == 60
    assert all(len(Path(key).parts) == 2 and key.endswith(".jpg") for key in labels)


def test_the_faces_dev_labels_name_photos_of_faces_dev() -> None:
    if not FACES_DEV.is_dir():
        pytest.skip("shared faces-dev set not present")
    check_labels(read_labels(LABELS), (photo.key for photo in load_face_set(FACES_DEV).photos))


def test_the_tuning_labels_name_faces_tune_photos_in_one_state_each() -> None:
    closed, parted = read_labels(TUNING_CLOSED), read_labels(TUNING_PARTED)
    assert (len(closed), len(parted)) == (328, 146) and not closed & parted
    if not FACES_TUNE.is_dir():
        pytest.skip("shared faces-tune set not present")
    check_labels(closed | parted, (photo.key for photo in load_face_set(FACES_TUNE).photos))


def test_states_count_only_released_labelled_photos() -> None:
    apertures = {"a/1": 0.01, "a/2": 0.08, "b/1": 0.3, "c/1": 0.0}
    states = closed_mouth_states({"a/1", "a/2", "b/1", "d/1"}, ["a/1", "a/2", "b/1", "c/1", "d/1"], apertures)
    assert (states.labelled, states.redetected) == (4, 3)  # d/1 released, face not found again
    assert states.classes == {"closed": 1, "parted": 1, "open": 1} and states.stayed_closed == 1


def test_labels_of_another_set_are_refused() -> None:
    check_labels(frozenset({"a/1"}), ["a/1", "a/2"])
    with pytest.raises(AuditError, match="2 labelled photos are not in the faces folder, e.g. b/1"):
        check_labels(frozenset({"a/1", "b/1", "c/1"}), ["a/1"])
