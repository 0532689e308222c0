"""``dmask keygen``: a key the configuration reads, owner-only, never overwritten; and
``dmask check-config`` on the shipped example before the key exists says to run it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.config import load_config
from gateway.errors import KeyFileError
from gateway.keyfile import KEY_BYTES, create_key_file

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "gateway.yaml"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_is_random_hex_that_the_configuration_reads(tmp_path: Path) -> None:
    first, second = tmp_path / "a.key", tmp_path / "b.key"
    create_key_file(first)
    create_key_file(second)
    text = first.read_text()
    assert len(text) == 2 * KEY_BYTES and bytes.fromhex(text)
    assert text != second.read_text()
    config = load_config(EXAMPLE, {"DMASK__SECRET__FILE": str(first)})
    assert config.load_secret() == text.encode()


def test_key_file_is_owner_only_and_missing_folders_are_made_private(tmp_path: Path) -> None:
    existing = tmp_path / "shared"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    path = existing / "var" / "keys" / "pseudonym.key"
    create_key_file(path)
    assert mode(path) == 0o600
    assert mode(existing / "var") == mode(existing / "var" / "keys") == 0o700
    assert mode(existing) == 0o755  # an existing folder keeps its mode


def test_an_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.key"
    path.write_text("the key the pseudonyms were made with")
    with pytest.raises(KeyFileError, match="exists already: not overwritten"):
        create_key_file(path)
    assert path.read_text() == "the key the pseudonyms were made with"


def test_check_config_on_the_example_says_to_run_keygen_which_makes_it_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the example's secret.file, var/pseudonym.key, is relative
    runner = CliRunner()

    before = runner.invoke(app, ["check-config", str(EXAMPLE)])
    assert before.exit_code == 2
    assert ("secret.file: var/pseudonym.key does not exist: create it with "
            "`dmask keygen var/pseudonym.key`") in before.stderr

    made = runner.invoke(app, ["keygen", "var/pseudonym.key"])
    assert made.exit_code == 0, made.output
    assert "created var/pseudonym.key" in made.stdout
    assert mode(tmp_path / "var") == 0o700
    assert runner.invoke(app, ["check-config", str(EXAMPLE)]).exit_code == 0

    again = runner.invoke(app, ["keygen", "var/pseudonym.key"])
    assert again.exit_code == 2
    assert "var/pseudonym.key exists already" in again.stderr
