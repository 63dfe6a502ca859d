"""Encryption at rest for env values, webhook secrets, GitHub tokens and
notification URLs.

Two kinds of ciphertext, each tagged so it says what it needs:

- ``f1:<token>``: a general value, encrypted with Fernet. Web and agent both
  hold the Fernet keys (``env.fernet``), so the UI can show general values.
- ``s2:<kid>:<b64>``: a secret value, sealed (libsodium's sealed box, as GitHub
  does for Actions secrets) to an X25519 key pair. Web holds only the public
  half (``secrets.pub``) and can seal but never open; the private half
  (``secrets.key``) is read by the agent alone, which starts the containers.

A sealed value is bound to the one place it was sealed for: the sealed
plaintext is ``<purpose>\n<value>``, the purpose naming the field and its
owner (:func:`env_purpose`, :func:`github_token_purpose`,
:func:`notify_url_purpose`), and whoever opens one says which purpose it
expects. A sealed box has no associated data, but nobody can change what it
holds without knowing it, so web (which can write any row and seal anything
it knows) cannot turn a GitHub token or a notification URL it copied into a
secret env var of an app it controls: the agent refuses it, naming the
field. ``s1:`` values, sealed before this binding, are resealed by migration
0012 and refused everywhere else.

Key files hold one base64 key per line, newest first; older lines exist only
while ``paas keys rotate`` runs. Every process re-reads the files when they
change (and once more when a ciphertext fails to open), so a rotation needs no
restart. All files are 0600; on a server the web user owns the Fernet and
public key files, root owns the private key.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NewType

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from paas.errors import PaasError
from paas.files import atomic_write

__all__ = [
    "FERNET_FILE",
    "PRIVATE_FILE",
    "PUBLIC_FILE",
    "DecryptError",
    "KeyMaterial",
    "Keyring",
    "KeysMissing",
    "Purpose",
    "db_password_purpose",
    "describe_purpose",
    "ensure_keys",
    "env_purpose",
    "generate_keys",
    "github_token_purpose",
    "is_secret",
    "notify_url_purpose",
    "write_keys",
]

FERNET_FILE = "env.fernet"
PUBLIC_FILE = "secrets.pub"
PRIVATE_FILE = "secrets.key"

GENERAL_TAG = "f1:"
SECRET_TAG = "s2:"  # noqa: S105  (a format tag, not a password): sealed, bound to its purpose
UNBOUND_TAG = "s1:"  # sealed before binding: migration 0012 reseals these, nothing else opens them


class KeysMissing(PaasError):
    """The key files are absent or unreadable."""


class DecryptError(PaasError):
    """A ciphertext could not be opened with the keys this process holds."""


def is_secret(ciphertext: str) -> bool:
    return ciphertext.startswith((SECRET_TAG, UNBOUND_TAG))


# purposes ----------------------------------------------------------------------------

Purpose = NewType("Purpose", str)
"""What a sealed value is for: its kind and owner, ``env:<app>:<KEY>``,
``github-token:<app>`` or ``notify-url:<app or *>:<target id>``. Made only by
the functions below, from parts that hold no ``:`` or newline, so that one
purpose string means one field."""

_PART = re.compile(r"[A-Za-z0-9_-]{1,255}")
_PURPOSE_LINE = re.compile(r"[a-z-]{1,20}(:[A-Za-z0-9_*-]{1,255}){1,2}")
EVERY_APP = "*"  # a notification target of every app (app names are [a-z0-9-])


def _purpose(kind: str, *parts: str, every_app: bool = False) -> Purpose:
    """``kind:part:part``; ``every_app`` puts ``*`` first, which no name can be."""
    for part in parts:
        if not (isinstance(part, str) and _PART.fullmatch(part)):
            raise DecryptError(f"cannot name the use of a sealed value of {kind}: {part!r} is not a name")
    return Purpose(":".join((kind, *((EVERY_APP,) if every_app else ()), *parts)))


def env_purpose(app: str, key: str) -> Purpose:
    """A secret env var: the app's name and the variable's; any scope, any release."""
    return _purpose("env", app, key)


def github_token_purpose(app: str) -> Purpose:
    return _purpose("github-token", app)


def notify_url_purpose(target_id: int | None, app: str | None) -> Purpose:
    """A notification target's URL: the target and whose events it hears (``None``: every app's)."""
    if type(target_id) is not int or target_id < 1:
        raise DecryptError(f"cannot name the use of a notification URL: {target_id!r} is not a target id")
    if app is None:
        return _purpose("notify-url", str(target_id), every_app=True)
    return _purpose("notify-url", app, str(target_id))


def db_password_purpose(database: str) -> Purpose:
    """A database's password (paas databases): made and opened by the agent only."""
    return _purpose("db-password", database)


