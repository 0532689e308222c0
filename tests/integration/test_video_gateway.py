"""A Video Photographic instance (H.264) through storescu -> dmask serve -> Orthanc."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pydicom
from pydicom.encaps import generate_fragments
from pydicom.uid import MPEG4HP41, VideoPhotographicImageStorage

from gateway.codec.pixels import decode_frames
from gateway.mask.masker import FaceMasker
from gateway.mask.settings import MaskSettings
from tests.support.clips import astronaut_clip
from tests.support.instances import PATIENT_ID, PATIENT_NAME, video_instance, write
from tests.support.peers import acknowledged, gateway_settings, orthanc_destination, storescu, wait_until

FRAMES = 30


def test_video_reaches_orthanc_masked_playable_and_scrubbed(tmp_path: Path, masker: FaceMasker, orthanc,
                                                            dmask_server) -> None:
    # 30 frames (1 s) of the nystagmus clip as an H.264 Video Photographic instance with PHI.
    frames = [frame.rgb for frame in astronaut_clip(masker, (480, 360), 90).frames(FRAMES)]
    source = write(video_instance(frames, "33.3333", with_phi=True), tmp_path / "video.dcm")
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
    server.command("audit", "phi", source, result_path, "--profile", "face-photos")
