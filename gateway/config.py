"""The gateway's configuration: one YAML file, validated as a whole before anything starts.

Admins edit this file by hand and are accountable for what it lets through, so a broken edit must
be refused with the YAML key path, the line it is on and what was expected, never half-applied.
The models here are the single source of truth: ``dmask check-config`` validates against them and
the configuration reference in ``docs/configuration.md`` is generated from them (``config_reference``).

Any setting can be overridden by an environment variable named ``DMASK__`` followed by the key
path in upper case joined by ``__`` (``DMASK__LISTENER__PORT=11113``,
``DMASK__ROUTES__0__PROFILE=photos``); the value is read as YAML (a scalar or a list), and an
empty value means null. The pseudonym key is never part of the YAML: the ``secret`` section names
a file or an environment variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import socket
import types
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydicom.datadict import keyword_dict
from pydicom.tag import Tag
from pydicom.uid import UID_dictionary

from gateway.deid.settings import DeidSettings
from gateway.errors import ConfigError
from gateway.mask.settings import MaskSettings
from gateway.text.settings import TextSettings

ENV_PREFIX = "DMASK__"
MIN_SECRET_BYTES = 16

#: The photographic storage SOP classes accepted without any configuration (UID -> keyword).
DEFAULT_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.7": "SecondaryCaptureImageStorage",
    "1.2.840.10008.5.1.4.1.1.7.4": "MultiFrameTrueColorSecondaryCaptureImageStorage",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VLPhotographicImageStorage",
    "1.2.840.10008.5.1.4.1.1.77.1.4.1": "VideoPhotographicImageStorage",
    "1.2.840.10008.5.1.4.1.1.77.1.5.1": "OphthalmicPhotography8BitImageStorage",
    "1.2.840.10008.5.1.4.1.1.77.1.5.2": "OphthalmicPhotography16BitImageStorage",
}

_SOP_CLASS_BY_KEYWORD: dict[str, str] = {
    info[4]: uid for uid, info in UID_dictionary.items() if info[1] == "SOP Class" and info[4]
}
_UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_TAG_PATTERN = re.compile(r"^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$")


class _Model(BaseModel):
    """Base of every section: unknown keys are errors, because a typo must not be ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _validate_ae_title(value: str) -> str:
    """Check an AE title the way PS3.5 defines the AE VR: 1-16 characters, no backslash."""
    if not value.strip():
        raise ValueError("an AE title must not be empty or only spaces")
    if len(value) > 16:
        raise ValueError(f"an AE title has at most 16 characters, this one has {len(value)}")
    if "\\" in value or any(ord(c) < 0x20 or ord(c) > 0x7E for c in value):
        raise ValueError("an AE title may not contain a backslash or control/non-ASCII characters")
    return value.strip()


# Value types validate themselves and give the reference's type column its words (``title``);
# what a value means differs from one field to the next, so each field describes itself.
AETitle = Annotated[str, AfterValidator(_validate_ae_title), Field(title="AE title (1-16 characters)")]
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0, title="seconds")]
#: How long a delivered job stays on record by default (``spool.history``): a week, so that a
#: sender's storage commitment request finds it long after the job was delivered.
DEFAULT_HISTORY_S = 7 * 86400


def sop_class_uid(value: str) -> str:
    """Resolve a SOP class given as a UID or as its pydicom keyword to the UID."""
    if value in _SOP_CLASS_BY_KEYWORD:
        return _SOP_CLASS_BY_KEYWORD[value]
    if _UID_PATTERN.match(value) and len(value) <= 64:
        return value
    raise ValueError(f"'{value}' is neither a SOP Class UID nor a known SOP class keyword")


def tag_of(value: str) -> int:
    """Resolve an attribute given as a keyword (``BodyPartExamined``) or tag (``(0018,0015)``)."""
    if value in keyword_dict:
        return int(keyword_dict[value])
    found = _TAG_PATTERN.match(value.strip())
    if found:
        return int(Tag(int(found.group(1), 16), int(found.group(2), 16)))
    raise ValueError(f"'{value}' is neither a DICOM keyword nor a tag like (0018,0015)")


class TLSSettings(_Model):
    """TLS for an association; the files are PEM."""

    certificate: Path = Field(description="PEM certificate presented to the peer")
    private_key: Path = Field(description="PEM private key of the certificate")
    ca_certificates: Path | None = Field(
        default=None, description="PEM CA bundle used to verify the peer; none = system defaults"
    )
    require_peer_certificate: bool = Field(
        default=True, description="refuse peers that present no certificate signed by the CA"
    )

    @model_validator(mode="after")
    def _files_readable(self) -> TLSSettings:
        for name in ("certificate", "private_key", "ca_certificates"):
            path = getattr(self, name)
            if path is not None and not os.access(path, os.R_OK):
                raise ValueError(f"{name}: file '{path}' does not exist or is not readable")
        return self


