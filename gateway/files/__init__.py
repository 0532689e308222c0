"""Files: the file-and-folder batches behind `dmask mask` and `dmask deid`."""
