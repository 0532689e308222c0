"""Running ``dmask`` as a separate process, the way an admin does, with a configuration for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.keys import write_key

DMASK = Path(sys.executable).with_name("dmask")

CONFIG = """\
listener: {{ae_title: DMASK, port: 11112, allowed_callers: [{{ae_title: CAMERA1}}]}}
destinations: {{out: {{type: folder, path: {out}}}}}
profiles:
  tags: {{mask: null, deid: {{}}}}
  keep-ref: {{mask: null, deid: {{keep: [ReferencedImageSequence]}}}}
  modified-dates: {{mask: null, deid: {{options: [retain_longitudinal_modified_dates]}}}}
  keep-text: {{mask: null, burned_in_text: {{action: keep}}}}
  refuse-text: {{mask: null, burned_in_text: {{action: refuse}}}}
  masking: {{}}
routes: [{{name: all, match: {{}}, profile: tags, destinations: [out]}}]
secret: {{file: {key}}}
"""


def write_config(folder: Path) -> Path:
    """A gateway configuration with a few profiles and a key file, in ``folder``."""
    key = write_key(folder / "pseudonym.key")
    config = folder / "gateway.yaml"
    config.write_text(CONFIG.format(out=folder / "out", key=key))
    return config


def dmask(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the ``dmask`` console script in a new process."""
    return subprocess.run([str(DMASK), *map(str, args)], capture_output=True, text=True, timeout=120)
