"""The ``dmask`` command line.

Command bodies stay thin: they parse arguments, call into the module that owns the work and turn
typed errors into a message and an exit code. Nothing here knows how masking or scrubbing works.
"""

from __future__ import annotations

import typer

from gateway import __version__

app = typer.Typer(
    name="dmask",
    help="DICOM gateway that replaces faces with a digital mask and de-identifies attributes.",
    no_args_is_help=True,
    add_completion=False,
)
audit_app = typer.Typer(
    help="Check what leaves the gateway: attribute leaks (phi) and face re-identification (privacy).",
    no_args_is_help=True,
)
app.add_typer(audit_app, name="audit")


@app.command()
def version() -> None:
    """Print the dmask version."""
    typer.echo(__version__)
