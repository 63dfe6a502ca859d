"""The keyring: real Fernet and real sealed boxes, on real key files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from paas.crypto import (
    FERNET_FILE,
    PRIVATE_FILE,
    PUBLIC_FILE,
    DecryptError,
    Keyring,
    KeysMissing,
    ensure_keys,
    generate_keys,
    is_secret,
    load_keys,
    write_keys,
)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    assert ensure_keys(path) is True
    return path


def test_key_files_are_0600_and_made_once(keys: Path) -> None:
    for name in (FERNET_FILE, PUBLIC_FILE, PRIVATE_FILE):
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(keys.stat().st_mode) == 0o711
    before = {n: (keys / n).read_bytes() for n in (FERNET_FILE, PUBLIC_FILE, PRIVATE_FILE)}
    assert ensure_keys(keys) is False
    assert before == {n: (keys / n).read_bytes() for n in before}


def test_a_partial_key_directory_is_refused_not_overwritten(keys: Path) -> None:
    (keys / PRIVATE_FILE).unlink()
    with pytest.raises(KeysMissing, match="restore the missing files"):
        ensure_keys(keys)
    assert not (keys / PRIVATE_FILE).exists()


def test_general_values_round_trip_for_web_and_agent(keys: Path) -> None:
    web, agent = Keyring(keys, private=False), Keyring(keys, private=True)
    token = web.encrypt("postgres://u:hunter2@db/shop")
    assert token.startswith("f1:") and "hunter2" not in token
    assert web.decrypt(token) == agent.decrypt(token) == "postgres://u:hunter2@db/shop"
    assert web.encrypt("same") != web.encrypt("same")  # randomised


def test_the_web_side_can_seal_but_never_open_a_secret(keys: Path) -> None:
    web = Keyring(keys, private=False)
    sealed = web.encrypt("sk_live_canary", secret=True)
    assert is_secret(sealed) and "sk_live_canary" not in sealed
    with pytest.raises(DecryptError, match="only by the agent"):
        web.decrypt(sealed)
    assert Keyring(keys, private=True).decrypt(sealed) == "sk_live_canary"


def test_the_web_side_never_reads_the_private_key_file(keys: Path) -> None:
    agent = Keyring(keys, private=True)
    sealed = agent.encrypt("v", secret=True)
    (keys / PRIVATE_FILE).unlink()  # what the web user sees on a server: no readable private key
    web = Keyring(keys, private=False)
    assert web.decrypt(web.encrypt("general")) == "general"
    with pytest.raises(DecryptError):
        web.decrypt(sealed)
    with pytest.raises(KeysMissing, match=PRIVATE_FILE):
        Keyring(keys, private=True)


def test_tampered_or_foreign_ciphertexts_are_refused(keys: Path, tmp_path: Path) -> None:
    agent = Keyring(keys, private=True)
    general, sealed = agent.encrypt("x"), agent.encrypt("y", secret=True)
    other = tmp_path / "other"
    ensure_keys(other)
    stranger = Keyring(other, private=True)
    for bad in (general[:-4] + "AAAA", sealed[:-4] + "AAAA", "plain", "f1:", "s1:nokey:AAAA"):
        with pytest.raises(DecryptError):
            agent.decrypt(bad)
    for foreign in (general, sealed):
        with pytest.raises(DecryptError):
            stranger.decrypt(foreign)


def test_a_running_keyring_picks_up_new_key_files(keys: Path) -> None:
    web = Keyring(keys, private=False)
    old = load_keys(keys, private=True)
    new = generate_keys()
    write_keys(keys, new)
    token = Keyring.from_material(new).encrypt("after")
    assert web.decrypt(token) == "after"  # re-read without a restart
    with pytest.raises(DecryptError):
        web.decrypt(Keyring.from_material(old).encrypt("before"))


def test_malformed_key_files_say_which_directory(keys: Path) -> None:
    (keys / FERNET_FILE).write_text("not-a-key\n")
    with pytest.raises(KeysMissing, match="malformed"):
        Keyring(keys, private=False)
    os.remove(keys / FERNET_FILE)
    with pytest.raises(KeysMissing, match="paas migrate"):
        Keyring(keys, private=False)