def describe_purpose(purpose: str | None) -> str:
    """A purpose in words, for errors (names a field, never a value)."""
    if purpose is None or not _PURPOSE_LINE.fullmatch(purpose):
        return "another use"
    kind, *parts = purpose.split(":")
    if kind == "env" and len(parts) == 2:
        return f"env var {parts[1]} of app {parts[0]}"
    if kind == "github-token" and len(parts) == 1:
        return f"the GitHub token of app {parts[0]}"
    if kind == "db-password" and len(parts) == 1:
        return f"the password of database {parts[0]}"
    if kind == "notify-url" and len(parts) == 2:
        whose = "every app" if parts[0] == EVERY_APP else f"app {parts[0]}"
        return f"the URL of notification target {parts[1]} ({whose})"
    return "another use"


def key_id(public: PublicKey) -> str:
    """A short, stable name for a public key (not secret)."""
    return hashlib.sha256(bytes(public)).hexdigest()[:8]


@dataclass(frozen=True)
class KeyMaterial:
    """Key lists, newest first."""

    fernet: tuple[bytes, ...]
    public: tuple[PublicKey, ...]
    private: tuple[PrivateKey, ...] = ()


def generate_keys() -> KeyMaterial:
    private = PrivateKey.generate()
    return KeyMaterial(fernet=(Fernet.generate_key(),), public=(private.public_key,), private=(private,))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _write_file(path: Path, lines: list[str], *, owner: tuple[int, int] | None) -> None:
    """Write atomically, 0600 from the first byte, then rename into place."""
    atomic_write(path, "\n".join(lines) + "\n", mode=0o600, owner=owner, encoding="ascii")


def _web_owner(web_user: str) -> tuple[int, int] | None:
    """Who should own the files the web process reads (None: whoever runs us)."""
    if not web_user or os.geteuid() != 0:
        return None
    import pwd

    entry = pwd.getpwnam(web_user)
    return entry.pw_uid, entry.pw_gid


