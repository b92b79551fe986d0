#!/usr/bin/env python3
"""Generates benchmark data once (skips what exists): a mixed tree of about GIB GiB
(half incompressible, half unique text-like, 1 KiB to 24 MiB) and, if asked, a tree of N
small files in 1,000-file directories. File sizes and text are seeded; the incompressible
parts are random.

    gen_data.py MIXED_DIR GIB [SMALL_DIR N]
"""
import os, random, sys

def text_pool(rng, size):
    """About SIZE bytes of word-like text from a 2,000-word vocabulary with skewed
    frequencies (zstd ratio about 2-3, like logs, configs and source code)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(2000)]
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    words = rng.choices(vocab, weights, k=size // 6)
    lines, line = [], []
    for w in words:
        line.append(w)
        if len(line) >= rng.randint(6, 14):
            lines.append(" ".join(line))
            line = []
    return ("\n".join(lines) + "\n").encode()[:size]

def unique_text(rng, pool, size):
    """SIZE bytes of text that no other file and no other part of this file repeats: each
    64 KiB piece is a slice of the pool with its own random letter substitution."""
    out, lower = [], bytes(range(97, 123))
    while size > 0:
        n = min(size, 64 << 10)
        start = rng.randrange(0, len(pool) - n)
        perm = bytearray(lower)
        rng.shuffle(perm)
        out.append(pool[start:start + n].translate(bytes.maketrans(lower, bytes(perm))))
        size -= n
    return b"".join(out)

def mixed(root, gib):
    """About GIB GiB in ~11k files per GiB: 99.5% of them 1-64 KiB, the rest 1-24 MiB; half
    of the files incompressible, half unique text with an incompressible eighth."""
    marker = os.path.join(root, ".done")
    if os.path.exists(marker):
        return
    rng = random.Random(42)
    pool = text_pool(rng, 4 << 20)
    total, target, i = 0, int(gib * (1 << 30)), 0
    while total < target:
        d = os.path.join(root, f"dir{i // 500:03d}", f"sub{(i // 50) % 10}")
        os.makedirs(d, exist_ok=True)
        if rng.random() < 0.995:
            size = rng.randint(1 << 10, 64 << 10)
        else:
            size = rng.randint(1 << 20, 24 << 20)
        size = min(size, target - total + 1024)
        if rng.random() < 0.5:
            data = os.urandom(size)
        else:
            data = unique_text(rng, pool, size)
            r = size // 8
            data = data[: size // 2] + os.urandom(r) + data[size // 2 + r:]
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
    if len(sys.argv) > 4:
        small(sys.argv[3], int(sys.argv[4]))
