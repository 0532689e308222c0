"""The privacy audit run: every transform, every photo of a faces folder, every protocol.

The faces folder holds one sub-folder per person with two or more photos. Each photo is read
once; what the attacker and the landmarker learn from the original (embedding, face box,
5-point and 478-point landmarks) is computed once and cached for the run, then every transform
is applied to it and the released image is embedded by both attackers, re-landmarked by Face
Mesh and judged by dlib's 68-point model on the original's face box (``gateway.audit.judge``).

Attackers (``STRENGTHS``): the two face recognisers of ``gateway.audit.attacker`` (``strong``,
``detector``) and the geometry attacker of ``gateway.audit.geometry``, once per kept region
(``geometry:eyelids`` ...) and once for all of them, on the Face Mesh landmarks of the released
image against those of the originals.

Protocols (``TRIALS`` below), each as a line-up and as a closed set over all people:

* ``a`` same-photo: released photo i against the originals, photo i itself among them;
* ``b`` other-photo: released photo #2 against the originals of photo #1;
* ``c`` linkage: released photo #2 against the released photo #1 of every person, i.e. can two
  releases of the same person be linked (the weakness of the published mask).

Photos #1 and #2 of a person are the first two, in sorted file order, on which the attacker's
detector finds a face in the original; a photo without one is excluded (the strong attacker
needs its landmarks), and so is a person left with fewer than two.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from gateway.audit.attacker import Attacker, FaceObservation
from gateway.audit.fidelity import FaceMeshLandmarker, Fidelity, compare_landmarks, mouth_aperture
from gateway.audit.geometry import GEOMETRY_REGIONS, geometry_signatures
from gateway.audit.judge import JudgedFidelity, ShapeJudge, judge_eyes
from gateway.audit.lineup import Score, draw_lineup, rank1, score
from gateway.audit.mouths import check_labels
from gateway.audit.transforms import DigitalMask, FaceRegion, FaceTransform
from gateway.errors import AuditError, NoFaceFound, ResidualFace

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
#: Photos are read at most this large (longest side): enough for any face recogniser and it
#: keeps a folder of clinical camera photos within minutes.
MAX_SIDE = 1024
DEFAULT_SEED = 7050
#: Line-up size of the published human study: the person and five others.
LINEUP_SIZE = 6
SHEET_PEOPLE = 8
#: Default worker processes at most: each holds its own copy of the models in memory.
MAX_DEFAULT_JOBS = 4
SHEET_PHOTO = 160

STRENGTHS = ("strong", "detector", *(f"geometry:{region}" for region in GEOMETRY_REGIONS))
PROTOCOLS = {
    "a": "same-photo: released photo i vs originals incl. photo i",
    "b": "other-photo: released photo #2 vs originals of photo #1",
    "c": "linkage: released photo #2 vs released photo #1",
}
VIEWS = ("lineup", "closed")


@dataclass(frozen=True)
class Photo:
    """One photo of one person; ``key`` (``person/file``) names it in the report."""

    identity: str
    path: Path

    @property
    def key(self) -> str:
        return f"{self.identity}/{self.path.name}"


@dataclass(frozen=True)
class FaceSet:
    """The photos of a faces folder, by person, in sorted order."""

    root: Path
    people: dict[str, tuple[Photo, ...]]

    @property
    def photos(self) -> list[Photo]:
        return [photo for photos in self.people.values() for photo in photos]


def load_face_set(root: Path) -> FaceSet:
    """Read the layout of a faces folder: sub-folders of two or more photos, one per person.

    Raises
    ------
    AuditError
        Fewer than two people with two photos each: no protocol can be run.
    """
    if not root.is_dir():
        raise AuditError("the faces folder does not exist")
    people: dict[str, tuple[Photo, ...]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if len(files) >= 2:
            people[folder.name] = tuple(Photo(folder.name, f) for f in files)
    if len(people) < 2:
        raise AuditError("the faces folder needs at least two sub-folders (people) with two photos or more")
    return FaceSet(root, people)


def read_photo(path: Path) -> np.ndarray | None:
    """The photo as RGB, at most :data:`MAX_SIDE` on its longest side; None when unreadable."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    scale = MAX_SIDE / max(bgr.shape[:2])
    if scale < 1.0:
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class Original:
    """What is learnt once from an original photo and reused by every transform."""

    observation: FaceObservation
    landmarks: np.ndarray | None
    #: dlib's 68 points on the original's face box (the independent judge's reference).
    judged: np.ndarray
    #: The geometry attacker's signatures of the original, by strength (``geometry:REGION``).
    geometry: dict[str, np.ndarray | None]

    def embedding(self, strength: str) -> np.ndarray | None:
        """What the attacker of ``strength`` compares a released photo with."""
        return self.geometry[strength] if strength in self.geometry else self.observation.embedding

    @property
    def region(self) -> FaceRegion:
        obs = self.observation
        return FaceRegion(obs.box, tuple(obs.right_eye), tuple(obs.left_eye))