class CommitmentAddress(_Model):
    """Where a caller takes storage commitment reports that cannot go on its own association."""

    host: str = Field(description="host name or address of the caller's storage commitment SCU")
    port: Port = Field(description="TCP port the caller takes the report association on")
    ae_title: AETitle | None = Field(
        default=None, description="AE title to call there; none = the caller's own AE title"
    )


class AllowedCaller(_Model):
    """A modality allowed to open an association: its AE title, optionally pinned to hosts."""

    ae_title: AETitle = Field(description="AE title the modality calls from (its calling AE title)")
    hosts: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        default_factory=list,
        description="addresses or CIDR blocks the caller must come from; empty = any host",
    )
    commitment_address: CommitmentAddress | None = Field(
        default=None,
        description="where storage commitment reports go once the caller has released the"
        " association that asked; none = only on that association",
    )

    @field_validator("hosts", mode="before")
    @classmethod
    def _strict_networks(cls, value: Any) -> Any:
        """Refuse '10.0.0.1/8': a CIDR with host bits set is almost always a typo."""
        if isinstance(value, list):
            return [ipaddress.ip_network(str(item), strict=True) for item in value]
        return value


class Listener(_Model):
    """The DICOM SCP that modalities send to."""

    ae_title: AETitle = Field(default="DMASK", description="AE title the gateway answers to (the called AE title)")
    host: str = Field(default="0.0.0.0", description="address to bind")
    port: Port = Field(default=11112, description="TCP port modalities send to")
    allowed_callers: list[AllowedCaller] = Field(
        min_length=1, description="callers that get an association; everyone else is rejected"
    )
    tls: TLSSettings | None = Field(default=None, description="TLS on the listener; none = plain TCP")
    max_associations: int = Field(default=10, ge=1, le=1000, description="concurrent associations")
    max_pdu_size: int = Field(
        default=262144,
        description="maximum PDU size we receive, bytes: 0 (unlimited) or at least 131072",
    )
    acse_timeout: Seconds = Field(
        default=30, description="how long to wait for association negotiation and release messages"
    )
    dimse_timeout: Seconds = Field(
        default=60, description="how long to wait for the next DIMSE message (C-STORE, C-ECHO) of a caller"
    )
    network_timeout: Seconds = Field(
        default=60, description="an association that receives no PDU for this long is aborted"
    )
    negotiation_timeout: Seconds = Field(
        default=5,
        description="seconds a new connection has for its TLS handshake and A-ASSOCIATE-RQ; then it is closed",
    )
    max_negotiating: int = Field(
        default=32, ge=1, le=1000,
        description="connections still negotiating (not yet associated) at once; more are closed at accept",
    )
    max_connections_per_host: int = Field(
        default=10, ge=1, le=1000,
        description="concurrent connections from one peer address, negotiating or associated",
    )
    extra_sop_classes: list[str] = Field(
        default_factory=list,
        description="storage SOP classes accepted on top of the photographic defaults (UID or keyword)",
    )

    @field_validator("max_pdu_size")
    @classmethod
    def _pdu_size(cls, value: int) -> int:
        if value != 0 and value < 131072:
            raise ValueError("must be 0 (unlimited) or at least 131072 bytes")
        return value

    @field_validator("extra_sop_classes")
    @classmethod
    def _sop_classes(cls, value: list[str]) -> list[str]:
        return [sop_class_uid(item) for item in value]

    @model_validator(mode="after")
    def _unique_callers(self) -> Listener:
        titles = [caller.ae_title for caller in self.allowed_callers]
        duplicates = sorted({t for t in titles if titles.count(t) > 1})
        if duplicates:
            raise ValueError(f"allowed_callers lists {', '.join(duplicates)} more than once")
        return self

    @property
    def sop_classes(self) -> list[str]:
        """Every storage SOP class UID the listener accepts."""
        return list(DEFAULT_SOP_CLASSES) + [
            uid for uid in self.extra_sop_classes if uid not in DEFAULT_SOP_CLASSES
        ]


class RetryPolicy(_Model):
    """Exponential backoff for a destination, then dead letter."""

    initial_delay: Seconds = Field(default=2, description="wait before the first retry")
    max_delay: Seconds = Field(default=300, description="longest wait between two retries")
    multiplier: float = Field(default=2, ge=1, description="each retry waits this many times longer")
    max_age: Seconds = Field(
        default=86400, description="give up (dead letter) this long after the first failure"
    )


