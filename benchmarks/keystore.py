"""What the keystore's key derivation costs per operation: format 6 (8.14+) against format 5.

One operation is what a credentials edit does to a node's keystore: open it (derive the key,
decrypt), add `cluster.remote.ALIAS.credentials`, save it (new salt, derive again, encrypt, atomic
write). Format 6 derives its key with 210000 PBKDF2-HMAC-SHA512 rounds, format 5 with 10000, so
A/B approaches 21 where the KDF dominates. That cost is paid per keystore, on every node, which
is why reloads and keystore edits on many nodes are fanned out rather than run one by one.

    .venv/bin/python benchmarks/keystore.py [--rounds N]
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

import _timing

from esremote.keystore import Keystore, kdf_iterations

SETTING = "cluster.remote.my_remote.credentials"


def edit(path: Path, password: str) -> None:
    keystore = Keystore.load(path, password)
    keystore.set_string(SETTING, secrets.token_urlsafe(48))  # a stand-in for an encoded API key
    keystore.save(path, password)  # keeps the format it was read in


def variant(workdir: Path, version: int, password: str) -> _timing.Variant:
    path = workdir / f"format-{version}.keystore"
    Keystore.create(version=version).save(path, password, version=version)
    return _timing.Variant(f"format {version} ({kdf_iterations(version)} PBKDF2 rounds)",
                           lambda: edit(path, password))


def main() -> None:
    args = _timing.arguments(__doc__, rounds=7).parse_args()
    password = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="esremote-bench-keystore-") as workdir:
        a, b = variant(Path(workdir), 6, password), variant(Path(workdir), 5, password)
        _timing.alternate(a, b, rounds=args.rounds, warmup=args.warmup)
    expected = kdf_iterations(6) / kdf_iterations(5)
    ratio = _timing.report(a, b, goal=f"show what the KDF costs (A/B near {expected:.0f}, the ratio of "
                                      "PBKDF2 rounds, when it is nearly all of an operation)", met=None)
    print(f"each format-6 operation spends about {_timing.seconds(a.median - b.median)} more than format 5; "
          f"A/B = {ratio:.1f} ({expected:.0f} if the KDF were all of it)")


if __name__ == "__main__":
    _timing.run(main)
