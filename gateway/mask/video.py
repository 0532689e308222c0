"""The mask over a frame sequence: faces tracked, landmarks smoothed in time, short gaps bridged.

A still is masked from its own landmarks; a clip cannot be, because Face Mesh landmarks found
frame by frame jitter and the mask would shimmer. Each face is followed from frame to frame
(Face Mesh tracking mode), frames where the tracker briefly loses it get landmarks interpolated
between the frames on either side of the gap, and every landmark is smoothed in time by a local
quadratic fit over a short window centred on the frame (a Savitzky-Golay filter).

Why centred and not causal: a causal filter such as the One Euro filter must trade lag for
smoothness. On synthetic nystagmus clips, One Euro settings that smoothed a still face as well
lagged the irises, and settings that kept up with the irises left the jitter. A centred
quadratic fit over +/- 0.1 s has no lag for motion that is locally smooth, keeps peaks (blinks,
nystagmus beats) far better than an average, and gave both a small iris error and little jitter
on the same clips (docs/results.md). The price is a delay of 0.1 s, which only matters for live
display, not for a gateway.

A gap longer than ``MaskSettings.max_gap_frames`` fails closed with :class:`TrackingGap`, and so
does a clip whose first ``max_gap_frames + 1`` frames have no face; a clip with no face at all
raises :class:`NoFaceFound`. Frames are consumed and produced one at a time; only the frames of
the smoothing window and of an open gap are held, so a long clip never sits in memory as decoded
RGB. Frame numbers in error messages are 1-based, like DICOM's Frame Number.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from gateway.errors import NoFaceFound, ResidualFace, TrackingGap
from gateway.mask.geometry import eye_centres, variation_of
from gateway.mask.interface import ClipMasker, MaskedImage
from gateway.mask.landmarks import FaceLandmarks

DEFAULT_FRAME_RATE = 30.0
"""Frames per second assumed when the caller does not know the clip's rate."""

SMOOTHING_HALF_WINDOW_S = 0.1
"""Half the smoothing window in seconds: 3 frames either side at 30 frames/s. A quadratic over
7 frames passes motion up to about 5 Hz (nystagmus beats, lid closure) and removes the
frame-to-frame jitter above it."""

SAME_FACE_DISTANCE = 0.5
"""A detection continues a track when its eye midpoint is within this many inter-ocular
distances of the track's last one."""


def inter_ocular_distance(points: np.ndarray) -> float:
    """Distance between the centres of the eye openings, the scale faces are measured in."""
    right, left = eye_centres(points)
    return float(np.linalg.norm((left - right)[:2]))


@functools.lru_cache(maxsize=256)
def _fit_weights(offsets: tuple[int, ...]) -> np.ndarray:
    """Weights that evaluate, at offset 0, the least-squares polynomial through samples at
    `offsets` (quadratic, or lower when there are fewer than three samples)."""
    times = np.array(offsets, dtype=np.float64)
    degree = min(2, len(offsets) - 1)
    design = np.vander(times, degree + 1, increasing=True)
    return np.linalg.pinv(design)[0]


@dataclass
class _Track:
    """One face followed through the clip: its raw (detected or interpolated) landmarks."""

    number: int
    first_frame: int
    #: Landmarks per frame index, detected or interpolated across a gap; old frames are pruned.
    raw: dict[int, np.ndarray] = field(default_factory=dict)
    last_frame: int = -1
    #: Frame indices after ``last_frame`` in which the tracker did not see this face.
    missing: list[int] = field(default_factory=list)
    #: The template variation of this face, drawn once from its first landmarks: fixed for the
    #: whole clip (no change of shape between frames), different from clip to clip, so that masks
    #: of the same patient in two clips are not linked by the template's proportions.
    variation: np.ndarray | None = None

    @property
    def last_points(self) -> np.ndarray:
        return self.raw[self.last_frame]

    def centre(self) -> np.ndarray:
        right, left = eye_centres(self.last_points)
        return (right + left)[:2] / 2

    def smoothed(self, index: int, half_window: int) -> np.ndarray:
        """The local quadratic fit of this face's landmarks at frame `index`."""
        offsets = tuple(
            other - index for other in range(index - half_window, index + half_window + 1) if other in self.raw
        )
        weights = _fit_weights(offsets)
        return np.tensordot(weights, np.stack([self.raw[index + offset] for offset in offsets]), axes=1)