class DicomDestination(_Model):
    """A research PACS reached by C-STORE."""

    type: Literal["dicom"] = Field(description="C-STORE to a DICOM node")
    ae_title: AETitle = Field(description="AE title of the PACS (the called AE title)")
    host: str = Field(description="host name or address of the PACS")
    port: Port = Field(description="TCP port of the PACS")
    calling_ae_title: AETitle | None = Field(
        default=None, description="our AE title towards this PACS; none = the listener's"
    )
    tls: TLSSettings | None = Field(default=None, description="TLS towards the PACS; none = plain TCP")
    connect_timeout: Seconds = Field(
        default=10, description="how long to wait for the connection and each association message"
    )
    dimse_timeout: Seconds = Field(
        default=60, description="how long to wait for the PACS while sending an instance and for its answer"
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)


class DuplicatePolicy(str, Enum):
    """What a folder destination does with an instance whose SOP Instance UID it already holds
    with other content (the same UID sent twice with different data; an identical re-send is
    not a duplicate, it leaves the folder as it was)."""

    KEEP_FIRST = "keep-first"
    REPLACE = "replace"
    KEEP_BOTH = "keep-both"
    QUARANTINE = "quarantine"


class FolderDestination(_Model):
    """Write results as files (atomically); the embedded default for trying dmask out."""

    type: Literal["folder"] = Field(description="files in a folder")
    path: Path = Field(description="folder the results are written under (created 0700)")
    duplicates: DuplicatePolicy = Field(
        default=DuplicatePolicy.KEEP_BOTH,
        description="an instance whose SOP Instance UID the folder holds with other content:"
        " keep-first drops it, replace overwrites the earlier one, keep-both writes it as"
        " <UID>-2.dcm (-3, ...), quarantine stops its job; each one is logged and counted",
    )


class CredentialSource(_Model):
    """A password or token kept outside the YAML: a file (read again at each use) or an
    environment variable."""

    file: Path | None = Field(
        default=None, description="file holding the credential; read again each time it is used"
    )
    env: str | None = Field(default=None, description="environment variable holding the credential")

    @model_validator(mode="after")
    def _exactly_one(self) -> CredentialSource:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of 'file' or 'env'")
        return self

    def read(self, environ: Mapping[str, str] | None = None) -> str:
        """The credential, stripped; raise ValueError naming the source (never the value)."""
        environ = os.environ if environ is None else environ
        if self.file is not None:
            try:
                value = self.file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot read credential file '{self.file}': {exc}") from None
            where = f"credential file '{self.file}'"
        else:
            assert self.env is not None
            value = environ.get(self.env, "").strip()
            where = f"environment variable {self.env}"
        if not value:
            raise ValueError(f"{where} is missing or empty")
        return value


class FolderPayloads(_Model):
    """Payloads (originals, outputs kept for retries) as files in a folder every node mounts."""

    type: Literal["folder"] = Field(description="a shared file system (NFS, CephFS...)")
    path: Path = Field(description="the shared folder, created 0700; the same on every node")


class S3Payloads(_Model):
    """Payloads as objects in an S3-compatible store (AWS S3, MinIO, Ceph RGW)."""

    type: Literal["s3"] = Field(description="an S3-compatible object store")
    bucket: str = Field(min_length=3, description="bucket holding the payloads (must exist)")
    prefix: str = Field(default="", description="key prefix, e.g. 'dmask/'")
    endpoint_url: str | None = Field(
        default=None, description="URL of the store (MinIO, Ceph); none = AWS for the region"
    )
    region: str | None = Field(default=None, description="region name; none = the SDK's default")
    access_key_id: CredentialSource | None = Field(
        default=None, description="access key id (file or environment); none = the SDK's default chain"
    )
    secret_access_key: CredentialSource | None = Field(
        default=None, description="secret access key (file or environment); none = the SDK's default chain"
    )
    part_size: int = Field(
        default=8 << 20, ge=5 << 20,
        description="multipart chunk size in bytes: payloads stream in parts of this size",
    )

    @model_validator(mode="after")
    def _both_keys_or_none(self) -> S3Payloads:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        return self


PayloadStore = Annotated[FolderPayloads | S3Payloads, Field(discriminator="type")]


