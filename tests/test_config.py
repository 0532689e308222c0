"""Configuration validation: the example loads, and broken edits are refused precisely.

Each broken config is the shipped example with one realistic mistake; the error must name the
key path and the line the admin has to look at.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import GatewayConfig, config_reference, load_config, parse_config, reference_rows
from gateway.errors import ConfigError
from tests.support.keys import write_key

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "gateway.yaml"
EXAMPLE_TEXT = EXAMPLE.read_text()


@pytest.fixture
def secret_env(tmp_path: Path) -> dict[str, str]:
    return {"DMASK__SECRET__FILE": str(write_key(tmp_path / "pseudonym.key"))}


def edit(old: str, new: str) -> str:
    assert EXAMPLE_TEXT.count(old) == 1, f"example must contain {old!r} exactly once"
    return EXAMPLE_TEXT.replace(old, new)


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_example_config_is_valid(secret_env: dict[str, str]) -> None:
    config = parse_config(EXAMPLE_TEXT, str(EXAMPLE), secret_env)
    assert isinstance(config, GatewayConfig)
    assert config.listener.ae_title == "DMASK"
    assert config.listener.port == 11112
    assert [c.ae_title for c in config.listener.allowed_callers] == ["CAMERA1", "SLITLAMP"]
    assert config.routes[0].destinations == ["local-folder"]
    assert config.routes[-1].reject
    assert "1.2.840.10008.5.1.4.1.1.77.1.4" in config.listener.sop_classes
    assert len(config.load_secret()) == 32


# (name, text, key path in the message, line marker, words the message must contain)
BROKEN = [
    ("unknown key", edit("  port: 11112 ", "  prot: 11112 "), "listener.prot", "prot:",
     "unknown key"),
    ("wrong type", edit("  port: 11112 ", "  port: eleven "), "listener.port", "port: eleven",
     "valid integer"),
    ("port out of range", edit("  port: 11112 ", "  port: 70000 "), "listener.port", "port: 70000",
     "65535"),
    ("AE title too long", edit("  ae_title: DMASK ", "  ae_title: DMASK_RESEARCH_GW01 "),
     "listener.ae_title", "DMASK_RESEARCH_GW01", "at most 16"),
    ("AE title with backslash", edit("- ae_title: CAMERA1 ", "- ae_title: 'CAM\\ERA1' "),
     "listener.allowed_callers.0.ae_title", "CAM\\ERA1", "backslash"),
    ("blank destination AE title",
     edit("    path: var/out\n", "    path: var/out\n  pacs: {type: dicom, ae_title: ' ', host: h, port: 104}\n"),
     "destinations.pacs.ae_title", "pacs: {type: dicom", "must not be empty"),
    ("route matching a too long AE title",
     edit("calling_ae_title: [CAMERA1, SLITLAMP]", "calling_ae_title: [CAMERA1, SLITLAMP_OF_ROOM_12]"),
     "routes.0.match.calling_ae_title.1", "SLITLAMP_OF_ROOM_12", "at most 16"),
    ("duplicate destination", edit("    path: var/out\n",
                                   "    path: var/out\n  local-folder: {type: folder, path: x}\n"),
     "destinations.local-folder", "local-folder: {type", "more than once"),
    ("route to unknown destination", edit("destinations: [local-folder]", "destinations: [pacs]"),
     "routes.0.destinations.0", "destinations: [pacs]", "'pacs' is not defined"),
    ("route to unknown profile", edit("profile: face-photos", "profile: face-photo"),
     "routes.0.profile", "profile: face-photo", "'face-photo' is not defined"),
    ("CIDR with host bits", edit("hosts: [127.0.0.0/8,", "hosts: [127.0.0.1/8,"),
     "listener.allowed_callers.1.hosts", "127.0.0.1/8", "host bits"),
    ("missing allowed callers", edit("  allowed_callers:   ", "  allowed_callerz:   "),
     "listener.allowed_callers", "listener:", "required key is missing"),
    ("unknown destination type", edit("    type: folder ", "    type: ftp "),
     "destinations.local-folder", "type: ftp", "'dicom', 'folder'"),
    ("PDU too small", edit("max_pdu_size: 262144", "max_pdu_size: 16384"),
     "listener.max_pdu_size", "max_pdu_size", "131072"),
    ("unknown SOP class keyword", edit("extra_sop_classes: []", "extra_sop_classes: [VLPhoto]"),
     "listener.extra_sop_classes", "VLPhoto", "SOP class"),
    ("reject route with a profile", edit("    reject: true", "    reject: true\n    profile: face-photos"),
     "routes.1", "everything-else", "takes no profile"),
    ("logging format", edit("format: human ", "format: xml "), "logging.format", "format: xml",
     "'json' or 'human'"),
    ("invalid regex in a tag condition",
     edit("      calling_ae_title: [CAMERA1, SLITLAMP]",
          "      calling_ae_title: [CAMERA1, SLITLAMP]\n      tags:\n        Modality: {regex: '(XC'}"),
     "routes.0.match.tags.Modality", "regex: '(XC'", "regular expression"),
    ("unknown attribute keyword in a tag condition",
     edit("      calling_ae_title: [CAMERA1, SLITLAMP]",
          "      calling_ae_title: [CAMERA1, SLITLAMP]\n      tags:\n        Modallity: {equals: XC}"),
     "routes.0.match.tags", "Modallity", "neither a DICOM keyword"),
]


@pytest.mark.parametrize("name,text,path,marker,words", BROKEN, ids=[case[0] for case in BROKEN])
def test_broken_config_names_key_and_line(name: str, text: str, path: str, marker: str, words: str,
                                          secret_env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "gateway.yaml", secret_env)
    message = str(raised.value)
    expected_line = line_of(text, marker)
    assert f"gateway.yaml:{expected_line}: {path}" in message, message
    assert words in message, message


def test_unreadable_secret_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"DMASK__SECRET__FILE \(environment\): secret.file: cannot read"):
        parse_config(EXAMPLE_TEXT, "gateway.yaml", {"DMASK__SECRET__FILE": str(tmp_path)})  # a folder


def test_missing_secret_file_says_how_to_create_it(tmp_path: Path) -> None:
    missing = tmp_path / "new folder" / "pseudonym.key"
    with pytest.raises(ConfigError) as raised:
        parse_config(EXAMPLE_TEXT, "gateway.yaml", {"DMASK__SECRET__FILE": str(missing)})
    assert f"secret.file: {missing} does not exist: create it with `dmask keygen '{missing}'`" in str(raised.value)


def test_short_secret_is_refused_without_revealing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fewer than 16 bytes") as raised:
        parse_config(EXAMPLE_TEXT, "gateway.yaml",
                     {"DMASK__SECRET__ENV": "KEY", "DMASK__SECRET__FILE": "", "KEY": "hunter2"})
    assert "hunter2" not in str(raised.value)


def test_secret_in_the_yaml_itself_is_refused(secret_env: dict[str, str]) -> None:
    text = edit("  file: var/pseudonym.key", "  file: var/pseudonym.key\n  value: s3cr3t")
    with pytest.raises(ConfigError, match=r"secret.value: unknown key"):
        parse_config(text, "gateway.yaml", secret_env)


def test_environment_overrides_any_key(secret_env: dict[str, str]) -> None:
    environ = dict(secret_env, DMASK__LISTENER__PORT="11113", DMASK__ROUTES__0__NAME="renamed",
                   DMASK__LOGGING__FORMAT="json")
    config = parse_config(EXAMPLE_TEXT, "gateway.yaml", environ)
    assert config.listener.port == 11113
    assert config.routes[0].name == "renamed"
    assert config.logging.format == "json"


def test_bad_environment_override_names_the_variable(secret_env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"DMASK__LISTENER__PORT \(environment\): listener.port"):
        parse_config(EXAMPLE_TEXT, "gateway.yaml", dict(secret_env, DMASK__LISTENER__PORT="0"))


def test_environment_override_that_is_not_yaml_is_a_config_error(secret_env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"DMASK__LISTENER__AE_TITLE: the value is not valid YAML"):
        parse_config(EXAMPLE_TEXT, "gateway.yaml", dict(secret_env, DMASK__LISTENER__AE_TITLE="[DMASK"))


def test_every_problem_is_reported_at_once(secret_env: dict[str, str]) -> None:
    text = edit("  port: 11112 ", "  port: 0 ").replace("format: human ", "format: xml ")
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "gateway.yaml", secret_env)
    assert "listener.port" in str(raised.value) and "logging.format" in str(raised.value)


def test_invalid_yaml_gives_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("listener:\n  port: [11112\nspool: {}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        load_config(path)


def test_check_config_command_exits_nonzero_with_the_error(tmp_path: Path,
                                                           secret_env: dict[str, str]) -> None:
    broken = tmp_path / "gateway.yaml"
    broken.write_text(edit("  port: 11112 ", "  port: 70000 "))
    env = {"PATH": "/usr/bin:/bin", **secret_env}
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", str(broken)],
                            capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert f"{broken}:{line_of(broken.read_text(), 'port: 70000')}: listener.port" in result.stderr

    good = tmp_path / "good.yaml"
    good.write_text(EXAMPLE_TEXT)
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", str(good)],
                            capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_documented_reference_matches_the_models() -> None:
    documented = (REPO / "docs" / "configuration.md").read_text()
    assert config_reference() in documented, "regenerate with: dmask check-config --reference"


def test_every_key_of_the_reference_has_a_meaning() -> None:
    """A field without a description (or a section without a docstring) leaves a blank meaning."""
    undescribed = [row.key for row in reference_rows() if not row.meaning.strip()]
    assert not undescribed, f"describe these with Field(description=...): {undescribed}"


def test_no_two_settings_share_a_meaning() -> None:
    """A meaning shared by two fields is a copy that says the wrong thing about one of them.

    Rows reached by several key paths (TLS under the listener and under a destination) come from
    the same field and may repeat its meaning; two different fields may not.
    """
    sources_by_meaning: dict[str, set[str]] = {}
    for row in reference_rows():
        sources_by_meaning.setdefault(row.meaning, set()).add(row.source)
    shared = {meaning: sorted(sources) for meaning, sources in sources_by_meaning.items() if len(sources) > 1}
    assert not shared, shared
