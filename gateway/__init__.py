"""dmask: a DICOM gateway that masks faces and de-identifies attributes."""

__version__ = "0.1.0"