class Spool(_Model):
    """The durable queue between receive and forward.

    ``sqlite`` (the default): one process, a folder plus an SQLite state table. ``postgresql``:
    many receivers and processors share one PostgreSQL queue and a payload store; ``path`` is
    then each node's local working folder (partial receives, results being forwarded).
    """

    backend: Literal["sqlite", "postgresql"] = Field(
        default="sqlite", description="sqlite: embedded, one process; postgresql: scale-out"
    )
    path: Path = Field(default=Path("var/spool"), description="spool folder, created 0700")
    dsn: CredentialSource | None = Field(
        default=None, description="postgresql: where the connection string (DSN) is read from"
    )
    payloads: PayloadStore | None = Field(
        default=None, description="postgresql: the shared payload store (folder or s3)"
    )
    lease: Seconds = Field(
        default=60, description="postgresql: a claim lasts this long unless its processor renews it;"
        " a dead processor's jobs are taken over after it"
    )
    retention: float = Field(
        default=0,
        ge=0,
        description="seconds to keep an original after every destination has its result",
    )
    history: float = Field(
        default=DEFAULT_HISTORY_S,
        ge=0,
        description="seconds a delivered job stays on record (dmask queue, storage commitment)"
        " after every destination has its result; then its row and delivery ledger are deleted"
        " (never before its original)",
    )
    min_free_bytes: int = Field(
        default=1 << 30, ge=0, description="refuse new instances (0xA700) below this free space"
    )
    max_bytes: int | None = Field(
        default=None, gt=0, description="refuse new instances once the spool holds this much"
    )

    @model_validator(mode="after")
    def _backend_settings(self) -> Spool:
        if self.backend == "postgresql" and (self.dsn is None or self.payloads is None):
            raise ValueError("the postgresql backend needs 'dsn' and 'payloads'")
        if self.backend == "sqlite" and (self.dsn is not None or self.payloads is not None):
            raise ValueError("'dsn' and 'payloads' belong to the postgresql backend")
        return self


class NoAuth(_Model):
    """No Authorization header (a peer on a trusted network, or one that trusts the client certificate)."""

    type: Literal["none"] = Field(description="send no credentials")


class BasicAuth(_Model):
    """HTTP basic authentication; the password is never part of the YAML."""

    type: Literal["basic"] = Field(description="user name and password (RFC 7617)")
    username: str = Field(min_length=1, description="user name sent to the DICOMweb server")
    password: CredentialSource = Field(description="where the password is read from")


class BearerAuth(_Model):
    """A bearer token (RFC 6750) read from a file that an outside refresher may rewrite, or
    printed by a command."""

    type: Literal["bearer"] = Field(description="an OAuth-style bearer token")
    token_file: Path | None = Field(
        default=None, description="file holding the token; read again whenever it changes"
    )
    token_command: list[str] | None = Field(
        default=None,
        description="command (no shell) whose standard output is the token; run again when it expires",
    )
    token_lifetime: Seconds = Field(
        default=300, description="how long a token printed by token_command is used before it is run again"
    )
    command_timeout: Seconds = Field(default=30, description="longest time token_command may take")

    @model_validator(mode="after")
    def _one_source(self) -> BearerAuth:
        if (self.token_file is None) == (not self.token_command):
            raise ValueError("give exactly one of 'token_file' or 'token_command'")
        return self


HttpAuth = Annotated[NoAuth | BasicAuth | BearerAuth, Field(discriminator="type")]


class HttpsClientTLS(_Model):
    """TLS towards an HTTPS server: the CA that signs it and, for mutual TLS, our certificate."""

    ca_certificates: Path | None = Field(
        default=None, description="PEM CA bundle that signs the server's certificate; none = system CAs"
    )
    certificate: Path | None = Field(default=None, description="PEM client certificate, for mutual TLS")
    private_key: Path | None = Field(default=None, description="PEM private key of the client certificate")

    @model_validator(mode="after")
    def _pair_and_readable(self) -> HttpsClientTLS:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("give both 'certificate' and 'private_key', or neither")
        for name in ("ca_certificates", "certificate", "private_key"):
            path = getattr(self, name)
            if path is not None and not os.access(path, os.R_OK):
                raise ValueError(f"{name}: file '{path}' does not exist or is not readable")
        return self


