"""Burned-in text: real models on real images with planted text, the pipeline step and its marking."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
import skimage
from pydicom import dcmread

from gateway.audit.text import tesseract_words
from gateway.codec.pixels import decode_frames
from gateway.config import Profile
from gateway.errors import BurnedInText
from gateway.mask.interface import StillMasker
from gateway.mask.masker import FaceMasker
from gateway.mask.settings import BackgroundPolicy, MaskSettings
from gateway.mask.video import masked_frames
from gateway.process.pipeline import apply_profile, parse
from gateway.text.detector import DetectorSettings, TextDetector
from gateway.text.redactor import TextRedactor, examined_frames
from gateway.text.regions import fill_mask
from gateway.text.settings import DeviceRegions, TextSettings
from tests.support.clips import astronaut_clip
from tests.support.instances import rgb_instance
from tests.support.photos import photo, resized
from tests.support.planted_text import PlantedImage, coverage, plant

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SAMPLES = SHARED_DATA / "dicom-samples"
FACES = SHARED_DATA / "faces-dev"
SECRET = b"k" * 32
BLACK = np.array([0, 0, 0])


def _rgb(path: str | Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _sample(name: str) -> np.ndarray:
    return next(iter(decode_frames(dcmread(SAMPLES / name, force=True))))


def _bases() -> dict[str, np.ndarray]:
    data = Path(skimage.__file__).parent / "data"
    faces = sorted(glob.glob(str(FACES / "*" / "*.jpg")))[:3]
    bases = {"retina": _rgb(data / "retina.jpg"), "astronaut": _rgb(data / "astronaut.png"),
             "hopper": _rgb(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")}
    if SAMPLES.is_dir():
        bases["VL6"] = _sample("VL6_RLE.dcm")
    bases.update({os.path.basename(path): _rgb(path) for path in faces})
    return bases


@pytest.fixture(scope="module")
def redactor() -> TextRedactor:
    return TextRedactor(TextSettings())


@pytest.fixture(scope="module")
def corpus() -> list[PlantedImage]:
    rng = np.random.default_rng(7)
    return [plant(rgb, rng, 6, name=name) for name, rgb in _bases().items()]


@pytest.fixture(scope="module")
def redacted(redactor: TextRedactor, corpus: list[PlantedImage]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every corpus image's output and the mask of its filled pixels."""
    outputs = []
    for image in corpus:
        redaction = redactor.redact([image.rgb], {})
        outputs.append((redaction.frames[0], fill_mask(redaction.polygons, image.rgb.shape[:2])))
    return outputs


