"""The privacy audit run end to end on a tiny faces folder built from photos shipped in packages."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gateway.audit.privacy import AuditResult, draw_trials, load_face_set, run_privacy_audit
from gateway.audit.report import thresholds_of, write_report
from gateway.audit.transforms import FaceRegion, transform_from_spec
from gateway.cli import app
from gateway.errors import AuditError, NoFaceFound
from tests.support.photos import photo_path

#: Grace Hopper's mouth is closed (her first photo; the others are mirrored and rotated copies).
CLOSED_MOUTHS = frozenset(f"hopper/hopper_{i:04d}.png" for i in (1, 2, 3))

pytestmark = pytest.mark.audit
pytest.importorskip("dlib")



def write_variants(source: Path, folder: Path, count: int) -> None:
    """Photo #1 is the source, the others mirrored or rotated copies, all about LFW's size."""
    bgr = cv2.imread(str(source), cv2.IMREAD_COLOR)
    bgr = cv2.resize(bgr, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    height, width = bgr.shape[:2]
    variants = [
        bgr,
        cv2.flip(bgr, 1),
        cv2.warpAffine(bgr, cv2.getRotationMatrix2D((width / 2, height / 2), 6, 0.9), (width, height)),
    ]
    folder.mkdir(parents=True)
    for index, image in enumerate(variants[:count], start=1):
        cv2.imwrite(str(folder / f"{folder.name}_{index:04d}.png"), image)


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    write_variants(photo_path("grace_hopper"), root / "hopper", 3)
    write_variants(photo_path("astronaut"), root / "astronaut", 2)
    write_variants(photo_path("retina"), root / "fundus", 2)  # no face: excluded
    write_variants(photo_path("astronaut"), root / "single", 1)  # one photo: not a person of the audit
    (root / "hopper" / "notes.txt").write_text("not a photo")
    return root


class Identity:
    """A transform that releases the photo unchanged under another name."""

    name = "identity"

    def apply(self, rgb: np.ndarray, region: FaceRegion) -> np.ndarray:
        return np.ascontiguousarray(rgb[:, :, :])


class FailsOnPortrait:
    """Fails closed on photos taller than wide (all of Grace Hopper's), like a mask finding no face."""

    name = "fails-on-portrait"

    def apply(self, rgb: np.ndarray, region: FaceRegion) -> np.ndarray:
        if rgb.shape[0] > rgb.shape[1]:
            raise NoFaceFound("no face")
        return rgb.copy()


@pytest.fixture(scope="module")
def result(faces: Path) -> AuditResult:
    none, blur, jpeg75 = (transform_from_spec(name) for name in ("none", "blur", "jpeg75"))
    transforms = [none, Identity(), blur, FailsOnPortrait(), jpeg75]
    steps: list[int] = []
    outcome = run_privacy_audit(
        load_face_set(faces), transforms, seed=11, progress=steps.append, closed_mouths=CLOSED_MOUTHS
    )
    assert sum(steps) == 7  # every photo of the people with two or more, fundus included
    return outcome


def by_name(result: AuditResult, name: str):
    return next(t for t in result.transforms if t.name == name)


def test_faces_folder_layout(faces: Path, tmp_path: Path) -> None:
    face_set = load_face_set(faces)
    assert list(face_set.people) == ["astronaut", "fundus", "hopper"]
    assert [p.key for p in face_set.people["hopper"]] == [f"hopper/hopper_{i:04d}.png" for i in (1, 2, 3)]
    (tmp_path / "alone").mkdir()
    with pytest.raises(AuditError):
        load_face_set(tmp_path)
    with pytest.raises(AuditError):
        load_face_set(tmp_path / "missing")


def test_trials_follow_the_protocols() -> None:
    usable = {f"p{i}": [f"p{i}/1", f"p{i}/2", f"p{i}/3"][: 2 + i % 2] for i in range(10)}
    trials = draw_trials(usable, seed=5, lineup_size=6)
    assert [t.probe for t in trials["a"]] == [key for keys in usable.values() for key in keys]
    for trial in trials["a"]:
        assert trial.gallery[trial.identity] == trial.probe
        assert all(key.endswith("/1") for who, key in trial.gallery.items() if who != trial.identity)
    assert trials["b"] is trials["c"]
    for trial in trials["b"]:
        assert trial.probe == f"{trial.identity}/2"
        assert set(trial.gallery.values()) == {f"p{i}/1" for i in range(10)}
    for trial in trials["a"] + trials["b"]:
        (lineup,) = trial.lineups
        assert len(lineup) == 6 and trial.identity in lineup
    assert draw_trials(usable, seed=5, lineup_size=6) == trials
    assert draw_trials(usable, seed=6, lineup_size=6) != trials


def test_more_draws_show_each_probe_more_line_ups() -> None:
    usable = {f"p{i}": [f"p{i}/1", f"p{i}/2"] for i in range(10)}
    one = draw_trials(usable, seed=5, lineup_size=6)
    three = draw_trials(usable, seed=5, lineup_size=6, draws=3)

    assert [t.probe for t in three["a"]] == [t.probe for t in one["a"]]
    assert three["a"][0].lineups[0] == one["a"][0].lineups[0]  # the same generator
    for trial in three["a"] + three["b"]:
        assert len(trial.lineups) == 3 and all(trial.identity in lineup for lineup in trial.lineups)
    assert len({lineup for trial in three["b"] for lineup in trial.lineups}) > len(three["b"])


def test_photos_without_a_face_are_excluded(result: AuditResult) -> None:
    assert result.identities == ["astronaut", "hopper"]
    assert result.excluded == ["fundus/fundus_0001.png", "fundus/fundus_0002.png"]
    assert len(result.trials["a"]) == 5 and len(result.trials["b"]) == 2


def test_originals_are_recognised(result: AuditResult) -> None:
    none = by_name(result, "none")
    assert none.released == 5 and not none.failures
    for strength in ("strong", "detector"):
        for protocol in ("a", "b", "c"):
            for view in ("lineup", "closed"):
                score = none.scores[strength][protocol][view]
                assert score.hits == score.trials > 0
                assert score.chance == 0.5  # two people
    assert none.fidelity_compared == len(none.fidelity) == 5
    assert max(f.eyelid_error for f in none.fidelity.values()) == 0.0
    assert max(f.mouth_aperture_difference for f in none.fidelity.values()) == 0.0
    assert set(none.mouth_apertures) == set(none.fidelity)
    assert len(none.judged) == 5 and max(j.eye_error for j in none.judged) == 0.0
    # The geometry attacker finds every original by its own landmarks (same photo, protocol a).
    for strength in ("geometry:eyelids", "geometry:eyes-irises-brows"):
        assert none.scores[strength]["a"]["closed"].hits == 5 and none.found[strength] == 5
    assert max(j.eye_error for j in by_name(result, "blur").judged) > 0.0


def test_an_identity_transform_scores_like_none(result: AuditResult) -> None:
    none, identity = by_name(result, "none"), by_name(result, "identity")
    assert identity.scores == none.scores
    assert identity.fidelity == none.fidelity
    assert identity.detector_found == none.detector_found == 5


def test_worker_processes_give_the_same_figures(faces: Path, result: AuditResult) -> None:
    transforms = [transform_from_spec("none"), FailsOnPortrait()]
    pooled = run_privacy_audit(load_face_set(faces), transforms, seed=11, jobs=2)
    for name in ("none", "fails-on-portrait"):
        assert by_name(pooled, name) == by_name(result, name)
    assert pooled.trials == result.trials
    assert [row.identity for row in pooled.sheet] == [row.identity for row in result.sheet]


def test_blur_hides_the_face_from_the_detector(result: AuditResult) -> None:
    blur = by_name(result, "blur")
    assert blur.detector_found < 5
    assert blur.scores["detector"]["a"]["lineup"].hits < 5


def test_failing_closed_is_counted_not_released(result: AuditResult) -> None:
    failing = by_name(result, "fails-on-portrait")
    assert dict(failing.failures) == {"no-face": 3}
    assert failing.failed == {f"hopper/hopper_{i:04d}.png": "no-face" for i in (1, 2, 3)}
    assert failing.released == 2
    strong = failing.scores["strong"]
    assert strong["a"]["lineup"].trials == 2  # only the astronaut's photos were released
    assert strong["b"]["closed"].trials == 1
    # In linkage the failed photos of the other person cannot be candidates either.
    assert strong["c"]["closed"].chance == 1.0


def test_report_that_cannot_be_written_is_an_audit_error(result: AuditResult, tmp_path: Path) -> None:
    occupied = tmp_path / "report"
    occupied.write_text("a file where the report folder should go")
    with pytest.raises(AuditError, match="cannot write the report"):
        write_report(result, occupied)


def test_report_files(result: AuditResult, tmp_path: Path) -> None:
    paths = write_report(result, tmp_path / "report")
    assert [p.name for p in paths] == ["report.json", "report.md", "sheet.png"]
    report = json.loads(paths[0].read_text())
    assert (report["seed"], report["people"], report["photos"], report["lineup_size"]) == (11, 2, 5, 6)
    assert [t["name"] for t in report["transforms"]] == ["none", "identity", "blur", "fails-on-portrait", "jpeg75"]
    cell = report["transforms"][0]["scores"]["strong"]["b"]["lineup"]
    assert cell["rate"] == 1.0 and cell["ci95"][1] == 1.0 and cell["trials"] == 2
    assert report["transforms"][3]["failed_closed"] == {"no-face": 3}
    assert len(report["draws"]["a"]) == 5
    assert report["photo_1"] == {"astronaut": "astronaut/astronaut_0001.png", "hopper": "hopper/hopper_0001.png"}
    assert report["draws"]["a"][0]["probe"] in report["draws"]["a"][0]["lineups"][0]
    assert report["lineups_per_probe"] == 1
    markdown = paths[1].read_text()
    assert "| none | strong (original landmarks) | 5/5 | 5 |" in markdown
    assert "| none | geometry: irises | 5/5 | 5 |" in markdown
    assert "| fails-on-portrait | detector-based | 2/5 (3 no-face) | 2 |" in markdown
    assert "| none | 5 | 0.0000 (0.0000) | 0.0000 (0.0000) |" in markdown  # the judge's table
    assert report["transforms"][0]["judge"]["eye_error"] == {"mean": 0.0, "median": 0.0}
    sheet = cv2.imread(str(paths[2]))
    assert sheet.shape[0] > 2 * 160 and sheet.shape[1] > 6 * 160  # 2 people x (original + 5)


def test_the_mouth_is_held_to_the_noise_floor_of_jpeg75(result: AuditResult, tmp_path: Path) -> None:
    floor = by_name(result, "jpeg75")
    assert len(floor.fidelity) == 5
    moved = [f.mouth_aperture_difference for f in floor.fidelity.values()]
    assert max(moved) > 0.0  # compression moves Face Mesh's reading a little
    thresholds = thresholds_of(result)
    assert thresholds["mouth_aperture_difference"] == pytest.approx(np.percentile(moved, 95))
    report = json.loads(write_report(result, tmp_path)[0].read_text())
    assert report["noise_floor"]["thresholds"] == thresholds
    by_transform = {t["name"]: t for t in report["transforms"]}
    unchanged = by_transform["none"]["verdicts"]["corner_asymmetry_difference"]
    assert unchanged["passed"] and unchanged["mean"] == 0.0 and unchanged["within"] == 1.0
    assert by_transform["fails-on-portrait"]["verdicts"]["mouth_aperture_difference"]["passed"]
    assert set(by_transform["jpeg75"]["per_photo"]) == set(floor.fidelity)
    assert by_transform["jpeg75"]["per_photo"]["hopper/hopper_0001.png"]["mouth_aperture"] == pytest.approx(
        floor.mouth_apertures["hopper/hopper_0001.png"]
    )
    markdown = (tmp_path / "report.md").read_text()
    assert "## The mouth against the noise floor" in markdown
    assert "| none | pass: 0.0000 vs " in markdown


def test_labelled_closed_mouths_are_read_on_every_release(result: AuditResult, tmp_path: Path) -> None:
    report = json.loads(write_report(result, tmp_path)[0].read_text())
    states = {t["name"]: t["closed_mouths"] for t in report["transforms"]}
    # Grace Hopper's lips touch: unchanged or re-encoded they read closed; released by none of
    # the portrait-failing transform.
    for name in ("none", "identity", "jpeg75"):
        assert states[name] == {"labelled": 3, "redetected": 3, "classes": {"closed": 3, "parted": 0, "open": 0}}
    assert states["fails-on-portrait"]["labelled"] == 0
    assert report["closed_mouths_labelled"] == sorted(CLOSED_MOUTHS)
    assert "| none | 3 | 3 | 3 | 0 | 0 |" in (tmp_path / "report.md").read_text()


def test_without_jpeg75_or_labels_there_is_no_verdict(faces: Path, tmp_path: Path) -> None:
    plain = run_privacy_audit(load_face_set(faces), [transform_from_spec("none")], seed=11)
    assert thresholds_of(plain) == {}
    report = json.loads(write_report(plain, tmp_path)[0].read_text())
    assert report["noise_floor"] is None
    assert report["transforms"][0]["verdicts"] == {} and report["transforms"][0]["closed_mouths"] is None
    assert "no `jpeg75` transform" in (tmp_path / "report.md").read_text()
    with pytest.raises(AuditError, match="1 labelled photos are not in the faces folder"):
        run_privacy_audit(
            load_face_set(faces), [transform_from_spec("none")], closed_mouths=frozenset({"someone/else.jpg"})
        )


def test_cli_writes_the_report(faces: Path, tmp_path: Path) -> None:
    run = CliRunner().invoke(
        app,
        ["audit", "privacy", "--faces", str(faces), "--transform", "eyebar", "--jobs", "1", "--draws", "4",
         "--report", str(tmp_path)],
    )
    assert run.exit_code == 0, run.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert [t["name"] for t in report["transforms"]] == ["eyebar"]
    assert report["lineups_per_probe"] == 4
    other_photo = report["transforms"][0]["scores"]["strong"]["b"]
    assert (other_photo["lineup"]["trials"], other_photo["lineup"]["draws"]) == (2 * 4, 4)
    assert (other_photo["closed"]["trials"], other_photo["closed"]["draws"]) == (2, 1)
    assert "4 line-ups per probe" in (tmp_path / "report.md").read_text()
    assert "n=2×4" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "sheet.png").stat().st_size > 0