@dataclass(frozen=True)
class Released:
    """One released (transformed) photo, as the attackers and the landmarker see it.

    ``failure`` is the reason code when the transform failed closed (nothing released);
    ``mouth_aperture`` what Face Mesh reads of the mouth on the release (None: face not found).
    """

    failure: str | None = None
    embeddings: dict[str, np.ndarray | None] = field(default_factory=dict)
    fidelity: Fidelity | None = None
    judged: JudgedFidelity | None = None
    mouth_aperture: float | None = None


@dataclass(frozen=True)
class Trial:
    """One probe of a protocol: whose photo it is, which photo stands for each candidate, and
    the line-ups it is shown in (one per draw)."""

    probe: str
    identity: str
    gallery: dict[str, str]
    lineups: tuple[tuple[str, ...], ...]


@dataclass
class TransformResult:
    """Every figure of one transform.

    ``settings`` are the mask settings of a ``mask`` transform (what the figures were measured
    with, as the defaults may change); ``failed`` maps the photos the transform refused to
    release (failed closed) to the reason; ``scores[strength][protocol][view]``; ``fidelity`` holds,
    by photo key, one entry per released photo whose original has landmarks and on which landmarks
    were found again, and ``mouth_apertures`` the mouth aperture read on each of those releases;
    ``judged`` one entry per released photo (the judge always answers on the box).
    """

    name: str
    settings: dict[str, object] | None = None
    released: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    detector_found: int = 0
    found: Counter[str] = field(default_factory=Counter)
    fidelity_compared: int = 0
    fidelity: dict[str, Fidelity] = field(default_factory=dict)
    mouth_apertures: dict[str, float] = field(default_factory=dict)
    judged: list[JudgedFidelity] = field(default_factory=list)
    scores: dict[str, dict[str, dict[str, Score]]] = field(default_factory=dict)

    @property
    def failures(self) -> Counter[str]:
        """Photos that failed closed, by reason."""
        return Counter(self.failed.values())


@dataclass(frozen=True)
class SheetRow:
    """Photo #1 of one person: the original, then each transform's release (None if it failed)."""

    identity: str
    images: list[np.ndarray | None]


@dataclass
class AuditResult:
    """The outcome of a run, everything the report needs; ``closed_mouths`` are the photos
    labelled as showing a closed mouth (none when no labels were given)."""

    faces: Path
    seed: int
    lineup_size: int
    draws: int
    identities: list[str]
    excluded: list[str]
    trials: dict[str, list[Trial]]
    transforms: list[TransformResult]
    sheet: list[SheetRow]
    elapsed_s: float
    closed_mouths: frozenset[str] = frozenset()


