"""The keyring: real Fernet and real sealed boxes, on real key files."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from nacl.public import SealedBox

from paas.crypto import (
    FERNET_FILE,
    PRIVATE_FILE,
    PUBLIC_FILE,
    DecryptError,
    Keyring,
    KeysMissing,
    ensure_keys,
    env_purpose,
    generate_keys,
    github_token_purpose,
    is_secret,
    key_id,
    load_keys,
    notify_url_purpose,
    write_keys,
)

FOR_SHOP = env_purpose("shop", "API_KEY")


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
    sealed = web.encrypt("sk_live_canary", secret=True, purpose=FOR_SHOP)
    assert is_secret(sealed) and sealed.startswith("s2:") and "sk_live_canary" not in sealed
    with pytest.raises(DecryptError, match="only by the agent"):
        web.decrypt(sealed, purpose=FOR_SHOP)
    assert Keyring(keys, private=True).decrypt(sealed, purpose=FOR_SHOP) == "sk_live_canary"
    with pytest.raises(ValueError, match="purpose"):
        web.encrypt("unbound", secret=True)  # nothing is sealed without saying what for


def test_the_web_side_never_reads_the_private_key_file(keys: Path) -> None:
    agent = Keyring(keys, private=True)
    sealed = agent.encrypt("v", secret=True, purpose=FOR_SHOP)
    (keys / PRIVATE_FILE).unlink()  # what the web user sees on a server: no readable private key
    web = Keyring(keys, private=False)
    assert web.decrypt(web.encrypt("general")) == "general"
    with pytest.raises(DecryptError):
        web.decrypt(sealed)
    with pytest.raises(KeysMissing, match=PRIVATE_FILE):
        Keyring(keys, private=True)


def test_tampered_or_foreign_ciphertexts_are_refused(keys: Path, tmp_path: Path) -> None:
    agent = Keyring(keys, private=True)
    general, sealed = agent.encrypt("x"), agent.encrypt("y", secret=True, purpose=FOR_SHOP)
    other = tmp_path / "other"
    ensure_keys(other)
    stranger = Keyring(other, private=True)
    for bad in (
        general[:-4] + "AAAA",
        sealed[:-4] + "AAAA",
        "plain",
        "f1:",
        "s1:nokey:AAAA",
        "s2:nokey:AAAA",
    ):
        with pytest.raises(DecryptError):
            agent.decrypt(bad, purpose=FOR_SHOP)
    for foreign in (general, sealed):
        with pytest.raises(DecryptError):
            stranger.decrypt(foreign, purpose=FOR_SHOP)


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


# sealed values are bound to their use ----------------------------------------------------


def test_a_sealed_value_opens_only_for_the_purpose_it_was_sealed_for(keys: Path) -> None:
    web, agent = Keyring(keys, private=False), Keyring(keys, private=True)
    sealed = web.encrypt("sk_live_canary", secret=True, purpose=FOR_SHOP)
    assert agent.decrypt(sealed, purpose=env_purpose("shop", "API_KEY")) == "sk_live_canary"
    for elsewhere, named in (
        (env_purpose("shop", "OTHER_KEY"), "env var OTHER_KEY of app shop"),
        (env_purpose("evil", "API_KEY"), "env var API_KEY of app evil"),
        (github_token_purpose("shop"), "the GitHub token of app shop"),
        (notify_url_purpose(3, None), "the URL of notification target 3 (every app)"),
        (notify_url_purpose(3, "shop"), "the URL of notification target 3 (app shop)"),
    ):
        with pytest.raises(DecryptError) as refused:
            agent.decrypt(sealed, purpose=elsewhere)
        said = str(refused.value)
        assert named in said and "env var API_KEY of app shop" in said and "canary" not in said
    with pytest.raises(DecryptError, match="none was given"):
        agent.decrypt(sealed)
    # a general value is not bound: web reads it anyway
    assert agent.decrypt(web.encrypt("general"), purpose=github_token_purpose("shop")) == "general"


def test_web_can_seal_only_what_it_knows_for_another_purpose(keys: Path) -> None:
    """The binding is inside the sealed box: a plaintext line of its own
    cannot be added to a value web copied, and what web seals itself it knew."""
    web, agent = Keyring(keys, private=False), Keyring(keys, private=True)
    token = web.encrypt("ghp_canary", secret=True, purpose=github_token_purpose("shop"))
    kid, _, body = token[len("s2:") :].partition(":")
    spliced = f"s2:{kid}:{body[:-8]}{base64.b64encode(b'env:evil').decode()[:8]}"
    with pytest.raises(DecryptError):
        agent.decrypt(spliced, purpose=env_purpose("evil", "STOLEN"))
    # a value whose plaintext names a purpose in its own words, sealed by web, opens only as that
    forged = web.encrypt("known\nenv:evil:STOLEN", secret=True, purpose=github_token_purpose("evil"))
    with pytest.raises(DecryptError):
        agent.decrypt(forged, purpose=env_purpose("evil", "STOLEN"))


@pytest.mark.parametrize(
    "make",
    [
        lambda: env_purpose("shop", "A:B"),
        lambda: env_purpose("shop:x", "A"),
        lambda: env_purpose("shop", "A\nB"),
        lambda: env_purpose("", "A"),
        lambda: github_token_purpose("shop\n"),
        lambda: notify_url_purpose(0, None),
        lambda: notify_url_purpose(None, "shop"),
        lambda: notify_url_purpose(True, "shop"),
        lambda: notify_url_purpose(2, ""),
    ],
)
def test_a_purpose_is_made_of_plain_names_only(make: Any) -> None:
    """So one purpose string names one field (app "a", key "b:c" is not app "a:b", key "c")."""
    with pytest.raises(DecryptError, match="cannot name the use"):
        make()


def test_rotation_reseals_a_value_for_the_purpose_it_had(keys: Path) -> None:
    old = Keyring(keys, private=True)
    sealed = old.encrypt("v", secret=True, purpose=FOR_SHOP)
    new = Keyring.from_material(generate_keys())
    moved = old.reencrypt(sealed, new)
    assert moved.startswith("s2:") and moved.split(":")[1] != sealed.split(":")[1]
    assert new.decrypt(moved, purpose=FOR_SHOP) == "v"
    with pytest.raises(DecryptError, match="env var API_KEY of app shop"):
        new.decrypt(moved, purpose=github_token_purpose("shop"))
    assert new.decrypt(old.reencrypt(old.encrypt("g"), new)) == "g"


def test_an_unbound_s1_value_opens_only_for_the_migration(keys: Path) -> None:
    agent = Keyring(keys, private=True)
    public = load_keys(keys, private=False).public[0]
    unbound = f"s1:{key_id(public)}:{base64.b64encode(bytes(SealedBox(public).encrypt(b'old'))).decode()}"
    with pytest.raises(DecryptError, match=r"env var API_KEY of app shop.*\(s1\).*paas migrate"):
        agent.decrypt(unbound, purpose=FOR_SHOP)
    with pytest.raises(DecryptError, match="paas migrate"):
        agent.reencrypt(unbound, Keyring.from_material(generate_keys()))
    assert agent.open_unbound(unbound) == "old"  # migration 0012 alone calls this
    with pytest.raises(DecryptError):
        agent.open_unbound(agent.encrypt("bound", secret=True, purpose=FOR_SHOP))


def test_no_app_name_reads_as_every_app() -> None:
    assert notify_url_purpose(4, None) == "notify-url:*:4"
    assert notify_url_purpose(4, "shop") == "notify-url:shop:4"
    with pytest.raises(DecryptError, match="cannot name the use"):
        notify_url_purpose(4, "*")  # a name web wrote into the row is never "every app"
