"""Encryption at rest for env values and the webhook secret.

Two kinds of ciphertext, each tagged so it says what it needs:

- ``f1:<token>``: a general value, encrypted with Fernet. Web and agent both
  hold the Fernet keys (``env.fernet``), so the UI can show general values.
- ``s1:<kid>:<b64>``: a secret value, sealed (libsodium's sealed box, as GitHub
  does for Actions secrets) to an X25519 key pair. Web holds only the public
  half (``secrets.pub``) and can seal but never open; the private half
  (``secrets.key``) is read by the agent alone, which starts the containers.

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
import threading
from dataclasses import dataclass
from pathlib import Path

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
    "ensure_keys",
    "generate_keys",
    "is_secret",
    "write_keys",
]

FERNET_FILE = "env.fernet"
PUBLIC_FILE = "secrets.pub"
PRIVATE_FILE = "secrets.key"

GENERAL_TAG = "f1:"
SECRET_TAG = "s1:"  # noqa: S105  (a format tag, not a password)


class KeysMissing(PaasError):
    """The key files are absent or unreadable."""


class DecryptError(PaasError):
    """A ciphertext could not be opened with the keys this process holds."""


def is_secret(ciphertext: str) -> bool:
    return ciphertext.startswith(SECRET_TAG)


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

    def encrypt(self, value: str, *, secret: bool = False) -> str:
        self.refresh()
        data = value.encode("utf-8")
        if secret:
            assert self._seal_to is not None
            sealed = SealedBox(self._seal_to).encrypt(data)
            return f"{SECRET_TAG}{key_id(self._seal_to)}:{_b64(bytes(sealed))}"
        assert self._fernet is not None
        return GENERAL_TAG + self._fernet.encrypt(data).decode("ascii")

    # decrypt -----------------------------------------------------------------------

    def decrypt(self, ciphertext: str) -> str:
        """Open a general value, or (agent only) a secret one."""
        self.refresh()
        try:
            return self._open(ciphertext)
        except DecryptError:
            self.refresh(force=True)  # a rotation may have just written new keys
            return self._open(ciphertext)

    def _open(self, ciphertext: str) -> str:
        if ciphertext.startswith(GENERAL_TAG):
            assert self._fernet is not None
            try:
                return self._fernet.decrypt(ciphertext[len(GENERAL_TAG) :].encode("ascii")).decode("utf-8")
            except (InvalidToken, UnicodeError):
                raise DecryptError("a value does not decrypt with the current keys") from None
        if ciphertext.startswith(SECRET_TAG):
            if not self.private:
                raise DecryptError("secret values can be opened only by the agent")
            kid, _, body = ciphertext[len(SECRET_TAG) :].partition(":")
            box = self._openers.get(kid)
            if box is None:
                raise DecryptError(f"a secret value was sealed to key {kid}, which this server no longer has")
            try:
                return box.decrypt(base64.b64decode(body, validate=True)).decode("utf-8")
            except (CryptoError, ValueError, UnicodeError):
                raise DecryptError("a secret value does not open with its key") from None
        raise DecryptError("not a paas ciphertext")

    def reencrypt(self, ciphertext: str, target: Keyring) -> str:
        """Open with these keys and encrypt under ``target``'s newest ones."""
        return target.encrypt(self.decrypt(ciphertext), secret=is_secret(ciphertext))