def draw_trials(
    usable: dict[str, list[str]], seed: int, lineup_size: int, draws: int = 1
) -> dict[str, list[Trial]]:
    """Probes, galleries and line-ups of protocols a, b and c, drawn from ``seed``.

    ``usable`` maps each person to the keys of their usable photos (photo #1 first). Each probe
    gets ``draws`` line-ups, drawn one after the other from the one generator.
    Protocols b and c share their line-ups, so they differ only in what the gallery shows.
    """
    rng = random.Random(seed)
    identities = sorted(usable)
    first = {identity: usable[identity][0] for identity in identities}

    def lineups(identity: str) -> tuple[tuple[str, ...], ...]:
        return tuple(draw_lineup(identity, identities, lineup_size, rng) for _ in range(draws))

    same_photo = [
        Trial(key, identity, {**first, identity: key}, lineups(identity))
        for identity in identities
        for key in usable[identity]
    ]
    other_photo = [Trial(usable[identity][1], identity, first, lineups(identity)) for identity in identities]
    return {"a": same_photo, "b": other_photo, "c": other_photo}


def _score_protocol(
    trials: Sequence[Trial],
    probe_embedding: Callable[[str], np.ndarray | None],
    gallery_embedding: Callable[[str], np.ndarray | None],
    failed: Callable[[str], bool],
    released_gallery: bool,
) -> dict[str, Score]:
    """Score line-ups and closed set; trials whose probe (or released true match) failed closed
    are skipped, failed distractors leave the line-up (which only makes the attacker's job
    easier). Every line-up of a probe counts; its closed set counts once."""
    outcomes: dict[str, list[tuple[bool, int]]] = {view: [] for view in VIEWS}
    for trial in trials:
        if failed(trial.probe) or (released_gallery and failed(trial.gallery[trial.identity])):
            continue
        probe = probe_embedding(trial.probe)
        shown = [("lineup", lineup) for lineup in trial.lineups] + [("closed", tuple(trial.gallery))]
        for view, members in shown:
            keys = {m: trial.gallery[m] for m in members}
            if released_gallery:
                keys = {m: k for m, k in keys.items() if not failed(k)}
            candidates = {m: gallery_embedding(k) for m, k in keys.items()}
            outcomes[view].append((rank1(probe, candidates) == trial.identity, len(candidates)))
    draws = len(trials[0].lineups) if trials else 1
    return {"lineup": score(outcomes["lineup"], draws), "closed": score(outcomes["closed"])}


def _release(
    transform: FaceTransform,
    rgb: np.ndarray,
    original: Original,
    attacker: Attacker,
    landmarker: FaceMeshLandmarker,
    judge: ShapeJudge,
) -> tuple[Released, np.ndarray | None]:
    try:
        image = transform.apply(rgb, original.region)
    except (NoFaceFound, ResidualFace) as failure:
        return Released(failure=failure.reason), None
    detected = attacker.observe(image)
    if detected is not None and np.array_equal(detected.points, original.observation.points):
        strong = detected.embedding  # same image, same landmarks: the strong embedding is this one
    else:
        strong = attacker.embed_at(image, original.observation)
    embeddings = {"strong": strong, "detector": None if detected is None else detected.embedding}
    fidelity, landmarks, aperture = None, None, None
    if original.landmarks is not None:
        landmarks = landmarker.landmarks(image, near=original.landmarks)
        if landmarks is not None:
            fidelity = compare_landmarks(original.landmarks, landmarks)
            aperture = mouth_aperture(landmarks)
    embeddings.update(geometry_signatures(landmarks))
    judged = judge_eyes(original.judged, judge.landmarks(image, original.observation.box))
    return Released(None, embeddings, fidelity, judged, aperture), image


@dataclass(frozen=True)
class PhotoOutcome:
    """What one photo contributes: its original (None without a face), its releases by transform
    name and, for the people of the contact sheet, thumbnails of the original and each release."""

    photo: Photo
    original: Original | None
    released: dict[str, Released]
    sheet: list[np.ndarray | None] | None