class FaceTracker:
    """Turns per-frame detections into smoothed, gap-free landmarks per face.

    Feed frames in order with :meth:`add`; frames come back from :meth:`ready_frames` (and
    :meth:`finish` at the end of the clip) with their faces' landmarks, in order, as soon as
    the smoothing window after them is complete and no gap is open.

    Parameters
    ----------
    max_gap_frames
        The longest run of frames in which a face may go undetected and be interpolated.
    frame_rate
        Frames per second; the smoothing window is a fixed time, not a fixed frame count.
    """

    def __init__(self, max_gap_frames: int, frame_rate: float = DEFAULT_FRAME_RATE) -> None:
        self.max_gap_frames = max_gap_frames
        self.half_window = max(1, round(SMOOTHING_HALF_WINDOW_S * frame_rate))
        self._tracks: list[_Track] = []
        self._pending: deque[tuple[int, np.ndarray]] = deque()
        self._count = 0

    def add(self, rgb: np.ndarray, detections: list[FaceLandmarks]) -> None:
        """Take the next frame and the faces the detector found in it.

        Raises
        ------
        TrackingGap
            A face has now been missing for more than ``max_gap_frames`` frames, or no face was
            found in the first ``max_gap_frames + 1`` frames.
        """
        index = self._count
        self._count += 1
        self._pending.append((index, rgb))
        unmatched = list(self._tracks)
        for face in detections:
            track = self._match(face.points, unmatched)
            if track is None:
                track = self._start(index)
            else:
                unmatched.remove(track)
            self._observe(track, face.points, index)
        for track in unmatched:
            track.missing.append(index)
            if len(track.missing) > self.max_gap_frames:
                raise TrackingGap(
                    f"a face was lost from frame {track.missing[0] + 1} to frame {index + 1}, "
                    f"more than {self.max_gap_frames} frames"
                )
        if not self._tracks and index >= self.max_gap_frames:
            raise TrackingGap(f"no face in frames 1 to {index + 1}")

    def ready_frames(self) -> Iterator[tuple[int, np.ndarray, list[FaceLandmarks]]]:
        """Frames whose faces are all known, with their smoothed landmarks, in order."""
        while self._pending and self._tracks and self._is_ready(self._pending[0][0]):
            yield self._emit()

    def finish(self) -> Iterator[tuple[int, np.ndarray, list[FaceLandmarks]]]:
        """The remaining frames at the end of the clip; a face missing at the very end holds
        its last landmarks (it was seen at most ``max_gap_frames`` frames before).

        Raises
        ------
        NoFaceFound
            No face was found in any frame.
        """
        if not self._tracks:
            raise NoFaceFound(f"no face found in any of the {self._count} frames")
        for track in self._tracks:
            for index in track.missing:
                track.raw[index] = track.last_points
            track.missing.clear()
        while self._pending:
            yield self._emit()

    def _is_ready(self, index: int) -> bool:
        """Every face present at `index` has landmarks for the whole window after it."""
        horizon = index + self.half_window
        return all(track.last_frame >= horizon for track in self._tracks if track.first_frame <= index)

    def _emit(self) -> tuple[int, np.ndarray, list[FaceLandmarks]]:
        index, rgb = self._pending.popleft()
        faces = [
            FaceLandmarks(track.smoothed(index, self.half_window), variation=track.variation)
            for track in self._tracks
            if track.first_frame <= index
        ]
        oldest_needed = index + 1 - self.half_window  # what the next frame's window reaches back to
        for track in self._tracks:
            for old in [frame for frame in track.raw if frame < oldest_needed and frame != track.last_frame]:
                del track.raw[old]
        return index, rgb, faces

    def _match(self, points: np.ndarray, candidates: list[_Track]) -> _Track | None:
        """The candidate track whose eyes are nearest to these, if near enough to be the same face."""
        right, left = eye_centres(points)
        centre = (right + left)[:2] / 2
        best, best_distance = None, SAME_FACE_DISTANCE
        for track in candidates:
            distance = float(np.linalg.norm(centre - track.centre())) / inter_ocular_distance(track.last_points)
            if distance < best_distance:
                best, best_distance = track, distance
        return best

    def _start(self, index: int) -> _Track:
        """A new track. The first face of the clip also covers the frames before it (the
        tracker may need a frame or two to lock on); a face that appears later starts where it
        is first seen."""
        first_frame = self._pending[0][0] if not self._tracks else index
        track = _Track(number=len(self._tracks), first_frame=first_frame)
        self._tracks.append(track)
        return track

    def _observe(self, track: _Track, points: np.ndarray, index: int) -> None:
        """Record detected landmarks, interpolating linearly across the gap before them."""
        if track.last_frame < 0:
            track.variation = variation_of(points)
            for earlier in range(track.first_frame, index):
                track.raw[earlier] = points
        elif track.missing:
            span = index - track.last_frame
            for earlier in track.missing:
                weight = (earlier - track.last_frame) / span
                track.raw[earlier] = (1 - weight) * track.last_points + weight * points
            track.missing.clear()
        track.raw[index] = points
        track.last_frame = index


