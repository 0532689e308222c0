"""The mask over clips: tracking, temporal smoothing, gaps, fail-closed, determinism, streaming.

Clips are synthesised from the photos shipped in installed packages (``tests.support.clips``): the
head drifts, zooms and rolls while the irises oscillate like a nystagmus, so the true iris
position of every frame is known.

Thresholds and why:
- iris track: the landmarks the mask is drawn from must follow the true iris centres within 1%
  of the inter-ocular distance (IOD), median over frames (issue target). Re-detected on the
  rendered mask the error also contains the render's own iris fidelity and the detector's noise
  on a synthetic eye, so there the check is that the gaze *follows* the input: the horizontal
  iris offset correlates with the truth (r >= 0.9) within 2% IOD median.
- flicker: on a still face with camera noise (sigma 3 grey levels) Face Mesh's landmarks move
  by about 1% IOD between frames (a pixel at 90 px IOD: the mask edge visibly shimmers). The
  smoothed mesh must move less than 0.3% IOD (under a third of a pixel here, below the
  antialiasing step), and fewer than 1% of the pixels of the face region may change by more
  than 24 grey levels from one frame to the next.
"""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest
from pydicom.uid import MPEG4HP41

from gateway.codec.pixels import decode_frames, encode_frames
from gateway.errors import NoFaceFound, ResidualFace, TrackingGap
from gateway.mask.geometry import variation_of
from gateway.mask.landmarks import FaceLandmarks
from gateway.mask.masker import FaceMasker
from gateway.mask.settings import MaskSettings
from gateway.mask.video import FaceTracker, inter_ocular_distance, mask_frames
from tests.support.clips import STILL_EYES, STILL_HEAD, EyeMovementClip, Frame
from tests.support.instances import video_instance, written_and_read
from tests.support.photos import photo

SIZE = (480, 360)
INTER_OCULAR = 90.0
FILL = MaskSettings().fill_color


@pytest.fixture(scope="module")
def astronaut_landmarks(masker: FaceMasker) -> np.ndarray:
    return masker.detect(photo("astronaut"))[0].points


@pytest.fixture(scope="module")
def nystagmus(astronaut_landmarks: np.ndarray) -> list[Frame]:
    """45 frames (1.5 s at 30 frames/s): head drift/zoom/roll, irises oscillating at 2 Hz."""
    return list(EyeMovementClip(photo("astronaut"), astronaut_landmarks, SIZE, INTER_OCULAR).frames(45))


@pytest.fixture(scope="module")
def still_face(astronaut_landmarks: np.ndarray) -> list[Frame]:
    """30 frames of a still face with independent camera noise in each frame."""
    clip = EyeMovementClip(photo("astronaut"), astronaut_landmarks, SIZE, INTER_OCULAR, eyes=STILL_EYES,
                           head=STILL_HEAD)
    rng = np.random.default_rng(7)
    return [
        Frame(np.clip(frame.rgb + rng.normal(0, 3, frame.rgb.shape), 0, 255).astype(np.uint8),
              frame.iris_centres, frame.eye_centres, frame.inter_ocular)
        for frame in clip.frames(30)
    ]


