"""Fixtures shared by the whole test run.

Loading the Face Mesh graphs and the OpenGL context of a masker takes seconds, so one masker
with default settings serves every test that needs no other settings; a test that needs other
settings makes its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from tests.support.photos import photo

if TYPE_CHECKING:
    from gateway.mask.masker import FaceMasker
    from tests.support.postgres import PostgresServer
    from tests.support.s3 import S3Server


@pytest.fixture(scope="session")
def masker() -> Iterator[FaceMasker]:
    """A masker with default settings, closed at the end of the run. Frame sequences start
    with ``reset_tracking`` (``mask_frames`` does it), so what one test tracked does not
    follow the next."""
    from gateway.mask.masker import FaceMasker  # mediapipe loads only for tests that mask
    from gateway.mask.settings import MaskSettings

    with FaceMasker(MaskSettings()) as default_masker:
        yield default_masker


@pytest.fixture(scope="session")
def small_face() -> np.ndarray:
    """The astronaut photo (a face) reduced to 160 x 120 to keep the codecs fast; read-only,
    since every test of the run sees the same array."""
    rgb = cv2.resize(photo("astronaut"), (160, 120), interpolation=cv2.INTER_AREA)
    rgb.setflags(write=False)
    return rgb


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the run (Debian's postgresql-15), stopped at its end; the
    tests that need it are skipped where its binaries are not installed."""
    from tests.support import postgres as support

    if not support.available():
        pytest.skip("PostgreSQL 15 binaries (Debian postgresql-15) are not installed")
    server = support.PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """An S3 endpoint (moto's server) on a loopback port for the run."""
    from tests.support.s3 import S3Server

    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()