def mask_frames(
    masker: ClipMasker, frames: Iterable[np.ndarray], frame_rate: float = DEFAULT_FRAME_RATE
) -> Iterator[np.ndarray]:
    """Mask every frame of a clip with tracked, smoothed landmarks; one frame in, one frame out.

    Parameters
    ----------
    masker
        The worker's masker (a :class:`~gateway.mask.FaceMasker`); its tracker is reset so the
        clip starts from nothing.
    frames
        ``H x W x 3`` ``uint8`` RGB frames in order; consumed one at a time.
    frame_rate
        Frames per second of the clip (the smoothing window is 0.2 s).

    Yields
    ------
    numpy.ndarray
        The masked frames, as many as came in, in order.

    Raises
    ------
    TrackingGap
        A face went undetected for more than ``max_gap_frames`` consecutive frames.
    NoFaceFound
        No frame of the clip has a face.
    ResidualFace
        The independent detector finds an unmasked face on an output frame.
    """
    for masked in masked_frames(masker, frames, frame_rate):
        yield masked.rgb


def masked_frames(
    masker: ClipMasker, frames: Iterable[np.ndarray], frame_rate: float = DEFAULT_FRAME_RATE
) -> Iterator[MaskedImage]:
    """As :func:`mask_frames`, each frame with the area its masks rendered (same errors)."""
    masker.reset_tracking()
    tracker = FaceTracker(masker.settings.max_gap_frames, frame_rate)
    for rgb in frames:
        tracker.add(rgb, masker.detect(rgb, tracking=True))
        yield from _rendered(masker, tracker.ready_frames())
    yield from _rendered(masker, tracker.finish())


def _rendered(
    masker: ClipMasker, ready: Iterator[tuple[int, np.ndarray, list[FaceLandmarks]]]
) -> Iterator[MaskedImage]:
    for index, rgb, faces in ready:
        output = masker.render(rgb, faces)
        try:
            masker.check_residual(output, faces)
        except ResidualFace as exc:
            raise ResidualFace(f"frame {index + 1}: {exc}") from exc
        yield MaskedImage(output, masker.rendered_area(rgb.shape, faces))
