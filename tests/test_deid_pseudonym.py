"""Keyed pseudonyms: deterministic under one key, unrelated under another, valid as DICOM."""

from __future__ import annotations

import re
import uuid

import pytest

from gateway.deid.pseudonym import MAX_UID_LENGTH, Pseudonymizer

KEY = b"0123456789abcdef0123456789abcdef"
UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def test_uids_are_deterministic_and_keyed() -> None:
    first = Pseudonymizer(KEY).uid("1.2.840.99.1")
    assert Pseudonymizer(KEY).uid("1.2.840.99.1") == first
    assert Pseudonymizer(KEY).uid("1.2.840.99.2") != first
    assert Pseudonymizer(b"another key of 32 bytes........!").uid("1.2.840.99.1") != first


def test_uid_in_2_25_form_is_a_version_8_uuid() -> None:
    uid = Pseudonymizer(KEY).uid("1.2.3")
    assert uid.startswith("2.25.") and UID.match(uid) and len(uid) <= MAX_UID_LENGTH
    as_uuid = uuid.UUID(int=int(uid[5:]))
    assert as_uuid.version == 8
    assert as_uuid.variant == uuid.RFC_4122


def test_uid_under_a_configured_root_fills_64_characters() -> None:
    root = "1.2.826.0.1.3680043.10.999"
    uid = Pseudonymizer(KEY, root).uid("1.2.3")
    assert uid.startswith(root + ".") and UID.match(uid)
    assert len(uid) == MAX_UID_LENGTH


def test_uid_ignores_padding_of_the_input() -> None:
    names = Pseudonymizer(KEY)
    assert names.uid("1.2.3\x00") == names.uid("1.2.3")


def test_patient_pseudonyms_are_valid_and_paired() -> None:
    names = Pseudonymizer(KEY)
    patient_id, name = names.patient_id("PID-1"), names.patient_name("PID-1")
    assert patient_id == names.patient_id("PID-1") != names.patient_id("PID-2")
    assert len(patient_id) <= 64 and name.startswith("DMASK^")
    assert name.split("^")[1] in patient_id  # both derive from the same digest


def test_date_shift_is_per_patient_and_within_range() -> None:
    names = Pseudonymizer(KEY)
    shifts = {names.date_shift_days(f"P{i}", 30) for i in range(200)}
    assert shifts <= set(range(1, 31)) and len(shifts) > 20
    assert names.date_shift_days("P1", 30) == Pseudonymizer(KEY).date_shift_days("P1", 30)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Pseudonymizer(b"short")
