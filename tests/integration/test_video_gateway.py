"""A Video Photographic instance (H.264) through storescu -> dmask serve -> Orthanc."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import av
import numpy as np
import pydicom
from peers import DMASK, PEER_ENV, acknowledged, gateway_settings, orthanc_destination, storescu, wait_until
from pydicom.encaps import generate_fragments
from pydicom.uid import MPEG4HP41, VideoPhotographicImageStorage

from dicom_instances import PATIENT_ID, PATIENT_NAME, photo, photo_instance, write
from gateway.codec.pixels import decode_frames, encode_frames
from gateway.mask.masker import FaceMasker
from gateway.mask.settings import MaskSettings
from synthetic_clips import EyeMovementClip

FRAMES = 30


def _video_instance(folder: Path) -> tuple[Path, list[np.ndarray]]:
    """30 frames (1 s) of the nystagmus clip as an H.264 Video Photographic instance with PHI."""
    astronaut = photo("astronaut")
    with FaceMasker(MaskSettings()) as masker:
        landmarks = masker.detect(astronaut)[0].points
    frames = [frame.rgb for frame in EyeMovementClip(astronaut, landmarks, (480, 360), 90).frames(FRAMES)]
    ds = photo_instance(frames[0], sop_class_uid=VideoPhotographicImageStorage)
    ds.NumberOfFrames, ds.FrameTime, ds.CineRate = FRAMES, "33.3333", 30
    ds.FrameIncrementPointer = 0x00181063
    encode_frames(ds, iter(frames), MPEG4HP41)
    return write(ds, folder / "video.dcm"), frames


def test_video_reaches_orthanc_masked_playable_and_scrubbed(tmp_path: Path, orthanc, dmask_server) -> None:
    source, frames = _video_instance(tmp_path)
    server = dmask_server(gateway_settings(tmp_path, {"research": orthanc_destination(orthanc)}))
    # -R: only the contexts the file needs (Video Photographic is past storescu's 128 default ones)
    sent = storescu(server.port, [source], extra=["-R", "-xn"])  # -xn: H.264 HP / Level 4.1
    assert len(acknowledged(sent)) == 1, sent.stdout + sent.stderr
    wait_until(lambda: orthanc.instance_count() == 1, 180, "the video in Orthanc")

    instance = orthanc.instances()[0]
    data = orthanc.file(instance["ID"])
    result = pydicom.dcmread(io.BytesIO(data))
    assert result.SOPClassUID == VideoPhotographicImageStorage
    assert result.file_meta.TransferSyntaxUID == MPEG4HP41
    assert (result.NumberOfFrames, float(result.FrameTime), result.CineRate) == (FRAMES, 33.3333, 30)
    assert str(result.PatientName) != PATIENT_NAME and result.PatientID != PATIENT_ID
    assert result.RecognizableVisualFeatures == "NO"
    assert orthanc.tags(instance["ID"])["NumberOfFrames"] == str(FRAMES)  # Orthanc parsed it

    # Playable: FFmpeg (what ffprobe uses) opens the stored bitstream, one video stream only.
    with av.open(io.BytesIO(b"".join(generate_fragments(result.PixelData)))) as container:
        assert [stream.type for stream in container.streams] == ["video"]
        assert sum(1 for _ in container.decode(video=0)) == FRAMES
    fill = MaskSettings().fill_color
    for original, masked in zip(frames, decode_frames(result), strict=True):
        assert np.abs(masked[:16, :16].astype(int) - fill).max() <= 6
        face = np.s_[120:260, 170:310]
        assert np.abs(masked[face].astype(int) - original[face]).mean() > 20

    result_path = tmp_path / "out.dcm"
    result_path.write_bytes(data)
    audit = subprocess.run([str(DMASK), "audit", "phi", str(source), str(result_path),
                            "--profile", "face-photos", "--config", str(server.config)],
                           capture_output=True, text=True, env=PEER_ENV)
    assert audit.returncode == 0, audit.stdout + audit.stderr