class PhotoAuditor:
    """The models of one process (attacker, landmarker, transforms), applied photo by photo."""

    def __init__(self, transforms: Sequence[FaceTransform]) -> None:
        self._transforms = list(transforms)
        self._attacker = Attacker()
        self._landmarker = FaceMeshLandmarker()
        self._judge = ShapeJudge()

    def audit(self, photo: Photo, with_sheet: bool) -> PhotoOutcome:
        """Learn from the original once, then release it through every transform."""
        rgb = read_photo(photo.path)
        observation = None if rgb is None else self._attacker.observe(rgb)
        if rgb is None or observation is None:
            return PhotoOutcome(photo, None, {}, None)
        landmarks = self._landmarker.landmarks(rgb)
        original = Original(
            observation, landmarks, self._judge.landmarks(rgb, observation.box), geometry_signatures(landmarks)
        )
        released: dict[str, Released] = {}
        images: list[np.ndarray | None] = [rgb]
        for transform in self._transforms:
            released[transform.name], image = _release(
                transform, rgb, original, self._attacker, self._landmarker, self._judge
            )
            images.append(image)
        sheet = [_thumbnail(image) for image in images] if with_sheet else None
        return PhotoOutcome(photo, original, released, sheet)

    def close(self) -> None:
        """Release the landmarker and the maskers of the digital mask transforms."""
        self._landmarker.close()
        for transform in self._transforms:
            if isinstance(transform, DigitalMask):
                transform.close()


_worker: PhotoAuditor | None = None


def _start_worker(transforms: list[FaceTransform]) -> None:
    global _worker
    _worker = PhotoAuditor(transforms)


def _audit_in_worker(task: tuple[Photo, bool]) -> PhotoOutcome:
    assert _worker is not None, "the pool initialiser builds the worker's auditor"
    return _worker.audit(*task)


def _audit_photos(
    tasks: list[tuple[Photo, bool]], transforms: Sequence[FaceTransform], jobs: int
) -> Iterator[PhotoOutcome]:
    """Outcomes in task order, from this process or from ``jobs`` spawned workers.

    Workers are spawned, not forked: mediapipe's graphs, dlib and an EGL context do not survive
    a fork of a process that already holds them.
    """
    if jobs <= 1:
        auditor = PhotoAuditor(transforms)
        try:
            for task in tasks:
                yield auditor.audit(*task)
        finally:
            auditor.close()
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(jobs, len(tasks)), initializer=_start_worker, initargs=(list(transforms),)) as pool:
        yield from pool.imap(_audit_in_worker, tasks)


