"""The ``dmask`` command line.

Command bodies stay thin: they parse arguments, call into the module that owns the work and turn
typed errors into a message and an exit code. Nothing here knows how masking or scrubbing works.
"""

from __future__ import annotations

import sys
from pathlib import Path

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


DEFAULT_CONFIG = Path("config/gateway.yaml")
EXIT_CONFIG_ERROR = 2


@app.command()
def version() -> None:
    """Print the dmask version."""
    typer.echo(__version__)


@app.command("check-config")
def check_config(
    path: Path = typer.Argument(DEFAULT_CONFIG, help="The YAML configuration to validate."),
    reference: bool = typer.Option(
        False, "--reference", help="Print the configuration reference (markdown) and exit."
    ),
) -> None:
    """Validate a configuration file; on error print every problem with key path and line.

    Exit status 0 when the file (with DMASK__ environment overrides and the secret) is valid,
    2 when it is not.
    """
    from gateway.config import config_reference, load_config
    from gateway.errors import ConfigError

    if reference:
        typer.echo(config_reference(), nl=False)
        return
    try:
        config = load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_CONFIG_ERROR) from None
    typer.echo(
        f"{path}: OK ({len(config.routes)} routes, {len(config.profiles)} profiles, "
        f"{len(config.destinations)} destinations)"
    )


@audit_app.command("privacy")
def audit_privacy(
    faces: Path = typer.Option(..., help="Folder with one sub-folder per person, two photos or more each."),
    transform: str = typer.Option(
        "none,blur,pixelate,eyecrop,eyebar",
        help="Comma-separated transforms: none, blur, pixelate, eyecrop, eyebar, "
        "mask, mask:KEY=VALUE[:KEY=VALUE...], mask@PROFILE.",
    ),
    report: Path = typer.Option(Path("reports/privacy"), help="Folder for report.json, report.md, sheet.png."),
    config: Path | None = typer.Option(None, help="Gateway configuration whose profiles mask@PROFILE names."),
    seed: int = typer.Option(7050, help="Seed of the line-up draws."),
) -> None:
    """Measure how well face transforms resist re-identification and keep the eyes readable."""
    from gateway.audit.privacy import load_face_set, run_privacy_audit
    from gateway.audit.report import write_report
    from gateway.audit.transforms import transform_from_spec
    from gateway.errors import DmaskError

    try:
        mask_profiles = {}
        if config is not None:
            from gateway.config import load_config

            mask_profiles = {name: p.mask for name, p in load_config(config).profiles.items()}
        transforms = [transform_from_spec(s.strip(), mask_profiles) for s in transform.split(",") if s.strip()]
        face_set = load_face_set(faces)
        with typer.progressbar(length=len(face_set.photos), label="photos", file=sys.stderr) as bar:
            result = run_privacy_audit(face_set, transforms, seed=seed, progress=bar.update)
    except DmaskError as exc:
        typer.echo(f"audit privacy: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG_ERROR) from None
    for path in write_report(result, report):
        typer.echo(path)


if __name__ == "__main__":
    app()