def write_keys(keys_dir: Path, material: KeyMaterial, *, web_user: str = "") -> None:
    """Write all three files. The private key goes first, so that nobody can
    seal to a public key whose private half is not yet on disk."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o711)  # noqa: S103  (traverse only: each file is 0600)
    web = _web_owner(web_user)
    if material.private:
        _write_file(keys_dir / PRIVATE_FILE, [_b64(bytes(k)) for k in material.private], owner=None)
    _write_file(keys_dir / PUBLIC_FILE, [_b64(bytes(k)) for k in material.public], owner=web)
    _write_file(keys_dir / FERNET_FILE, [k.decode("ascii") for k in material.fernet], owner=web)


def ensure_keys(keys_dir: Path, *, web_user: str = "") -> bool:
    """Generate the keys if there are none yet. Returns True if it made them.

    Refuses to guess when only some of the files exist: that is a broken or
    partly copied installation, and new keys would orphan every stored value.
    """
    present = [n for n in (FERNET_FILE, PUBLIC_FILE, PRIVATE_FILE) if (keys_dir / n).exists()]
    if len(present) == 3:
        return False
    if present:
        raise KeysMissing(
            f"{keys_dir} holds {', '.join(present)} but not all of {FERNET_FILE}, {PUBLIC_FILE} and "
            f"{PRIVATE_FILE}; restore the missing files from a backup (new keys would make every "
            "stored value unreadable)"
        )
    write_keys(keys_dir, generate_keys(), web_user=web_user)
    return True


def _read_lines(path: Path) -> list[bytes]:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeysMissing(f"no key file {path}: run `paas migrate` as root to create the keys") from None
    except PermissionError:
        raise KeysMissing(f"cannot read the key file {path}: permission denied") from None
    lines = [line.strip().encode("ascii") for line in text.splitlines() if line.strip()]
    if not lines:
        raise KeysMissing(f"the key file {path} is empty")
    return lines


def load_keys(keys_dir: Path, *, private: bool) -> KeyMaterial:
    try:
        fernet = tuple(_read_lines(keys_dir / FERNET_FILE))
        for key in fernet:
            Fernet(key)  # validates
        public = tuple(
            PublicKey(base64.b64decode(k, validate=True)) for k in _read_lines(keys_dir / PUBLIC_FILE)
        )
        secret_keys: tuple[PrivateKey, ...] = ()
        if private:
            secret_keys = tuple(
                PrivateKey(base64.b64decode(k, validate=True)) for k in _read_lines(keys_dir / PRIVATE_FILE)
            )
    except (ValueError, TypeError) as exc:
        raise KeysMissing(f"a key file in {keys_dir} is malformed: {type(exc).__name__}") from None
    return KeyMaterial(fernet=fernet, public=public, private=secret_keys)


class Keyring:
    """The keys one process holds, re-read whenever their files change.

    ``private=False`` (the web process) never opens the private key file: it
    can encrypt both kinds and decrypt general values only.
    """

    def __init__(self, keys_dir: Path, *, private: bool) -> None:
        self.keys_dir = keys_dir
        self.private = private
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[int, int, int], ...] | None = None
        self._fernet: MultiFernet | None = None
        self._seal_to: PublicKey | None = None
        self._openers: dict[str, SealedBox] = {}
        self.refresh()

    @classmethod
    def from_material(cls, material: KeyMaterial) -> Keyring:
        """A keyring over keys in memory (for rotation and tests); never re-reads."""
        ring = cls.__new__(cls)
        ring.keys_dir = Path("/nonexistent")
        ring.private = bool(material.private)
        ring._lock = threading.Lock()
        ring._stamp = ()
        ring._install(material)
        return ring

    def _files(self) -> list[Path]:
        names = [FERNET_FILE, PUBLIC_FILE] + ([PRIVATE_FILE] if self.private else [])
        return [self.keys_dir / n for n in names]

    def _current_stamp(self) -> tuple[tuple[int, int, int], ...]:
        stamp = []
        for path in self._files():
            try:
                st = path.stat()
            except OSError:
                stamp.append((0, 0, 0))
            else:
                stamp.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(stamp)

    def refresh(self, *, force: bool = False) -> None:
        if self._stamp == ():
            return  # in-memory keys
        with self._lock:
            stamp = self._current_stamp()
            if not force and stamp == self._stamp:
                return
            self._install(load_keys(self.keys_dir, private=self.private))
            self._stamp = stamp

    def _install(self, material: KeyMaterial) -> None:
        self._fernet = MultiFernet([Fernet(k) for k in material.fernet])
        self._seal_to = material.public[0]
        self._openers = {key_id(k.public_key): SealedBox(k) for k in material.private}

    # encrypt -----------------------------------------------------------------------

    def encrypt(self, value: str, *, secret: bool = False, purpose: Purpose | None = None) -> str:
        """A general value (Fernet), or a secret one sealed for ``purpose``,
        which a secret needs (a general value is not bound: web reads it anyway)."""
        self.refresh()
        data = value.encode("utf-8")
        if secret:
            if purpose is None:
                raise ValueError("a secret value is sealed for one use: say which (purpose=)")
            return self._seal(purpose.encode("ascii") + b"\n" + data)
        assert self._fernet is not None
        return GENERAL_TAG + self._fernet.encrypt(data).decode("ascii")

    def _seal(self, plaintext: bytes) -> str:
        assert self._seal_to is not None
        sealed = SealedBox(self._seal_to).encrypt(plaintext)
        return f"{SECRET_TAG}{key_id(self._seal_to)}:{_b64(bytes(sealed))}"

    # decrypt -----------------------------------------------------------------------

    def decrypt(self, ciphertext: str, *, purpose: Purpose | None = None) -> str:
        """Open a general value, or (agent only) a secret one, which must have
        been sealed for ``purpose``: one sealed for another field, or before
        values were bound (``s1:``), is a :class:`DecryptError` naming the field."""
        if isinstance(ciphertext, str) and ciphertext.startswith(UNBOUND_TAG):
            raise DecryptError(
                f"refusing the sealed value of {describe_purpose(purpose)}: it was sealed before sealed "
                "values were bound to their use (s1); `paas migrate` as root reseals those stored then, "
                "else set it again"
            )
        plain = self._open_retrying(ciphertext)
        if not ciphertext.startswith(SECRET_TAG):
            return _text(plain)
        found, newline, value = plain.partition(b"\n")
        if purpose is None:
            raise DecryptError("a sealed value is opened only for the use it was sealed for: none was given")
        if not newline or found != purpose.encode("ascii"):
            said = describe_purpose(found.decode("ascii", "replace") if newline else None)
            raise DecryptError(
                f"refusing the sealed value of {describe_purpose(purpose)}: it was sealed for {said} "
                "(copied there from elsewhere?)"
            )
        return _text(value)

    def _open_retrying(self, ciphertext: str) -> bytes:
        if not isinstance(ciphertext, str):
            raise DecryptError("not a paas ciphertext")
        self.refresh()
        try:
            return self._open(ciphertext)
        except DecryptError:
            self.refresh(force=True)  # a rotation may have just written new keys
            return self._open(ciphertext)

    def _open(self, ciphertext: str) -> bytes:
        """The plaintext: a general value's, or a sealed one's with its purpose line."""
        if ciphertext.startswith(GENERAL_TAG):
            assert self._fernet is not None
            try:
                return self._fernet.decrypt(ciphertext[len(GENERAL_TAG) :].encode("ascii"))
            except (InvalidToken, UnicodeError):
                raise DecryptError("a value does not decrypt with the current keys") from None
        for tag in (SECRET_TAG, UNBOUND_TAG):
            if ciphertext.startswith(tag):
                return self._unseal(ciphertext[len(tag) :])
        raise DecryptError("not a paas ciphertext")

    def _unseal(self, kid_and_body: str) -> bytes:
        if not self.private:
            raise DecryptError("secret values can be opened only by the agent")
        kid, _, body = kid_and_body.partition(":")
        box = self._openers.get(kid)
        if box is None:
            raise DecryptError(f"a secret value was sealed to key {kid}, which this server no longer has")
        try:
            return bytes(box.decrypt(base64.b64decode(body, validate=True)))
        except (CryptoError, ValueError, UnicodeError):
            raise DecryptError("a secret value does not open with its key") from None

    def reencrypt(self, ciphertext: str, target: Keyring) -> str:
        """Open with these keys and encrypt under ``target``'s newest ones; a
        sealed value keeps the purpose it was sealed for, byte for byte. An
        unbound (``s1:``) value is refused: binding it is migration 0012's."""
        if isinstance(ciphertext, str) and ciphertext.startswith(UNBOUND_TAG):
            raise DecryptError("an unbound sealed value (s1) is left for `paas migrate` to reseal")
        plain = self._open_retrying(ciphertext)
        if ciphertext.startswith(SECRET_TAG):
            target.refresh()
            return target._seal(plain)
        return target.encrypt(_text(plain))

    def open_unbound(self, ciphertext: str) -> str:
        """An ``s1:`` value in clear: for migration 0012 alone, which seals it
        again for the field it lies in. Nothing else opens an unbound value."""
        if not ciphertext.startswith(UNBOUND_TAG):
            raise DecryptError("not an unbound sealed value")
        return _text(self._open_retrying(ciphertext))


def _text(plain: bytes) -> str:
    try:
        return plain.decode("utf-8")
    except UnicodeError:
        raise DecryptError("a value does not decode as UTF-8") from None