class DicomWebDestination(_Model):
    """A DICOMweb server that takes instances by STOW-RS (PS3.18 10.5)."""

    type: Literal["dicomweb"] = Field(description="STOW-RS to a DICOMweb server")
    url: str = Field(
        description="base URL of the DICOMweb service; instances are POSTed to <url>/studies"
    )
    tls: HttpsClientTLS | None = Field(default=None, description="TLS settings for an https URL")
    auth: HttpAuth = Field(default_factory=lambda: NoAuth(type="none"),
                           description="how the gateway authenticates: none, basic or bearer")
    connect_timeout: Seconds = Field(default=10, description="how long to wait for the TCP and TLS connection")
    read_timeout: Seconds = Field(
        default=120, description="how long the server may be silent while it takes a request and answers"
    )
    max_instances_per_request: int = Field(
        default=16, ge=1, le=1000,
        description="most instances one STOW-RS request carries; above 1, processed instances of several "
        "jobs are gathered into one request"
    )
    batch_wait: Seconds = Field(
        default=0.5, le=60,
        description="longest a processed instance waits for others to fill its STOW-RS request before it "
        "is sent with those that are ready"
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or a fragment")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _tls_only_for_https(self) -> DicomWebDestination:
        if self.tls is not None and not self.url.startswith("https://"):
            raise ValueError("'tls' is set but the url is not https://")
        return self


Destination = Annotated[DicomDestination | FolderDestination | DicomWebDestination,
                        Field(discriminator="type")]


class Profile(_Model):
    """What happens to an instance: pixel masking (or none), burned-in text and attribute de-identification."""

    mask: MaskSettings | None = Field(
        default_factory=MaskSettings,
        description="digital mask settings; null = tags only (pixels untouched)",
    )
    deid: DeidSettings = Field(default_factory=DeidSettings)
    burned_in_text: TextSettings = Field(
        default_factory=TextSettings,
        description="text burned into the pixels (names, IDs, dates): found after the mask, on the whole "
        "output, and redacted, refused or kept",
    )


def _check_tag_key(value: str) -> str:
    tag_of(value)
    return value


TagKey = Annotated[str, AfterValidator(_check_tag_key)]


class TagCondition(_Model):
    """A condition on one attribute's value: exact match or a regular expression."""

    equals: str | None = Field(default=None, description="the value must be exactly this")
    regex: str | None = Field(default=None, description="the whole value must match this (Python re)")

    @model_validator(mode="after")
    def _one_of(self) -> TagCondition:
        if (self.equals is None) == (self.regex is None):
            raise ValueError("give exactly one of 'equals' or 'regex'")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return self


class RouteMatch(_Model):
    """All given conditions must hold (AND); each list matches any of its values (OR)."""

    calling_ae_title: list[AETitle] = Field(default_factory=list, description="AE title of the sender")
    called_ae_title: list[AETitle] = Field(default_factory=list, description="AE title the sender called")
    sop_class: list[str] = Field(default_factory=list, description="SOP Class of the instance (UID or keyword)")
    modality: list[str] = Field(default_factory=list, description="Modality (0008,0060) of the instance")
    body_part_examined: list[str] = Field(
        default_factory=list, description="BodyPartExamined (0018,0015) of the instance"
    )
    tags: dict[TagKey, TagCondition] = Field(
        default_factory=dict, description="keyword or (gggg,eeee) -> equals/regex"
    )

    @field_validator("calling_ae_title", "called_ae_title", "sop_class", "modality",
                     "body_part_examined", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("sop_class")
    @classmethod
    def _sop_classes(cls, value: list[str]) -> list[str]:
        return [sop_class_uid(v) for v in value]


class Route(_Model):
    """One rule of the ordered route list; the first that matches decides."""

    name: str = Field(min_length=1, description="unique name, used in logs and metrics")
    match: RouteMatch = Field(default_factory=RouteMatch, description="empty = matches everything")
    reject: bool = Field(default=False, description="refuse matching instances instead of forwarding")
    profile: str | None = Field(default=None, description="profile applied to matching instances")
    destinations: list[str] = Field(default_factory=list, description="destinations that get the result")

    @model_validator(mode="after")
    def _action(self) -> Route:
        if self.reject and (self.profile or self.destinations):
            raise ValueError("a 'reject' route takes no profile and no destinations")
        if not self.reject and not (self.profile and self.destinations):
            raise ValueError("a route needs a profile and at least one destination, or reject: true")
        return self


class Workers(_Model):
    """The process pool that runs the pipeline (CPU work must not share the receiver's GIL)."""

    count: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, le=256,
        description="worker processes; default: the number of CPU cores",
    )


class Logging(_Model):
    """Log output on standard error; never carries patient data."""

    format: Literal["json", "human"] = Field(default="json", description="one JSON object a line, or text")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="least severe level written (audit lines always are)"
    )


class Metrics(_Model):
    """Prometheus metrics, /healthz and /readyz over HTTP."""

    enabled: bool = Field(default=True, description="serve the HTTP endpoint")
    host: str = Field(default="127.0.0.1", description="address the HTTP endpoint binds")
    port: Port = Field(default=9112, description="TCP port of the HTTP endpoint")


