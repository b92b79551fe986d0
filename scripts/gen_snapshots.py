#!/usr/bin/env python3
"""Adds COUNT snapshots to a local restic-format repository by copying existing ones (for
scripts/bench-scale.sh: a repository of 1,000 snapshots without 1,000 backups). Each copy is
one of the given snapshots (cycling) with a new time, 1 s after the newest so far; it is
stored as restic stores a snapshot file: IV, AES-256-CTR of the JSON, Poly1305-AES of the
ciphertext, named by the SHA-256 of those bytes (plain JSON: restic and cairn read both
plain and compressed files).

    gen_snapshots.py REPO MASTERKEY_JSON SNAPSHOTS_JSON COUNT

MASTERKEY_JSON: `cairn cat masterkey`; SNAPSHOTS_JSON: `cairn snapshots --json`.
"""
import base64
import datetime
import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305


def encrypt(key, plaintext):
    enc = base64.b64decode(key["encrypt"])
    k, r = base64.b64decode(key["mac"]["k"]), base64.b64decode(key["mac"]["r"])
    iv = os.urandom(16)
    ct = Cipher(algorithms.AES(enc), modes.CTR(iv)).encryptor().update(plaintext)
    # Poly1305-AES: s = AES-128_k(nonce); Poly1305 clamps r itself, as restic's maskKey does.
    s = Cipher(algorithms.AES(k), modes.ECB()).encryptor().update(iv)
    return iv + ct + Poly1305.generate_tag(r + s, ct)


def main():
    repo, key_path, snaps_path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    key = json.load(open(key_path))
    snaps = json.load(open(snaps_path))
    for s in snaps:
        s.pop("id", None)
        s.pop("short_id", None)
    newest = max(datetime.datetime.fromisoformat(s["time"][:26].rstrip("Z")) for s in snaps)
    for i in range(count):
        s = dict(snaps[i % len(snaps)])
        t = newest + datetime.timedelta(seconds=i + 1)
        s["time"] = t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
        data = encrypt(key, json.dumps(s, separators=(",", ":")).encode())
        name = hashlib.sha256(data).hexdigest()
        with open(os.path.join(repo, "snapshots", name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