def test_planted_text_is_covered(corpus: list[PlantedImage], redacted: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Names, IDs, dates and times of 8-40 px in many styles: each box at least 90% filled."""
    scores = [coverage(token, mask) for image, (_, mask) in zip(corpus, redacted, strict=True)
              for token in image.tokens]
    assert len(scores) >= 3 * len(corpus)  # six planted per image; some skipped where nothing could read them
    assert np.mean(np.array(scores) >= 0.9) >= 0.97


def test_tesseract_reads_no_planted_token_in_outputs(corpus: list[PlantedImage],
                                                     redacted: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """An independent engine reads the planted text in the inputs and none of it in the outputs."""
    read_in_inputs = read_in_outputs = 0
    for image, (output, _) in list(zip(corpus, redacted, strict=True))[:4]:
        words = {part for token in image.tokens for part in _words(token.text)}
        read_in_inputs += len(words & tesseract_words(image.rgb))
        read_in_outputs += len(words & tesseract_words(output))
    assert read_in_inputs > 0
    assert read_in_outputs == 0


def _words(text: str) -> set[str]:
    return {word for word in "".join(c if c.isalnum() else " " for c in text.upper()).split() if len(word) >= 3}


#: Bases with text of their own (a mission patch, a name badge, VL6's green overlay): planted on, not text-free.
WITH_TEXT = ("astronaut", "hopper", "VL6")


def test_text_free_images_are_barely_touched(redactor: TextRedactor) -> None:
    """False redaction on photos without text: at most 1% of the image area on average."""
    text_free = [rgb for name, rgb in _bases().items() if name not in WITH_TEXT]
    text_free += [_rgb(path) for path in sorted(glob.glob(str(FACES / "*" / "*.jpg")))[3:13]]
    areas = []
    for rgb in text_free:
        redaction = redactor.redact([rgb], {})
        areas.append(fill_mask(redaction.polygons, rgb.shape[:2]).mean() if redaction.polygons else 0.0)
    assert np.mean(areas) <= 0.01


@pytest.mark.skipif(not FACES.is_dir(), reason="needs the shared face photos")
def test_small_text_on_a_small_photo_is_found_by_the_second_look(redactor: TextRedactor) -> None:
    """8-9 px text on a 250 px photo: at the 1.4x of the first look the network misses one of these
    three lines; the second look, 1.4 times larger again, finds it."""
    photo = _rgb(sorted(glob.glob(str(FACES / "*" / "*.jpg")))[4])
    planted = plant(photo, np.random.default_rng(0), 3, sizes=(8, 9))

    def covered(redacting: TextRedactor) -> list[float]:
        mask = fill_mask(redacting.redact([planted.rgb], {}).polygons, photo.shape[:2])
        return [coverage(token, mask) for token in planted.tokens]

    assert min(covered(redactor)) >= 0.9
    assert min(covered(TextRedactor(TextSettings(), TextDetector(DetectorSettings(second_look=1.0))))) < 0.9


def test_only_images_seen_at_less_than_twice_their_size_get_a_second_look() -> None:
    """A 250 px photo (seen at 1.4x) is looked at again at 1.96x; a 640x480 frame's second look
    would exceed the pixel budget; a 100 px image is seen at 3.2x by the first look already."""
    detector = TextDetector()
    assert detector.second_scale(250, 250) == pytest.approx(1.4 * 1.4)
    assert detector.second_scale(480, 640) is None
    assert detector.second_scale(100, 100) is None


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="needs the shared DICOM samples")
def test_real_endoscope_overlay_is_found_and_verified(redactor: TextRedactor) -> None:
    """The overlay lines are filled and the verification finds nothing around them. The whole
    output examined again shows only the maker's logo (red "Fuji" in a box, left of centre),
    which the detector does not see in the input: the verification looks near the fills only."""
    rgb = _sample("VL3_RLE.dcm")
    redaction = redactor.redact([rgb], {})
    assert redaction.lines >= 5 and not redaction.text_left
    left = [region.bounds() for region in TextDetector().detect(redaction.frames[0])]
    assert all(x0 >= 20 and y0 >= 200 and x1 <= 160 and y1 <= 300 for x0, y0, x1, y1 in left)


def test_device_regions_are_filled_whatever_is_found(redactor: TextRedactor) -> None:
    blank = np.full((120, 160, 3), 90, np.uint8)
    rules = TextSettings(device_regions=(DeviceRegions(manufacturer="ACME.*", rows=120, boxes=((0, 0, 40, 20),)),))
    device = TextRedactor(rules)
    filled = device.redact([blank], {"Manufacturer": "ACME Optics", "Rows": 120})
    assert (filled.frames[0][:20, :40] == 0).all() and (filled.frames[0][20:] == 90).all()
    assert device.redact([blank], {"Manufacturer": "Other", "Rows": 120}).polygons == ()
    assert redactor.redact([blank], {}).frames[0] is not None


def test_allow_list_keeps_only_text_the_recogniser_is_sure_of() -> None:
    rgb = np.full((200, 480, 3), 40, np.uint8)
    cv2.putText(rgb, "OD", (30, 80), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (255, 255, 255), 4)
    cv2.putText(rgb, "MUELLER ANNA", (30, 170), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
    allowing = TextRedactor(TextSettings(allow=r"O[DS]"))
    redaction = allowing.redact([rgb], {})
    assert redaction.allowed == 1 and redaction.lines == 1
    assert (redaction.frames[0][40:85, 30:110] == 255).any()  # the eye label stays
    assert not (redaction.frames[0][130:175, 30:300] == 255).any()  # the name goes


def test_a_sequence_is_filled_with_the_union_over_time() -> None:
    """A date shown only in frames 12-14 (not a sampled frame) is caught by its scene change and
    filled in every frame; text that moves is filled wherever it was seen."""
    base = cv2.resize(_rgb(Path(skimage.__file__).parent / "data" / "astronaut.png"), (320, 240))
    frames = [base.copy() for _ in range(20)]
    for index in range(12, 15):
        cv2.rectangle(frames[index], (0, 0), (320, 240), (20, 20, 20), -1)
        cv2.putText(frames[index], "1957-03-14", (60, 130), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    for index in range(8):
        cv2.putText(frames[index], "ID 4821", (10 + 10 * index, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 0), 2)
    assert 12 in examined_frames(frames, 10, 0.12)
    redaction = TextRedactor(TextSettings()).redact(frames, {})
    assert not redaction.text_left
    assert all((frame[120:128, 100:200] == 0).all() for frame in redaction.frames)
    assert all((frame[22:30, 20:80] == 0).all() for frame in redaction.frames)


def test_a_caption_moving_between_sampled_frames_is_followed() -> None:
    """A caption crossing the picture over 40 frames, examined only in frames 0 and 30: it is
    followed through the frames between and after them, so it is filled wherever it passed."""
    base = cv2.resize(_rgb(Path(skimage.__file__).parent / "data" / "astronaut.png"), (640, 240))
    frames, ink = [], []
    for index in range(40):
        frame = base.copy()
        cv2.putText(frame, "DOE^JOHN", (10 + 10 * index, 200), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 0), 2)
        frames.append(frame)
        ink.append((frame != base).any(axis=2))
    assert examined_frames(frames, 30, 0.12) == [0, 30]
    redaction = TextRedactor(TextSettings(sample_every=30)).redact(frames, {})
    mask = fill_mask(redaction.polygons, base.shape[:2])
    assert all(mask[pixels].mean() > 0.99 for pixels in ink)


def _text_instance(burned_in: str | None = None) -> bytes:
    rgb = np.full((240, 320, 3), 70, np.uint8)
    cv2.putText(rgb, "DOE^JOHN 1957-03-14", (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    ds = rgb_instance(rgb[None])
    ds.PatientID = "PID1"
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _applied(profile: dict, data: bytes):
    return apply_profile(parse(data), Profile.model_validate(profile), SECRET, profile_name="p", masker=None)


def _codes(ds) -> set[str]:
    return {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}


def test_the_pipeline_redacts_by_default_and_marks_clean_pixel_data() -> None:
    result = _applied({"mask": None}, _text_instance())
    out = dcmread(BytesIO(result.encoded))
    pixels = next(iter(decode_frames(out)))
    assert (pixels[15:45, 10:300] == BLACK).all(axis=-1).mean() > 0.8
    assert "113101" in _codes(out) and out.BurnedInAnnotation == "NO"
    assert result.burned_in_text.startswith("redacted") and result.text_polygons
    assert "text" in result.stage_seconds


def test_refuse_quarantines_text_and_keep_forwards_it() -> None:
    with pytest.raises(BurnedInText) as refused:
        _applied({"mask": None, "burned_in_text": {"action": "refuse"}}, _text_instance())
    assert refused.value.reason == "burned-in-text"
    data = _text_instance("YES")
    kept = _applied({"mask": None, "burned_in_text": {"action": "keep"}}, data)
    out = dcmread(BytesIO(kept.encoded))
    assert out.PixelData == dcmread(BytesIO(data)).PixelData
    assert out.BurnedInAnnotation == "YES" and "113101" not in _codes(out) and kept.burned_in_text == "kept"


def test_text_free_pixels_keep_their_encoding() -> None:
    ds = rgb_instance(np.full((1, 120, 160, 3), 90, np.uint8))
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    result = _applied({"mask": None}, buffer.getvalue())
    out = dcmread(BytesIO(result.encoded))
    assert out.PixelData == ds.PixelData and result.burned_in_text == "none found"
    assert out.BurnedInAnnotation == "NO" and "113101" in _codes(out)


def test_audit_text_finds_text_left_and_not_the_fills(tmp_path: Path, redactor: TextRedactor) -> None:
    """``dmask audit text``: an unredacted output has findings of both engines, a redacted one none."""
    from typer.testing import CliRunner

    from gateway.cli import app

    rgb = cv2.resize(_rgb(Path(skimage.__file__).parent / "data" / "retina.jpg"), (700, 700))
    planted = plant(rgb, np.random.default_rng(3), 5, sizes=(16, 36)).rgb
    for folder, image in (("in", planted), ("kept", planted), ("out", redactor.redact([planted], {}).frames[0])):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    runner = CliRunner()
    kept = runner.invoke(app, ["audit", "text", str(tmp_path / "in"), str(tmp_path / "kept")])
    assert kept.exit_code == 1 and "detector" in kept.output and "tesseract" in kept.output
    redacted = runner.invoke(app, ["audit", "text", str(tmp_path / "in"), str(tmp_path / "out")])
    assert redacted.exit_code == 0, redacted.output


def test_a_masked_face_is_not_taken_for_text(masker: StillMasker) -> None:
    """The rendered face on the mask's flat backdrop, in a small photo the detector enlarges, is one
    smooth blob: the detector alone would fill it whole as one large character."""
    photo = cv2.resize(_rgb(Path(skimage.__file__).parent / "data" / "astronaut.png")[20:240, 130:350], (250, 250))
    masked = masker.mask_image(photo)
    assert TextRedactor(TextSettings()).redact([masked], {}).polygons == ()


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="needs the shared DICOM samples")
def test_real_microscope_overlay_is_filled_and_marked() -> None:
    """VL6's green overlay ("S95-3229 H&E 20 STOMACH/BODY BX", "LAB SP") is 7 px text: the
    detector sees it only in the enlarged image, and must fill it before the output says NO."""
    data = (SAMPLES / "VL6_RLE.dcm").read_bytes()
    source = _sample("VL6_RLE.dcm")
    corner = source[:40, :215].astype(int)
    ink = (corner[..., 1] > 150) & (corner[..., 0] < 130) & (corner[..., 2] < 130)
    assert ink.sum() > 200  # the overlay is there to find
    result = _applied({"mask": None}, data)
    out = dcmread(BytesIO(result.encoded))
    filled = (next(iter(decode_frames(out)))[:40, :215] == BLACK).all(axis=2)
    assert filled[ink].mean() > 0.99
    assert result.burned_in_text.startswith("redacted") and "text left" not in result.burned_in_text
    assert out.BurnedInAnnotation == "NO"


def _part10(ds) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _masked_profile(data: bytes, masker: FaceMasker) -> np.ndarray:
    profile = Profile.model_validate({"mask": masker.settings.model_dump(mode="json")})
    result = apply_profile(parse(data), profile, SECRET, profile_name="p", masker=masker)
    return np.stack(list(decode_frames(dcmread(BytesIO(result.encoded)))))


@pytest.fixture(scope="module")
def keeping_masker() -> Iterator[FaceMasker]:
    """A masker that keeps the background, where text beside the face survives the mask."""
    with FaceMasker(MaskSettings(background=BackgroundPolicy.KEEP)) as masker:
        yield masker


def test_text_beside_a_masked_face_is_filled_and_the_rendered_face_is_not(keeping_masker: FaceMasker) -> None:
    """A name that runs into the face: the mask replaces its end, the text step fills the rest,
    and its fill (the line grown by its margin) stops at the edge of what the mask rendered."""
    frame = resized(photo("astronaut"), 300 * 300)
    planted = frame.copy()
    for text, origin in (("DOE^JANE", (30, 75)), ("1957-03-14", (150, 290))):
        cv2.putText(planted, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
    ink = (planted != frame).any(axis=2)
    still = keeping_masker.mask_still(planted)
    assert ink[still.rendered].any()  # the name runs over the face, where the mask replaces it
    assert (fill_mask(TextRedactor(TextSettings()).redact([still.rgb], {}).polygons, ink.shape)
            & still.rendered).any()  # its grown line reaches into the rendered face
    output = _masked_profile(_part10(rgb_instance(planted[None])), keeping_masker)[0]
    assert (output[still.rendered] == still.rgb[still.rendered]).all()
    left = ink & (still.rgb == planted).all(axis=2)  # the ink the mask did not replace
    assert left.sum() > 300 and (output[left] == BLACK).all()


def test_a_masked_sequence_keeps_its_rendered_eyes(masker: FaceMasker) -> None:
    """The union of text regions over time is filled in every frame, but never where a frame's
    mask was drawn: eyes taken for text in one frame are not blacked out in all of them."""
    frames = np.stack([frame.rgb for frame in astronaut_clip(masker, (640, 480), 110.0).frames(4)])
    images = list(masked_frames(masker, frames))
    alone = TextRedactor(TextSettings()).redact([image.rgb for image in images], {})
    assert (fill_mask(alone.polygons, frames.shape[1:3]) & images[0].rendered).any()  # the eyes, taken for text
    output = _masked_profile(_part10(rgb_instance(frames)), masker)
    for out, image in zip(output, images, strict=True):
        assert (out == image.rgb).all()


def test_a_filled_background_leaves_nothing_of_the_source_for_the_text_step(
        masker: FaceMasker, keeping_masker: FaceMasker) -> None:
    """With the default filled background the mask draws every pixel: the text beside the face
    is gone with the background, and the text step has nothing left to look at."""
    frame = resized(photo("astronaut"), 300 * 300)
    planted = frame.copy()
    cv2.putText(planted, "DOE^JANE", (30, 75), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
    ink = (planted != frame).any(axis=2)
    filled, kept = masker.mask_still(planted), keeping_masker.mask_still(planted)
    assert filled.rendered.all() and not kept.rendered.all()
    beside = ink & ~kept.rendered  # the ink outside the face, left by a kept background
    assert beside.sum() > 100 and (filled.rgb[beside] == masker.settings.fill_color).all()
    redaction = TextRedactor(TextSettings()).redact([filled.rgb], {}, [filled.rendered])
    assert redaction.polygons == () and not redaction.text_left and (redaction.frames[0] == filled.rgb).all()