class SecretSource(_Model):
    """Where the pseudonym key comes from: a file or an environment variable, never the YAML."""

    file: Path | None = Field(
        default=None, description="file holding the key (at least 16 bytes; `dmask keygen` makes one)"
    )
    env: str | None = Field(default=None, description="environment variable holding the key")

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretSource:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of 'file' or 'env'")
        return self

    def read(self, environ: Mapping[str, str] | None = None) -> bytes:
        """Read the key; raise ValueError naming the source (never the key) when unusable."""
        environ = os.environ if environ is None else environ
        if self.file is not None:
            try:
                key = self.file.read_bytes().strip()
            except FileNotFoundError:
                raise ValueError(f"{self.file} does not exist: create it with "
                                 f"`dmask keygen {shlex.quote(str(self.file))}`") from None
            except OSError as exc:
                raise ValueError(f"cannot read secret file '{self.file}': {exc.strerror}") from None
            where = f"secret file '{self.file}'"
        else:
            assert self.env is not None
            if self.env not in environ:
                raise ValueError(f"environment variable {self.env} is not set")
            key = environ[self.env].strip().encode()
            where = f"environment variable {self.env}"
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(f"{where} holds fewer than {MIN_SECRET_BYTES} bytes")
        return key


class StowClient(_Model):
    """A sender allowed to store by STOW-RS, known by a bearer token or a client certificate."""

    name: AETitle = Field(
        description="calling identity of the client: routes match it as a calling AE title"
    )
    token: CredentialSource | None = Field(
        default=None, description="where the client's bearer token is read from (file or environment)"
    )
    certificate_common_name: str | None = Field(
        default=None, min_length=1,
        description="common name (CN) of the client's TLS certificate that identifies it (mutual TLS)",
    )

    @model_validator(mode="after")
    def _identified(self) -> StowClient:
        if self.token is None and self.certificate_common_name is None:
            raise ValueError("give a 'token', a 'certificate_common_name', or both")
        return self


class StowListener(_Model):
    """The STOW-RS endpoint (PS3.18 10.5): POST /studies over HTTP(S) into the same spool."""

    host: str = Field(default="0.0.0.0", description="address the STOW-RS endpoint binds")
    port: Port = Field(default=8080, description="TCP port of the STOW-RS endpoint")
    base_path: str = Field(
        default="", description="path before /studies, e.g. /dicomweb; empty = /studies at the root"
    )
    tls: TLSSettings | None = Field(
        default=None, description="HTTPS on the STOW-RS endpoint; none = plain HTTP"
    )
    clients: list[StowClient] = Field(
        min_length=1, description="clients that may store; any other request is answered 401"
    )
    called_ae_title: AETitle | None = Field(
        default=None, description="called AE title that routes see for STOW-RS instances; none = the listener's"
    )
    max_request_bytes: int = Field(
        default=1 << 30, gt=0, description="largest request body taken; a larger one is answered 413"
    )
    max_concurrent_requests: int = Field(
        default=8, ge=1, le=1000, description="requests served at once; more are answered 503"
    )
    request_timeout: Seconds = Field(
        default=60, description="a client silent this long while sending its request is disconnected"
    )

    @field_validator("base_path")
    @classmethod
    def _path(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and (not value.startswith("/") or any(c in value for c in "?#% ")):
            raise ValueError("must start with '/' and hold no query, fragment, escape or space")
        return value

    @model_validator(mode="after")
    def _unique_clients(self) -> StowListener:
        names = [client.name for client in self.clients]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"clients lists {', '.join(duplicates)} more than once")
        return self


class GatewayConfig(_Model):
    """The whole gateway configuration."""

    node: str = Field(
        default_factory=socket.gethostname, min_length=1, max_length=64,
        description="this node's name (default: the host name): labels its metrics and its claims on a"
        " shared queue; unique in a cluster",
    )
    listener: Listener
    stow: StowListener | None = Field(
        default=None, description="the STOW-RS (DICOMweb) endpoint; none = DICOM listener only"
    )
    spool: Spool = Field(default_factory=Spool)
    destinations: dict[str, Destination] = Field(
        min_length=1, description="named destinations that routes send results to"
    )
    profiles: dict[str, Profile] = Field(
        min_length=1, description="named profiles: what is done to an instance"
    )
    routes: list[Route] = Field(min_length=1, description="ordered; the first match decides")
    workers: Workers = Field(default_factory=Workers)
    logging: Logging = Field(default_factory=Logging)
    metrics: Metrics = Field(default_factory=Metrics)
    secret: SecretSource

    def load_secret(self) -> bytes:
        """The pseudonym key (HMAC secret); raises ConfigError when it cannot be read."""
        try:
            return self.secret.read()
        except ValueError as exc:
            raise ConfigError(f"secret: {exc}") from None


# --- loading -------------------------------------------------------------------------------

