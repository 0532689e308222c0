"""The digital mask: faces replaced by a rendered, identity-free face that keeps the eyes.

``FaceMasker`` is the entry point; ``MaskSettings`` its options (``Profile.mask``);
``FaceLandmarks`` what ``FaceMasker.detect`` returns for frame sequences.
"""

from gateway.mask.landmarks import FaceLandmarks
from gateway.mask.masker import FaceMasker
from gateway.mask.settings import BackgroundPolicy, EyeRendering, MaskSettings
from gateway.mask.topology import Region

__all__ = ["BackgroundPolicy", "EyeRendering", "FaceLandmarks", "FaceMasker", "MaskSettings", "Region"]
