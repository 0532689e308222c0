"""What the tests and benchmarks build and start, one module per concern.

- ``photos``: RGB photos shipped inside installed packages (faces, a fundus, no face).
- ``pixels``: pixel content of instances (native RGB Pixel Data, a ramp, PSNR).
- ``instances``: DICOM datasets (photographic instances with PHI, minimal RGB and video
  instances) and their trip through a Part 10 file.
- ``corpus``: the planted-value corpus for de-identification (a value in every Table E.1-1
  attribute).
- ``clips``: eye-movement clips synthesised from a face photo, with the truth of every frame.
- ``keys``: the pseudonym key of the tests and its file.
- ``cli``: ``dmask`` as a separate process, and a configuration for it.
- ``loopback``: ports and HTTP on 127.0.0.1.
- ``certificates``: a throw-away CA and certificates for TLS.
- ``peers``: Orthanc, dcmtk and ``dmask serve`` as real peers.
"""