#: Parts of a pydantic error location that name a union member, not a YAML key.
_UNION_TAGS = ("dicom", "folder", "s3", "dicomweb", "none", "basic", "bearer", "[key]")

KeyPath = tuple[str | int, ...]
"""A position in the YAML document: keys and list indices from the top, e.g. ("routes", 0, "profile")."""


class _LineIndex:
    """Line numbers of every key path in a YAML document, and duplicate keys found on the way.

    PyYAML silently keeps the last of two equal keys; for destinations or profiles that would
    drop one without a word, so duplicates are reported as errors.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[KeyPath, int] = {}
        self.duplicates: list[KeyPath] = []
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: KeyPath) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = key_node.value
                if key in seen:
                    self.duplicates.append(path + (key,))
                seen.add(key)
                self.lines[path + (key,)] = key_node.start_mark.line + 1
                self._walk(value_node, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, path + (index,))

    def line_of(self, path: KeyPath) -> int | None:
        """The line of the longest prefix of ``path`` present in the document."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


def _dotted(path: KeyPath) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def _apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[KeyPath, str]:
    """Apply ``DMASK__A__B=value`` overrides in place; return which paths came from which variable."""
    origins: dict[KeyPath, str] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        path: KeyPath = tuple(int(p) if p.isdigit() else p for p in parts)
        try:
            value = yaml.safe_load(environ[name]) if environ[name] else None
        except yaml.YAMLError:
            raise ConfigError(f"{name}: the value is not valid YAML") from None
        node: Any = data
        for depth, part in enumerate(path[:-1]):
            child_default: Any = [] if isinstance(path[depth + 1], int) else {}
            if isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            elif isinstance(node, dict):
                node = node.setdefault(part, child_default)
            else:
                raise ConfigError(f"{name}: there is no key path {_dotted(path)} to override")
        last = path[-1]
        if isinstance(node, list) and isinstance(last, int) and last < len(node):
            node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"{name}: there is no key path {_dotted(path)} to override")
        origins[path] = name
    return origins


def _reference_errors(config: GatewayConfig) -> list[tuple[KeyPath, str]]:
    """Cross-section checks: routes must name profiles and destinations that exist."""
    errors: list[tuple[KeyPath, str]] = []
    for index, route in enumerate(config.routes):
        if route.profile is not None and route.profile not in config.profiles:
            known = ", ".join(sorted(config.profiles))
            errors.append(((("routes", index, "profile")),
                           f"profile '{route.profile}' is not defined (profiles: {known})"))
        for position, name in enumerate(route.destinations):
            if name not in config.destinations:
                known = ", ".join(sorted(config.destinations))
                errors.append((("routes", index, "destinations", position),
                               f"destination '{name}' is not defined (destinations: {known})"))
    names = [route.name for route in config.routes]
    for index, name in enumerate(names):
        if names.index(name) != index:
            errors.append((("routes", index, "name"), f"route name '{name}' is used twice"))
    return errors


def _format(source: str, lines: _LineIndex, origins: dict[KeyPath, str], path: KeyPath, message: str) -> str:
    for end in range(len(path), 0, -1):
        if path[:end] in origins:
            return f"{origins[path[:end]]} (environment): {_dotted(path)}: {message}"
    line = lines.line_of(path)
    where = f"{source}:{line}" if line is not None else source
    return f"{where}: {_dotted(path)}: {message}"


