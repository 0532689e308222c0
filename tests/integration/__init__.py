"""Tests against real peers: Orthanc, dcmtk and ``dmask serve`` as separate processes."""
