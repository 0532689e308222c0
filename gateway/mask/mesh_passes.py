"""Face Mesh in two steps, for looking at one drawing several times (``gateway.mask.refine``).

Face Mesh (mediapipe's face landmark graph for still images) runs its short-range face detector
on the whole image it is given, turns each detection into a region (a square around the face,
turned to the line through the eyes) and runs its landmark model on that region. ``find`` runs
the whole graph and also reports the region each face was read in; ``again`` runs the landmark
model alone on a region, through mediapipe's own landmark subgraph (``FaceLandmarkCpu``) and
model from the installed wheel. On the same image and region it gives exactly the landmarks the
whole graph gives, without the cost of the detector (docs/results.md).

Both graphs run their models as mediapipe does on desktop Linux, on one thread each (XNNPACK's
default there): the gateway runs one worker process per core, and with two threads, which give
the same landmarks, a pass on busy cores took many times as long (docs/results.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mediapipe.framework.formats import landmark_pb2, rect_pb2
from mediapipe.python.solution_base import SolutionBase

#: mediapipe's Face Mesh graph for the CPU, as ``mediapipe.solutions.face_mesh`` loads it.
FACE_MESH_GRAPH = "mediapipe/modules/face_landmark/face_landmark_front_cpu.binarypb"
#: The detector's score threshold and the landmark model's face presence threshold, by the
#: names mediapipe gives their calculators once its subgraphs are expanded.
DETECTION_THRESHOLD = (
    "facedetectionshortrangecpu__facedetectionshortrange__facedetection__TensorsToDetectionsCalculator"
    ".min_score_thresh"
)
PRESENCE_THRESHOLD = "facelandmarkcpu__ThresholdingCalculator.threshold"
#: The presence Face Mesh requires of a still's face (``FaceMesh``'s default): the landmark
#: model's own face/no-face score on the region.
PRESENCE = 0.5
#: The landmark model alone: an image and a region in, the landmarks (with the irises) out.
LANDMARK_GRAPH = """
input_stream: "IMAGE:image"
input_stream: "ROI:region"
input_side_packet: "WITH_ATTENTION:with_attention"
output_stream: "LANDMARKS:landmarks"
node {
  calculator: "FaceLandmarkCpu"
  input_stream: "IMAGE:image"
  input_stream: "ROI:region"
  input_side_packet: "WITH_ATTENTION:with_attention"
  output_stream: "LANDMARKS:landmarks"
}
"""


@dataclass(frozen=True)
class FoundFace:
    """One face the whole graph found: its landmarks (as mediapipe reports them, normalised to
    the image) and the region the landmark model read them in (None when it cannot be told)."""

    landmarks: landmark_pb2.NormalizedLandmarkList
    region: rect_pb2.NormalizedRect | None


class FaceMeshPasses:
    """The whole Face Mesh graph and its landmark model alone; one of each per process.

    Parameters
    ----------
    max_faces
        The most faces ``find`` reports.
    detection_confidence
        The detector's minimum score for a face.
    """

    def __init__(self, max_faces: int, detection_confidence: float) -> None:
        self._whole = SolutionBase(
            binary_graph_path=FACE_MESH_GRAPH,
            side_inputs={"num_faces": max_faces, "with_attention": True, "use_prev_landmarks": False},
            calculator_params={DETECTION_THRESHOLD: detection_confidence, PRESENCE_THRESHOLD: PRESENCE},
            outputs=["multi_face_landmarks", "face_rects"],
        )
        self._landmarks = SolutionBase(
            graph_config=LANDMARK_GRAPH,
            side_inputs={"with_attention": True},
            calculator_params={PRESENCE_THRESHOLD: PRESENCE},
            outputs=["landmarks"],
        )

    def close(self) -> None:
        """Release both graphs."""
        self._whole.close()
        self._landmarks.close()

    def find(self, rgb: np.ndarray) -> list[FoundFace]:
        """Every face the whole graph finds in ``rgb`` (HxWx3 uint8, contiguous).

        The graph reports the regions it read faces in and the landmarks of those whose presence
        passed, each in the same order: when every region gave landmarks, the two lists pair up;
        otherwise no region is told.
        """
        result = self._whole.process({"image": rgb})
        faces = result.multi_face_landmarks or []
        regions = result.face_rects or []
        if len(regions) != len(faces):
            regions = [None] * len(faces)
        return [FoundFace(landmarks, region) for landmarks, region in zip(faces, regions, strict=True)]

    def again(self, rgb: np.ndarray, region: rect_pb2.NormalizedRect) -> landmark_pb2.NormalizedLandmarkList | None:
        """The landmark model alone on ``region`` of ``rgb``; None when it finds no face there."""
        landmarks: landmark_pb2.NormalizedLandmarkList | None = self._landmarks.process(
            {"image": rgb, "region": region}
        ).landmarks
        return landmarks
