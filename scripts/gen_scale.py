#!/usr/bin/env python3
"""Generates the file-count tree of scripts/bench-scale.sh: N small files (20 to 300 bytes,
each with unique content, so each is one data blob), 1,000 per directory, 100 directories
per top directory (d0000/d000000/f...). Deterministic. Writes ROOT/.done when complete and
skips the work if it is there.

    gen_scale.py ROOT N
"""
import os
import sys


def main():
    root, n = sys.argv[1], int(sys.argv[2])
    marker = os.path.join(root, ".done")
    if os.path.exists(marker):
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    d = None
    for i in range(n):
        if i % 1000 == 0:
            d = os.path.join(root, f"d{i // 100000:04d}", f"d{i // 1000:06d}")
            os.makedirs(d, exist_ok=True)
        # 20..300 bytes: a header unique to the file, then filler depending on i.
        body = (f"scale file {i}\n" + "x" * ((i * 7919) % 280)).encode()
        fd = os.open(os.path.join(d, f"f{i:08d}"), flags, 0o644)
        try:
            os.write(fd, body)
        finally:
            os.close(fd)
    with open(marker, "w"):
        pass


if __name__ == "__main__":
    main()
