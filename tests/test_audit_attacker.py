"""The dlib attacker: models loaded by path, faces found, embeddings that tell people apart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.audit.lineup import rank1
from tests.support.photos import photo, read_rgb

pytestmark = pytest.mark.audit
pytest.importorskip("dlib")

from gateway.audit.attacker import Attacker, model_directory  # noqa: E402  (needs dlib)

FACES_DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces-dev"
#: dlib's own decision threshold for "same person" on its embeddings.
SAME_PERSON_DISTANCE = 0.6


@pytest.fixture(scope="module")
def attacker() -> Attacker:
    return Attacker()


def test_models_load_without_importing_face_recognition_models() -> None:
    code = (
        "import sys; from gateway.audit.attacker import Attacker; Attacker(); "
        "sys.exit('face_recognition_models' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    assert (model_directory() / "dlib_face_recognition_resnet_model_v1.dat").is_file()


def test_observation_of_a_face(attacker: Attacker) -> None:
    rgb = photo("grace_hopper")
    observation = attacker.observe(rgb)
    assert observation is not None
    left, top, right, bottom = observation.box
    assert 0 <= left < right <= rgb.shape[1] and 0 <= top < bottom <= rgb.shape[0]
    assert observation.points.shape == (5, 2) and observation.embedding.shape == (128,)
    # The subject's right eye is on the left of the photo, both above the nose.
    assert observation.right_eye[0] < observation.points[4][0] < observation.left_eye[0]
    assert max(observation.right_eye[1], observation.left_eye[1]) < observation.points[4][1]
    assert np.array_equal(attacker.embed_at(rgb, observation), observation.embedding)
    assert attacker.observe(photo("retina")) is None


def test_embeddings_tell_people_apart(attacker: Attacker) -> None:
    hopper = photo("grace_hopper")
    same = attacker.observe(cv2.flip(hopper, 1))
    other = attacker.observe(photo("astronaut"))
    reference = attacker.observe(hopper)
    assert same is not None and other is not None and reference is not None
    assert np.linalg.norm(same.embedding - reference.embedding) < SAME_PERSON_DISTANCE
    assert np.linalg.norm(other.embedding - reference.embedding) > SAME_PERSON_DISTANCE


def test_the_attacker_recognises_people_of_the_dev_set(attacker: Attacker) -> None:
    """Sanity check of the instrument on real identities: photo #2 finds photo #1 of its person."""
    if not FACES_DEV.is_dir():
        pytest.skip("shared faces-dev set not present")
    gallery, probes = {}, {}
    for person in sorted(p for p in FACES_DEV.iterdir() if p.is_dir())[:10]:
        first, second = (attacker.observe(read_rgb(f)) for f in sorted(person.glob("*.jpg"))[:2])
        assert first is not None and second is not None
        gallery[person.name], probes[person.name] = first.embedding, second.embedding
    hits = sum(rank1(probe, gallery) == person for person, probe in probes.items())
    assert hits >= 9