def _pydantic_message(error: Mapping[str, Any]) -> str:
    """Say what was expected in the admin's terms rather than pydantic's."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see docs/configuration.md)"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if "input" in error and kind not in ("model_type", "dict_type") and not isinstance(
        error["input"], (dict, list)
    ):
        message += f" (got {error['input']!r})"
    return message


def parse_config(text: str, source: str = "<config>", environ: Mapping[str, str] | None = None,
                 check_secret: bool = True) -> GatewayConfig:
    """Validate YAML text into a GatewayConfig, or raise ConfigError listing every problem.

    Parameters
    ----------
    text
        The YAML document.
    source
        Name used in messages (the file path).
    environ
        Environment for ``DMASK__`` overrides; ``os.environ`` when omitted.
    check_secret
        Also check that the pseudonym key can be read, so a gateway never starts without it.
    """
    try:
        lines = _LineIndex(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: (top level): expected a mapping of sections")
    messages = [_format(source, lines, {}, path, "key appears more than once")
                for path in lines.duplicates]
    origins = _apply_env_overrides(data, os.environ if environ is None else environ)
    config: GatewayConfig | None = None
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            path = tuple(part for part in error["loc"] if part not in _UNION_TAGS)
            if error["type"] == "union_tag_invalid":
                path += (str(error["ctx"]["discriminator"]).strip("'"),)
            messages.append(_format(source, lines, origins, path, _pydantic_message(error)))
    if config is not None:
        for path, message in _reference_errors(config):
            messages.append(_format(source, lines, origins, path, message))
        if check_secret and not messages:
            try:
                config.secret.read(os.environ if environ is None else environ)
            except ValueError as exc:
                field = "file" if config.secret.file is not None else "env"
                messages.append(_format(source, lines, origins, ("secret", field), str(exc)))
    if messages:
        raise ConfigError("\n".join(messages))
    assert config is not None
    return config


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None,
                check_secret: bool = True) -> GatewayConfig:
    """Read and validate a configuration file (see :func:`parse_config`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the configuration is not UTF-8 text") from None
    return parse_config(text, str(path), environ, check_secret)


# --- reference -----------------------------------------------------------------------------

def _type_name(annotation: Any) -> str:
    """A type as an admin reads it: ``list of str``, ``'json' / 'human'``, ``int or null``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        # A type that says more than its Python type (an AE title, seconds, a keyword for a
        # tag, hex for a number) carries that in its Field title.
        titles = [meta.title for meta in args[1:] if isinstance(meta, FieldInfo) and meta.title]
        return titles[0] if titles else _type_name(args[0])
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(_type_name(arg) for arg in args))
    if origin is Literal:
        return " / ".join(repr(arg) for arg in args)
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return f"list of {_type_name(args[0])}"
    if origin is tuple:
        return f"[{', '.join(_type_name(arg) for arg in args)}]"
    if origin is dict:
        return f"mapping of name to {_type_name(args[1])}"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " / ".join(repr(member.value) for member in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if isinstance(annotation, type) and issubclass(annotation, ipaddress._BaseNetwork):
        return "address or CIDR"
    return {Path: "path"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default_text(value: Any) -> str:
    """A default as it would be written in the YAML."""
    if isinstance(value, Enum):
        return _default_text(value.value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_default_text(item) for item in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _nested_models(annotation: Any) -> list[tuple[type[BaseModel], str]]:
    """Models reachable from a field's annotation, with the key suffix that leads to each."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, "")]
    origin = getattr(annotation, "__origin__", None)
    found: list[tuple[type[BaseModel], str]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        for model, inner in _nested_models(arg):
            if origin is dict:
                kind = getattr(model.model_fields.get("type"), "annotation", None)
                tag = f" (type: {kind.__args__[0]})" if kind is not None and hasattr(kind, "__args__") else ""
                found.append((model, f".NAME{tag}{inner}"))
            elif origin in (list, tuple):
                found.append((model, f"[]{inner}"))
            else:
                found.append((model, inner))
    return found


@dataclass(frozen=True)
class ReferenceRow:
    """One key of the configuration reference.

    ``source`` names where the meaning was written: ``Model.field`` for a field's own
    description, ``Model`` for a section that takes the first line of its model's docstring.
    Rows reached by several key paths (a TLS section under the listener and under a
    destination) share a source, and with it their meaning.
    """

    key: str
    type: str
    default: str
    meaning: str
    source: str


def _meaning(model: type[BaseModel], name: str, field: FieldInfo,
             nested: list[tuple[type[BaseModel], str]]) -> tuple[str, str]:
    """A field's meaning and its source: its own description, else its section's docstring."""
    if field.description:
        return field.description, f"{model.__qualname__}.{name}"
    if len(nested) == 1:
        section = nested[0][0]
        return next(iter((section.__doc__ or "").strip().splitlines()), ""), section.__qualname__
    return "", f"{model.__qualname__}.{name}"


def reference_rows() -> list[ReferenceRow]:
    """Every key of the configuration, depth first in the order of the models' fields."""
    rows: list[ReferenceRow] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            key = f"{prefix}{name}"
            nested = _nested_models(field.annotation)
            if field.is_required():
                default = "required"
            elif field.default_factory is not None:
                empty = {list: "`[]`", dict: "`{}`"}.get(field.default_factory)  # type: ignore[call-overload]
                default = "see below" if nested else empty or "computed"
            else:
                default = f"`{_default_text(field.default)}`"
            meaning, source = _meaning(model, name, field, nested)
            rows.append(ReferenceRow(key, field.title or _type_name(field.annotation), default,
                                     meaning, source))
            for model_inside, label in nested:
                walk(model_inside, f"{key}{label}.")

    walk(GatewayConfig, "")
    return rows


def config_reference() -> str:
    """A markdown table of every key, its type, default and meaning, generated from the models."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{row.key}` | {row.type} | {row.default} | {row.meaning.replace('|', '/')} |"
              for row in reference_rows()]
    return "\n".join(lines) + "\n"
