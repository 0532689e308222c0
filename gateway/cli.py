"""The ``dmask`` command line.

Command bodies stay thin: they parse arguments, call into the module that owns the work and turn
typed errors into a message and an exit code. Nothing here knows how masking or scrubbing works.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

from gateway import __version__

if TYPE_CHECKING:
    from gateway.config import GatewayConfig, Profile
    from gateway.errors import ConfigError, SpoolFull, SpoolSchemaError
    from gateway.store.queue import QueueAdmin

app = typer.Typer(
    name="dmask",
    help="DICOM gateway that replaces faces with a digital mask and de-identifies attributes.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",  # docstring paragraphs are reflowed to the terminal's width
)
audit_app = typer.Typer(
    help="Check what leaves the gateway: attribute leaks (phi) and face re-identification (privacy).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(audit_app, name="audit")
db_app = typer.Typer(help="The shared queue's database (spool.backend: postgresql).",
                     no_args_is_help=True, rich_markup_mode="markdown")
app.add_typer(db_app, name="db")


DEFAULT_CONFIG = Path("config/gateway.yaml")
EXIT_CONFIG_ERROR = 2
"""Exit status of a command that cannot start: bad configuration, arguments or input layout, or a
spool it cannot use."""


def _exit_on_config_error(error: ConfigError) -> NoReturn:
    """Print every problem of the configuration (key path and line) and exit with status 2."""
    typer.echo(str(error), err=True)
    raise typer.Exit(EXIT_CONFIG_ERROR)


def _load_config(path: Path, *, check_secret: bool = True) -> GatewayConfig:
    """The validated configuration, or exit with status 2."""
    from gateway.config import load_config
    from gateway.errors import ConfigError

    try:
        return load_config(path, check_secret=check_secret)
    except ConfigError as exc:
        _exit_on_config_error(exc)


@app.command()
def version() -> None:
    """Print the dmask version."""
    typer.echo(__version__)


@app.command("check-config")
def check_config(
    path: Path = typer.Argument(DEFAULT_CONFIG, help="The YAML configuration to validate."),
    reference: bool = typer.Option(
        False, "--reference", help="Print the configuration reference (the table in docs/configuration.md) and exit."
    ),
) -> None:
    """Validate a configuration file; on error print every problem with key path and line.

    Exit status 0 when the file (with DMASK__ environment overrides and the secret) is valid,
    2 when it is not.
    """
    from gateway.config import config_reference

    if reference:
        typer.echo(config_reference(), nl=False)
        return
    config = _load_config(path)
    typer.echo(
        f"{path}: OK ({len(config.routes)} routes, {len(config.profiles)} profiles, "
        f"{len(config.destinations)} destinations)"
    )


@app.command()
def keygen(
    path: Path = typer.Argument(..., help="The key file to create (the configuration's secret.file)."),
) -> None:
    """Create a pseudonym key file: 32 random bytes as hex, mode 0600, missing folders 0700.

    An existing file is never overwritten (exit status 2): pseudonyms and UIDs stay consistent
    only with the key they were made with.
    """
    from gateway.errors import KeyFileError
    from gateway.keyfile import create_key_file

    try:
        create_key_file(path)
    except KeyFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_CONFIG_ERROR) from None
    typer.echo(f"created {path} (keep it: pseudonyms and UIDs stay consistent only with the same key)")


@audit_app.command("privacy")
def audit_privacy(
    faces: Path = typer.Option(..., help="Folder with one sub-folder per person, two photos or more each."),
    transform: str = typer.Option(
        "none,blur,pixelate,eyecrop,eyebar",
        help="Comma-separated transforms: none, blur, pixelate, eyecrop, eyebar, jpeg75 (the noise floor), "
        "mask, mask:KEY=VALUE[:KEY=VALUE...], mask@PROFILE.",
    ),
    report: Path = typer.Option(Path("reports/privacy"), help="Folder for report.json, report.md, sheet.png."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Gateway configuration whose profiles mask@PROFILE names."
    ),
    seed: int = typer.Option(7050, help="Seed of the line-up draws."),
    draws: int = typer.Option(1, min=1, help="Line-ups per probe (more give steadier line-up rates)."),
    jobs: int = typer.Option(0, min=0, help="Worker processes; 0 = one per CPU, at most 4."),
    closed_mouths: Path | None = typer.Option(
        None, help="File listing the photos (person/file) labelled as showing a closed mouth."
    ),
) -> None:
    """Measure how well face transforms resist re-identification and keep the eyes readable."""
    from gateway.audit.mouths import read_labels
    from gateway.audit.privacy import MAX_DEFAULT_JOBS, load_face_set, run_privacy_audit
    from gateway.audit.report import write_report
    from gateway.audit.transforms import transform_from_spec
    from gateway.errors import DmaskError

    mask_profiles = {}
    if config is not None:
        profiles = _load_config(config, check_secret=False).profiles  # the audit needs no key
        mask_profiles = {name: p.mask for name, p in profiles.items()}
    try:
        transforms = [transform_from_spec(s.strip(), mask_profiles) for s in transform.split(",") if s.strip()]
        face_set = load_face_set(faces)
        labels = frozenset() if closed_mouths is None else read_labels(closed_mouths)
        with typer.progressbar(length=len(face_set.photos), label="photos", file=sys.stderr) as bar:
            jobs = jobs or min(os.cpu_count() or 1, MAX_DEFAULT_JOBS)
            result = run_privacy_audit(
                face_set, transforms, seed=seed, draws=draws, progress=bar.update, jobs=jobs, closed_mouths=labels
            )
        paths = write_report(result, report)
    except DmaskError as exc:
        typer.echo(f"audit privacy: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG_ERROR) from None
    for path in paths:
        typer.echo(path)


def _named_profile(config: Path, profile: str, *, with_secret: bool = True) -> tuple[Profile, bytes]:
    """A named profile of the configuration and the pseudonym key (b"" when not asked for), or
    exit with status 2."""
    from gateway.errors import ConfigError

    loaded = _load_config(config, check_secret=with_secret)
    try:
        secret = loaded.load_secret() if with_secret else b""
    except ConfigError as exc:  # the key was readable when the configuration was checked
        _exit_on_config_error(exc)
    if profile not in loaded.profiles:
        typer.echo(f"{config}: no profile {profile!r} (have: {', '.join(loaded.profiles)})", err=True)
        raise typer.Exit(EXIT_CONFIG_ERROR)
    return loaded.profiles[profile], secret


@app.command("mask")
def mask(
    inputs: list[Path] = typer.Argument(
        ..., exists=True, help="Photos (JPEG, PNG), videos (MP4, MOV), DICOM files or folders."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the masked files."),
    profile: str | None = typer.Option(
        None, help="Profile to apply (default: the first masking profile of --config, else the mask defaults)."
    ),
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="Gateway configuration (profiles, secret)."),
    preview: bool = typer.Option(False, "--preview", help="Also write a side-by-side PNG next to each output."),
) -> None:
    """Replace every face in photos and DICOM files with the digital mask.

    Photos and videos keep their format (videos: H.264, no audio); DICOM files (video ones
    included) go through the gateway pipeline with the profile
    (masked and de-identified). Burned-in text is then redacted, refused or kept as the profile
    says (default: redacted), in every kind of file. Each output keeps the input's relative path under OUTPUT. A
    refused file is reported with its reason and the batch goes on; the exit status is 1 when
    any file was refused.
    """
    from gateway.errors import ConfigError
    from gateway.files.mask_batch import MaskBatch, resolve_profile
    from gateway.files.plan import plan_files
    from gateway.mask.masker import FaceMasker

    try:
        chosen = resolve_profile(config, profile)
    except ConfigError as exc:
        # Problems of the file already name it (with the line); those of the profile do not.
        message = str(exc)
        typer.echo(message if message.startswith(str(config)) else f"{config}: {message}", err=True)
        raise typer.Exit(EXIT_CONFIG_ERROR) from None
    jobs = plan_files(inputs, output)
    refused = 0
    with FaceMasker(chosen.settings, key=chosen.secret) as masker:
        for outcome in MaskBatch(masker, chosen, preview).run(jobs):
            if outcome.error is not None:
                refused += 1
                typer.echo(f"{outcome.job.source}: {outcome.error.reason}: {outcome.error}", err=True)
    typer.echo(f"{len(jobs) - refused} masked, {refused} refused, in {output}")
    if refused:
        raise typer.Exit(1)


@app.command()
def deid(
    inputs: list[Path] = typer.Argument(..., exists=True, help="DICOM files or folders."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the de-identified files."),
    profile: str = typer.Option(..., help="Profile whose deid settings and burned-in text step apply."),
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="Gateway configuration (profiles, secret)."),
    preview: bool = typer.Option(
        False, "--preview", help="Also write a side-by-side PNG, the filled text outlined, next to each output."
    ),
) -> None:
    """De-identify attributes of DICOM files, and the text burned into their pixels (faces are not masked).

    The profile's burned-in text step runs as on the gateway's tags-only routes (redact, refuse
    or keep; instances without Pixel Data are only scrubbed). Each output keeps the input's
    relative path under OUTPUT. A file that fails (or is refused for its text) is reported and
    the batch goes on; the exit status is 1 when any file failed.
    """
    from gateway.files.deid_batch import DeidBatch
    from gateway.files.plan import plan_files

    chosen, secret = _named_profile(config, profile)
    jobs = plan_files(inputs, output)
    failed = redacted = text_left = 0
    with typer.progressbar(
        DeidBatch(chosen, secret, profile, preview).run(jobs), length=len(jobs), label="deid",
        file=sys.stderr, hidden=len(jobs) < 10,
    ) as outcomes:
        for outcome in outcomes:
            if outcome.error is not None:
                failed += 1
                typer.echo(f"\n{outcome.job.source}: {outcome.error.reason}: {outcome.error}", err=True)
            elif outcome.burned_in_text.startswith("redacted"):
                redacted += 1
                if outcome.burned_in_text.endswith("text left"):
                    text_left += 1
                    typer.echo(f"\n{outcome.job.source}: burned-in text still found after redaction "
                               "(Burned In Annotation YES)", err=True)
    typer.echo(f"{len(jobs) - failed} de-identified, {failed} failed, in {output}")
    if redacted:
        typer.echo(f"burned-in text redacted in {redacted} file(s), still found in {text_left}")
    if failed:
        raise typer.Exit(1)


@audit_app.command("phi")
def audit_phi(
    original: Path = typer.Argument(..., exists=True, help="Input file (or folder)."),
    deidentified: Path = typer.Argument(..., exists=True, help="Its de-identified output (or folder)."),
    profile: str | None = typer.Option(None, help="Profile that made the output: its keeps are not leaks."),
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="Gateway configuration naming --profile."),
    show_values: bool = typer.Option(False, help="Print the leaked values (patient data!)."),
) -> None:
    """Report every identifying value of ORIGINAL that still appears in DEIDENTIFIED.

    Folders are compared file by file at the same relative paths (as ``dmask deid`` writes
    them). Exit status 1 on any leak, 2 when the files cannot be read.
    """
    from gateway.audit.phi import audit_pairs, pair_files
    from gateway.errors import DmaskError

    plan = None
    if profile is not None:
        from gateway.deid.plan import compile_plan

        chosen, _ = _named_profile(config, profile, with_secret=False)
        plan = compile_plan(chosen.deid)
    pairs, unpaired = pair_files(original, deidentified)
    for source in unpaired:
        typer.echo(f"{source}: no de-identified counterpart, not compared", err=True)
    try:
        results = audit_pairs(pairs, plan)
    except DmaskError as exc:
        typer.echo(f"audit phi: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG_ERROR) from None
    total = 0
    for pair, leaks in results:
        for leak in leaks:
            value = f" {leak.value!r}" if show_values else ""
            typer.echo(f"{pair}: {leak.attribute} found in {leak.found_in}{value}")
        total += len(leaks)
    typer.echo(f"{total} leak(s) in {len(results)} file pair(s)")
    if total:
        raise typer.Exit(1)


@audit_app.command("text")
def audit_text(
    original: Path = typer.Argument(..., exists=True, help="Input file (or folder)."),
    output: Path = typer.Argument(..., exists=True, help="Its output (or folder), as dmask mask/deid wrote it."),
    show_text: bool = typer.Option(False, help="Print the words read (they may be patient data!)."),
) -> None:
    """Report burned-in text of ORIGINAL that the text detector or Tesseract still reads in OUTPUT.

    Photos and DICOM files (first, middle and last frame) are compared file by file at the same
    relative paths. Exit status 1 on any finding, 2 when the files cannot be read.
    """
    from gateway.audit.phi import pair_files
    from gateway.audit.text import audit_text as audit_pair
    from gateway.errors import DmaskError
    from gateway.text.detector import TextDetector

    pairs, unpaired = pair_files(original, output)
    for source in unpaired:
        typer.echo(f"{source}: no output counterpart, not compared", err=True)
    detector = TextDetector()
    total = 0
    for source, target in pairs:
        try:
            findings = audit_pair(source, target, detector)
        except DmaskError as exc:
            typer.echo(f"audit text: {source}: {exc}", err=True)
            raise typer.Exit(EXIT_CONFIG_ERROR) from None
        for finding in findings:
            what = finding.what if show_text or finding.engine == "detector" else "a word of the input"
            typer.echo(f"{target}: frame {finding.frame}: {finding.engine}: {what}")
        total += len(findings)
    typer.echo(f"{total} finding(s) in {len(pairs)} file pair(s)")
    if total:
        raise typer.Exit(1)


def _exit_on_spool_error(error: SpoolSchemaError) -> NoReturn:
    """Print why the spool cannot be used (its database, what was found) and exit with status 2."""
    typer.echo(f"{error.reason}: {error}", err=True)
    raise typer.Exit(EXIT_CONFIG_ERROR)


def _exit_on_queue_error(error: ConfigError | SpoolSchemaError | SpoolFull) -> NoReturn:
    """Exit as a command must when the queue cannot be opened or upgraded: status 2 for a
    configuration or schema it cannot use, 1 for a queue that is full or does not answer."""
    from gateway.errors import ConfigError, SpoolSchemaError

    if isinstance(error, ConfigError):
        _exit_on_config_error(error)
    if isinstance(error, SpoolSchemaError):
        _exit_on_spool_error(error)
    typer.echo(f"{error.reason}: {error}", err=True)
    raise typer.Exit(1)


def _spool_of(config_path: Path) -> QueueAdmin:
    """The spool a configuration names (for the admin commands next to a running gateway), or
    exit with status 2."""
    from gateway.errors import ConfigError, SpoolFull, SpoolSchemaError
    from gateway.store.backends import open_spool

    settings = _load_config(config_path, check_secret=False)
    try:
        return open_spool(settings.spool, node=settings.node)
    except (ConfigError, SpoolSchemaError, SpoolFull) as exc:
        _exit_on_queue_error(exc)


@app.command()
def serve(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="The YAML configuration."),
    role: str = typer.Option("all", help="receive (listen and admit), process (claim, mask,"
                             " forward) or all; receive and process need spool.backend postgresql."),
) -> None:
    """Run the gateway: listener, spool, workers and forwarding, until SIGTERM.

    SIGHUP reloads the configuration (a broken one is refused and the running one kept);
    SIGTERM stops accepting associations, finishes the in-flight instances and exits 0.
    """
    from gateway.errors import ConfigError, SpoolSchemaError, StartupError
    from gateway.ops.service import Gateway

    if role not in ("receive", "process", "all"):
        typer.echo(f"unknown role '{role}' (receive, process or all)", err=True)
        raise typer.Exit(EXIT_CONFIG_ERROR)
    if role != "all" and _load_config(config, check_secret=False).spool.backend != "postgresql":
        typer.echo(f"--role {role} needs a shared queue (spool.backend: postgresql)", err=True)
        raise typer.Exit(EXIT_CONFIG_ERROR)
    try:
        gateway = Gateway(config, role)  # type: ignore[arg-type]  # checked above
    except ConfigError as exc:
        _exit_on_config_error(exc)
    except SpoolSchemaError as exc:
        _exit_on_spool_error(exc)
    try:
        gateway.run()
    except StartupError as exc:
        typer.echo(str(exc), err=True)  # the last line: the reason, after whatever was logged
        raise typer.Exit(EXIT_CONFIG_ERROR) from None


@app.command()
def queue(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="The YAML configuration."),
    state: str | None = typer.Option(None, help="List the jobs in this state "
                                     "(received, processing, retry, quarantined, done)."),
    reason: str | None = typer.Option(None, help="List the jobs with this reason code."),
    limit: int = typer.Option(100, min=1, help="List at most this many jobs."),
) -> None:
    """Show the spool: job counts by state and reason, or the jobs of one state/reason."""
    from gateway.store.queue import JobState

    try:
        wanted = JobState(state) if state else None
    except ValueError:
        typer.echo(f"unknown state '{state}'", err=True)
        raise typer.Exit(EXIT_CONFIG_ERROR) from None
    with closing(_spool_of(config)) as spool:
        if state is None and reason is None:
            for (job_state, job_reason), count in sorted(spool.counts().items(),
                                                         key=lambda item: (item[0][0], item[0][1] or "")):
                typer.echo(f"{job_state:<12} {job_reason or '-':<28} {count}")
            return
        jobs = spool.jobs(wanted, reason, limit)
    for job in jobs:
        received = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job.received_at))
        typer.echo(f"{job.id:>8} {job.state.value:<12} {job.reason or '-':<28} {received} "
                   f"{job.calling_ae:<16} attempts={job.attempts} "
                   f"pending={','.join(job.pending) or '-'}")


@app.command()
def requeue(
    ids: list[int] = typer.Argument(None, help="Job ids to run again."),
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="The YAML configuration."),
    reason: str | None = typer.Option(None, help="Requeue every failed job with this reason."),
    all_failed: bool = typer.Option(False, "--all-failed", help="Requeue every failed job."),
) -> None:
    """Send quarantined or retrying jobs through the pipeline again.

    A running gateway picks them up within a second; the pipeline runs from the original, so a
    job quarantined under a profile that has since been fixed gets the new treatment.
    """
    if not ids and reason is None and not all_failed:
        typer.echo("give job ids, --reason R or --all-failed", err=True)
        raise typer.Exit(EXIT_CONFIG_ERROR)
    with closing(_spool_of(config)) as spool:
        count = spool.requeue(ids or (), reason=reason, all_failed=all_failed)
    typer.echo(f"requeued {count} job(s)")


@db_app.command("upgrade")
def db_upgrade(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="The YAML configuration."),
) -> None:
    """Create the shared queue's tables, or migrate them to this dmask's schema version.

    Run it once before the first `dmask serve` of a cluster and after installing a dmask with a
    new schema; gateways refuse a database whose version they do not know.
    """
    from gateway.errors import ConfigError, SpoolFull, SpoolSchemaError
    from gateway.store.backends import read_dsn
    from gateway.store.postgres_spool import upgrade_schema

    settings = _load_config(config, check_secret=False).spool
    if settings.backend != "postgresql":
        typer.echo("spool.backend is not postgresql: the embedded spool needs no upgrade", err=True)
        raise typer.Exit(EXIT_CONFIG_ERROR)
    try:
        before, after = upgrade_schema(read_dsn(settings))
    except (ConfigError, SpoolSchemaError, SpoolFull) as exc:
        _exit_on_queue_error(exc)
    typer.echo(f"schema version {after}" + (" (unchanged)" if before == after else f" (was {before})"))


if __name__ == "__main__":
    app()