def run_privacy_audit(
    face_set: FaceSet,
    transforms: Sequence[FaceTransform],
    *,
    seed: int = DEFAULT_SEED,
    lineup_size: int = LINEUP_SIZE,
    draws: int = 1,
    progress: Callable[[int], None] | None = None,
    jobs: int = 1,
    closed_mouths: frozenset[str] = frozenset(),
) -> AuditResult:
    """Apply every transform to every photo and score both attackers on every protocol.

    Parameters
    ----------
    face_set:
        The photos, from :func:`load_face_set`.
    transforms:
        The transforms to compare; their names must be distinct.
    seed:
        Seed of the line-up draws.
    lineup_size:
        Candidates per line-up (the person and ``lineup_size - 1`` others).
    draws:
        Line-ups per probe. Which distractors a line-up holds moves a 40-probe rate by several
        points from seed to seed; more draws give the rate over many line-ups of the same
        released photos.
    progress:
        Called with 1 after each photo, e.g. a progress bar's ``update``.
    jobs:
        Worker processes; each loads its own models (and masker), so more than the CPUs
        available only costs memory. Results do not depend on it.
    closed_mouths:
        Keys of the photos labelled as showing a closed mouth (``gateway.audit.mouths``).

    Raises
    ------
    AuditError
        Duplicate transform names, labels of photos the folder lacks, or fewer than two people
        left with two usable photos.
    """
    names = [t.name for t in transforms]
    if len(set(names)) != len(names):
        raise AuditError("each transform may be named only once")
    if draws < 1:
        raise AuditError("a probe needs at least one line-up (draws >= 1)")
    check_labels(closed_mouths, (photo.key for photo in face_set.photos))
    started = time.monotonic()
    originals: dict[str, Original] = {}
    released: dict[str, dict[str, Released]] = {name: {} for name in names}
    sheet_images: dict[str, list[np.ndarray | None]] = {}
    sheet_people = set(list(face_set.people)[:SHEET_PEOPLE])
    tasks = [(photo, photo.identity in sheet_people) for photo in face_set.photos]
    for outcome in _audit_photos(tasks, transforms, jobs):
        key, identity = outcome.photo.key, outcome.photo.identity
        if outcome.original is not None:
            originals[key] = outcome.original
            for name, release in outcome.released.items():
                released[name][key] = release
            if outcome.sheet is not None and identity not in sheet_images:
                sheet_images[identity] = outcome.sheet
        if progress is not None:
            progress(1)

    usable = {
        identity: keys
        for identity, photos in face_set.people.items()
        if len(keys := [p.key for p in photos if p.key in originals]) >= 2
    }
    if len(usable) < 2:
        raise AuditError("fewer than two people have two photos with a face the attacker finds")
    trials = draw_trials(usable, seed, lineup_size, draws)
    kept = {key for keys in usable.values() for key in keys}
    results = [_transform_result(t, released[t.name], originals, trials, kept) for t in transforms]
    return AuditResult(
        faces=face_set.root,
        seed=seed,
        lineup_size=lineup_size,
        draws=draws,
        identities=sorted(usable),
        excluded=sorted(photo.key for photo in face_set.photos if photo.key not in kept),
        trials=trials,
        transforms=results,
        sheet=[SheetRow(identity, images) for identity, images in sheet_images.items() if identity in usable],
        elapsed_s=time.monotonic() - started,
        closed_mouths=closed_mouths,
    )


def _transform_result(
    transform: FaceTransform,
    released: dict[str, Released],
    originals: dict[str, Original],
    trials: dict[str, list[Trial]],
    kept: set[str],
) -> TransformResult:
    settings = transform.settings.model_dump(mode="json") if isinstance(transform, DigitalMask) else None
    result = TransformResult(transform.name, settings)
    for key in sorted(kept):
        outcome = released[key]
        if outcome.failure is not None:
            result.failed[key] = outcome.failure
            continue
        result.released += 1
        result.detector_found += outcome.embeddings["detector"] is not None
        result.found.update(s for s in STRENGTHS if outcome.embeddings[s] is not None)
        if outcome.judged is not None:
            result.judged.append(outcome.judged)
        if originals[key].landmarks is not None:
            result.fidelity_compared += 1
            if outcome.fidelity is not None and outcome.mouth_aperture is not None:
                result.fidelity[key] = outcome.fidelity
                result.mouth_apertures[key] = outcome.mouth_aperture

    def failed(key: str) -> bool:
        return released[key].failure is not None

    for strength in STRENGTHS:

        def released_embedding(key: str, strength: str = strength) -> np.ndarray | None:
            return released[key].embeddings[strength]

        def original_embedding(key: str, strength: str = strength) -> np.ndarray | None:
            return originals[key].embedding(strength)

        result.scores[strength] = {
            protocol: _score_protocol(
                trials[protocol],
                released_embedding,
                released_embedding if protocol == "c" else original_embedding,
                failed,
                released_gallery=protocol == "c",
            )
            for protocol in PROTOCOLS
        }
    return result


def _thumbnail(image: np.ndarray | None) -> np.ndarray | None:
    if image is None:
        return None
    height, width = image.shape[:2]
    scale = SHEET_PHOTO / max(height, width)
    return cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