def test_draws_below_one_are_refused(faces: Path, tmp_path: Path) -> None:
    arguments = ["audit", "privacy", "--faces", str(faces), "--draws", "0", "--report", str(tmp_path)]
    run = CliRunner().invoke(app, arguments)
    assert run.exit_code == 2
    with pytest.raises(AuditError, match="at least one line-up"):
        run_privacy_audit(load_face_set(faces), [transform_from_spec("none")], draws=0)


def test_cli_masks_with_a_profile_of_the_configuration(faces: Path, tmp_path: Path) -> None:
    pytest.importorskip("gateway.mask.masker")
    from gateway.config import load_config

    config = Path(__file__).resolve().parents[1] / "config" / "gateway.yaml"
    run = CliRunner().invoke(
        app,
        ["audit", "privacy", "--faces", str(faces), "--transform", "mask@face-photos",
         "--config", str(config), "--jobs", "1", "--report", str(tmp_path)],
    )
    assert run.exit_code == 0, run.output
    mask = json.loads((tmp_path / "report.json").read_text())["transforms"][0]
    profile = load_config(config, check_secret=False).profiles["face-photos"]
    assert mask["settings"] == profile.mask.model_dump(mode="json")
    assert mask["released"] + sum(mask["failed_closed"].values()) == 5


@pytest.mark.parametrize(
    ("spec", "message"),
    [("none,smudge", "unknown transform 'smudge'"), ("mask@nobody", "no profile 'nobody'")],
)
def test_cli_refuses_an_unknown_transform(faces: Path, tmp_path: Path, spec: str, message: str) -> None:
    run = CliRunner().invoke(
        app, ["audit", "privacy", "--faces", str(faces), "--transform", spec, "--report", str(tmp_path)]
    )
    assert run.exit_code == 2
    assert message in run.output
    assert not (tmp_path / "report.json").exists()
