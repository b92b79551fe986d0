#!/usr/bin/env python3
"""Generates benchmark data once (skips what exists): a mixed tree of about GIB GiB
(half incompressible, half text-like, sizes from 1 KiB to 64 MiB) and a tree of N small
files in 1,000-file directories. Deterministic (seeded)."""
import os, random, sys

def mixed(root, gib):
    marker = os.path.join(root, ".done")
    if os.path.exists(marker):
        return
    rng = random.Random(42)
    total, target, i = 0, int(gib * (1 << 30)), 0
    words = [b"backup", b"restic", b"cairn", b"sqlite", b"config", b"home", b"assistant", b"jellyfin", b"\n"]
    while total < target:
        d = os.path.join(root, f"dir{i // 500:03d}", f"sub{(i // 50) % 10}")
        os.makedirs(d, exist_ok=True)
        r = rng.random()
        size = rng.randint(1 << 10, 64 << 10) if r < 0.9 else rng.randint(1 << 20, 64 << 20)
        size = min(size, target - total + 1024)
        if rng.random() < 0.5:
            data = os.urandom(size)
        else:
            chunk = b" ".join(rng.choice(words) for _ in range(4096))
            data = (chunk * (size // len(chunk) + 1))[:size]
            data = bytes(data[:size // 2]) + os.urandom(size // 8) + bytes(data[: size - size // 2 - size // 8])
        with open(os.path.join(d, f"f{i:06d}.bin"), "wb") as f:
            f.write(data)
        total += size
        i += 1
    open(marker, "w").close()

def small(root, n):
    marker = os.path.join(root, ".done")
    if os.path.exists(marker):
        return
    for i in range(n):
        d = os.path.join(root, f"d{i // 1000:04d}")
        if i % 1000 == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i}.txt"), "w") as f:
            f.write(f"small file {i}\n" * (1 + i % 50))
    open(marker, "w").close()

if __name__ == "__main__":
    mixed(sys.argv[1], float(sys.argv[2]))
    small(sys.argv[3], int(sys.argv[4]))