def tracked(masker: FaceMasker, frames: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Raw tracking-mode landmarks and the smoothed ones ``mask_frames`` renders, per frame."""
    masker.reset_tracking()
    tracker = FaceTracker(masker.settings.max_gap_frames)
    raw, smoothed = [], []
    for rgb in frames:
        faces = masker.detect(rgb, tracking=True)
        raw.append(faces[0].points)
        tracker.add(rgb, faces)
        smoothed += [faces[0].points for _, _, faces in tracker.ready_frames()]
    smoothed += [faces[0].points for _, _, faces in tracker.finish()]
    return raw, smoothed


def face_box(frame: Frame) -> tuple[slice, slice]:
    """Rows and columns around the face (eyes to chin) of a synthetic frame."""
    centre, iod = frame.eye_centres.mean(axis=0), frame.inter_ocular
    return (slice(int(centre[1] - 0.6 * iod), int(centre[1] + 1.3 * iod)),
            slice(int(centre[0] - 0.9 * iod), int(centre[0] + 0.9 * iod)))


def mesh_jitter(sequence: list[np.ndarray]) -> np.ndarray:
    """RMS displacement of the 478 landmarks between consecutive frames, in IOD."""
    return np.array([
        np.sqrt(((after[:, :2] - before[:, :2]) ** 2).sum(axis=1).mean()) / inter_ocular_distance(before)
        for before, after in zip(sequence[:-1], sequence[1:], strict=True)
    ])


def test_every_frame_is_masked_in_order(masker: FaceMasker, nystagmus: list[Frame]) -> None:
    outputs = list(mask_frames(masker, (frame.rgb for frame in nystagmus)))
    assert len(outputs) == len(nystagmus)
    for frame, output in zip(nystagmus, outputs, strict=True):
        assert output.shape == frame.rgb.shape and output.dtype == np.uint8
        assert tuple(output[0, 0]) == FILL and tuple(output[-1, -1]) == FILL  # background filled
        rows, columns = face_box(frame)
        region, original = output[rows, columns].astype(int), frame.rgb[rows, columns].astype(int)
        assert np.abs(region - original).mean() > 20  # the face is replaced ...
        assert (region == FILL).all(axis=2).mean() < 0.2  # ... by a mask, not by the fill


def test_irises_of_the_mask_follow_the_gaze(masker: FaceMasker, nystagmus: list[Frame]) -> None:
    _, smoothed = tracked(masker, [frame.rgb for frame in nystagmus])
    drawn_error = [
        np.linalg.norm(points[[468, 473], :2] - frame.iris_centres, axis=1).mean() / frame.inter_ocular
        for points, frame in zip(smoothed, nystagmus, strict=True)
    ]
    assert np.median(drawn_error) <= 0.01

    redetected_error, gaze_out, gaze_true = [], [], []
    for frame, output in zip(nystagmus, mask_frames(masker, (frame.rgb for frame in nystagmus)), strict=True):
        points = masker.detect(output)[0].points
        irises = points[[468, 473], :2]
        eyes = np.stack([points[[33, 133], :2].mean(axis=0), points[[362, 263], :2].mean(axis=0)])
        redetected_error.append(np.linalg.norm(irises - frame.iris_centres, axis=1).mean() / frame.inter_ocular)
        gaze_out.append(((irises - eyes)[:, 0]).mean() / frame.inter_ocular)
        gaze_true.append(((frame.iris_centres - frame.eye_centres)[:, 0]).mean() / frame.inter_ocular)
    assert np.median(redetected_error) <= 0.02
    assert np.corrcoef(gaze_out, gaze_true)[0, 1] >= 0.9


def test_a_still_face_does_not_flicker(masker: FaceMasker, still_face: list[Frame]) -> None:
    raw, smoothed = tracked(masker, [frame.rgb for frame in still_face])
    assert np.median(mesh_jitter(smoothed)) < 0.003
    assert np.median(mesh_jitter(smoothed)) < np.median(mesh_jitter(raw)) / 2

    outputs = list(mask_frames(masker, (frame.rgb for frame in still_face)))
    rows, columns = face_box(still_face[0])
    changed = [
        (np.abs(after[rows, columns].astype(int) - before[rows, columns]).max(axis=2) > 24).mean()
        for before, after in zip(outputs[:-1], outputs[1:], strict=True)
    ]
    assert np.median(changed) < 0.01


def test_output_is_byte_identical_across_runs(masker: FaceMasker, nystagmus: list[Frame]) -> None:
    clip = [frame.rgb for frame in nystagmus[:15]]
    first = np.stack(list(mask_frames(masker, clip)))
    second = np.stack(list(mask_frames(masker, clip)))
    assert first.tobytes() == second.tobytes()


def test_a_short_gap_is_bridged(masker: FaceMasker, nystagmus: list[Frame]) -> None:
    clip = [frame.rgb for frame in nystagmus[:20]]
    blank = np.full_like(clip[0], 90)
    for index in range(8, 11):  # three frames in which no face can be found
        clip[index] = blank
    outputs = list(mask_frames(masker, clip))
    assert len(outputs) == 20
    for index in range(8, 11):
        rows, columns = face_box(nystagmus[index])
        assert (outputs[index][rows, columns] != FILL).any(axis=2).mean() > 0.5  # a mask is drawn


def test_a_long_gap_fails_closed_with_the_frame_numbers(masker: FaceMasker, nystagmus: list[Frame]) -> None:
    gap = masker.settings.max_gap_frames + 1
    clip = [frame.rgb for frame in nystagmus[:20]]
    for index in range(8, 8 + gap):
        clip[index] = np.full_like(clip[0], 90)
    with pytest.raises(TrackingGap, match=f"from frame 9 to frame {8 + gap}"):
        list(mask_frames(masker, clip))


def test_a_clip_without_a_face_fails_closed(masker: FaceMasker) -> None:
    fundus = cv2.resize(photo("retina"), (240, 240))
    with pytest.raises(TrackingGap, match="no face in frames 1 to"):
        list(mask_frames(masker, [fundus] * (masker.settings.max_gap_frames + 2)))
    with pytest.raises(NoFaceFound):
        list(mask_frames(masker, [fundus] * 2))


def test_an_unmasked_face_fails_closed_with_the_frame_number() -> None:
    two_faces = np.hstack([cv2.resize(photo("astronaut"), (360, 360)), cv2.resize(photo("grace_hopper"), (300, 360))])
    settings = MaskSettings(max_faces=1, background="keep")  # one mask only, the rest kept
    with FaceMasker(settings) as one_face_masker, pytest.raises(ResidualFace, match="frame 1"):
        list(mask_frames(one_face_masker, [two_faces] * 3))


def test_video_photographic_instance_round_trip(masker: FaceMasker, nystagmus: list[Frame]) -> None:
    clip = np.stack([frame.rgb for frame in nystagmus[:24]])
    source = video_instance(clip, "40")

    def masked_instance() -> bytes:
        ds = written_and_read(source)
        encode_frames(ds, mask_frames(masker, decode_frames(ds), frame_rate=25.0))
        return written_and_read(ds)

    tracemalloc.start()
    try:
        first = masked_instance()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < clip[0].nbytes * len(clip) / 2  # never the whole clip as RGB
    assert first.file_meta.TransferSyntaxUID == MPEG4HP41
    assert (first.NumberOfFrames, float(first.FrameTime), first.CineRate) == (24, 40.0, 25)
    frames = list(decode_frames(first))
    assert len(frames) == 24
    for frame, output in zip(nystagmus[:24], frames, strict=True):
        rows, columns = face_box(frame)
        assert np.abs(output[rows, columns].astype(int) - frame.rgb[rows, columns]).mean() > 20
        assert np.abs(output[:20, :20].astype(int) - FILL).max() <= 6  # fill, up to H.264 error
    assert masked_instance().PixelData == first.PixelData


def _face_points(points: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    return points + np.array([shift[0], shift[1], 0.0])


def test_tracker_keeps_smooth_motion_without_lag(astronaut_landmarks: np.ndarray) -> None:
    tracker = FaceTracker(max_gap_frames=5, frame_rate=30.0)
    truth = [_face_points(astronaut_landmarks, (3.0 * t + 0.2 * t * t, -1.5 * t)) for t in range(30)]
    emitted = []
    for index, points in enumerate(truth):
        tracker.add(np.zeros((2, 2, 3), np.uint8), [FaceLandmarks(points)])
        emitted += list(tracker.ready_frames())
        assert len(emitted) >= index + 1 - tracker.half_window  # frames flow out, none hoarded
    emitted += list(tracker.finish())
    assert [index for index, _, _ in emitted] == list(range(30))
    for (_, _, faces), points in zip(emitted, truth, strict=True):
        np.testing.assert_allclose(faces[0].points, points, atol=1e-6)


def test_tracker_interpolates_a_gap_and_follows_two_faces(astronaut_landmarks: np.ndarray) -> None:
    tracker = FaceTracker(max_gap_frames=4, frame_rate=30.0)
    left = [_face_points(astronaut_landmarks, (2.0 * t, 0.0)) for t in range(20)]
    right = [_face_points(astronaut_landmarks, (1000.0, 1.0 * t)) for t in range(20)]
    emitted = []
    for t in range(20):
        faces = [FaceLandmarks(right[t])] + ([] if 6 <= t < 10 else [FaceLandmarks(left[t])])
        tracker.add(np.zeros((2, 2, 3), np.uint8), faces[::-1] if t % 2 else faces)  # order varies
        emitted += list(tracker.ready_frames())
    emitted += list(tracker.finish())
    assert len(emitted) == 20
    for t, (_, _, faces) in enumerate(emitted):
        assert len(faces) == 2
        by_x = sorted(faces, key=lambda face: face.points[:, 0].mean())
        np.testing.assert_allclose(by_x[0].points, left[t], atol=1e-6)
        np.testing.assert_allclose(by_x[1].points, right[t], atol=1e-6)


def test_each_tracked_face_keeps_one_template_variation_for_the_clip(
    astronaut_landmarks: np.ndarray,
) -> None:
    """One template shape per face and clip (no flicker), drawn from that face's first landmarks,
    so two clips of the same patient do not share the template's proportions."""
    tracker = FaceTracker(max_gap_frames=4, frame_rate=30.0)
    left = [_face_points(astronaut_landmarks, (2.0 * t, 0.0)) for t in range(12)]
    right = [_face_points(astronaut_landmarks, (1000.0, 1.0 * t)) for t in range(12)]
    emitted = []
    for t in range(12):
        tracker.add(np.zeros((2, 2, 3), np.uint8), [FaceLandmarks(left[t]), FaceLandmarks(right[t])])
        emitted += list(tracker.ready_frames())
    emitted += list(tracker.finish())
    for _, _, faces in emitted:
        by_x = sorted(faces, key=lambda face: face.points[:, 0].mean())
        np.testing.assert_array_equal(by_x[0].variation, variation_of(left[0]))
        np.testing.assert_array_equal(by_x[1].variation, variation_of(right[0]))
    assert not np.array_equal(variation_of(left[0]), variation_of(right[0]))


def test_tracker_reports_where_the_face_was_lost(astronaut_landmarks: np.ndarray) -> None:
    tracker = FaceTracker(max_gap_frames=2)
    face = [FaceLandmarks(astronaut_landmarks)]
    frame = np.zeros((2, 2, 3), np.uint8)
    for detections in (face, face, [], []):
        tracker.add(frame, detections)
    with pytest.raises(TrackingGap, match="from frame 3 to frame 5"):
        tracker.add(frame, [])
