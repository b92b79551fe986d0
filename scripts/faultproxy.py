#!/usr/bin/env python3
"""A TCP proxy on loopback that breaks HTTP connections on purpose, for fault tests.

    faultproxy.py --target 127.0.0.1:3900 [--seed 1] [--rate 0.3] [--chunk-rate 0.01]
                  [--faults drop,stall,5xx,truncate] [--stall-secs 3] [--port 0] [--log FILE]
                  [--stall-request REGEX [--stall-count 1] [--cut-client]]

Prints `PORT=<n>` on its first line once it listens, then proxies every connection to the
target. Each new connection draws (from a generator seeded with --seed, in accept order)
whether it is faulty (probability --rate) and how:

  drop      the connection is closed after a random number of bytes of the request
            (the server sees half a request, the client a reset or an early EOF);
  stall     the answer stops after a random number of bytes and nothing moves for
            --stall-secs, then the connection is closed (the client's I/O timeout fires);
  5xx       a burst: this and the next 0..4 connections are answered
            `503 Service Unavailable` (or 500) without reaching the server;
  truncate  the answer is cut after a random number of bytes and the connection closed
            (a short body under a Content-Length, or half of a header).

Then every 64 KiB or less moved on a connection breaks it with probability --chunk-rate
(drop or truncate: cut there and closed; stall: cut there, silent, closed), so the long
keep-alive connections of a client's pool meet faults in the middle of their requests.

--stall-request REGEX stalls the first --stall-count requests whose bytes match REGEX, per
value of its first group if it has one (`POST [^ ]*/(data|index)/` stalls a pack upload and
an index upload): the piece holding the match reaches the server, then nothing moves for
--stall-secs and the connection is closed both ways. The client times out and retries while
the server still holds half of the first request: a server that cleans up a broken upload
only when its connection ends (rclone serve restic removes the file) does so after the
retry has written the same name. With --cut-client the client's side is closed at once
(the client sees a reset and may send the request again at once) while the server's side
is held. Deterministic, unlike the random faults.

Faults are counted per kind and written to --log (one line per fault) for diagnosis.
Stdlib only (Python 3.8+), one thread per connection direction; the tests start it.
"""

import argparse
import random
import re
import socket
import sys
import threading
import time

lock = threading.Lock()


def log(args, msg):
    if args.log:
        with lock, open(args.log, "a") as f:
            f.write("%.3f %s\n" % (time.time(), msg))


def pump(args, src, dst, limit, stall, done, n, way):
    """Copies src to dst until `limit` bytes (None: no limit), then stalls and closes.
    Every chunk may also break the connection (--chunk-rate): long keep-alive connections
    carrying many requests meet faults too."""
    sent = 0
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if way == "up" and limit is None and args.take_stall_request(data):
                dst.sendall(data)
                log(args, "conn %d: stall-request after %d bytes" % (n, sent + len(data)))
                if args.cut_client:
                    src.shutdown(socket.SHUT_RDWR)
                time.sleep(args.stall_secs)
                log(args, "conn %d: stall-request ended, closing" % n)
                break
            if limit is None and args.chunk_kinds and args.rng_draw(lambda r: r.random()) < args.chunk_rate:
                kind = args.rng_draw(lambda r: r.choice(args.chunk_kinds))
                limit = sent + args.rng_draw(lambda r: r.randint(0, len(data)))
                stall = args.stall_secs if kind == "stall" else 0
                log(args, "conn %d: %s %s after %d bytes" % (n, kind, way, limit))
            if limit is not None and sent + len(data) >= limit:
                dst.sendall(data[: max(0, limit - sent)])
                if stall:
                    time.sleep(stall)
                break
            dst.sendall(data)
            sent += len(data)
    except OSError:
        pass
    finally:
        done.set()
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def answer_5xx(client):
    client.settimeout(5)
    try:
        buf = b""
        while b"\r\n\r\n" not in buf and len(buf) < 65536:
            data = client.recv(65536)
            if not data:
                break
            buf += data
        status = random.choice([b"503 Service Unavailable", b"500 Internal Server Error"])
        body = b"injected fault\n"
        client.sendall(
            b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\nConnection: close\r\n"
            b"Content-Type: text/plain\r\n\r\n" % len(body) + body
        )
    except OSError:
        pass
    finally:
        client.close()


def cut(r):
    """Where a faulty connection breaks: log-uniform over 1 B .. 4 MiB, so a fault lands in
    headers, in small bodies, and deep into a long keep-alive connection alike."""
    return int(2 ** r.uniform(0, 22))


def handle(args, client, fault, n):
    if fault == "5xx":
        answer_5xx(client)
        return
    try:
        server = socket.create_connection(args.target, timeout=10)
        server.settimeout(None)
    except OSError as e:
        log(args, "conn %d: target unreachable: %s" % (n, e))
        client.close()
        return
    up_limit = down_limit = None
    stall = 0.0
    if fault == "drop":
        up_limit = args.rng_draw(cut)
    elif fault == "stall":
        down_limit = args.rng_draw(cut)
        stall = args.stall_secs
    elif fault == "truncate":
        down_limit = args.rng_draw(cut)
    if fault:
        log(args, "conn %d: %s up=%s down=%s" % (n, fault, up_limit, down_limit))
    done = threading.Event()
    threading.Thread(target=pump, args=(args, client, server, up_limit, 0, done, n, "up"), daemon=True).start()
    threading.Thread(target=pump, args=(args, server, client, down_limit, stall, done, n, "down"), daemon=True).start()
    done.wait()
    # One direction ended: close both (a dropped or cut connection is closed both ways).
    time.sleep(0.05)
    for s in (client, server):
        try:
            s.close()
        except OSError:
            pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate", type=float, default=0.3)
    p.add_argument("--faults", default="drop,stall,5xx,truncate")
    p.add_argument("--chunk-rate", type=float, default=0.0)
    p.add_argument("--stall-secs", type=float, default=3.0)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--log")
    p.add_argument("--stall-request")
    p.add_argument("--stall-count", type=int, default=1)
    p.add_argument("--cut-client", action="store_true")
    args = p.parse_args()
    host, port = args.target.rsplit(":", 1)
    args.target = (host, int(port))
    kinds = [k for k in args.faults.split(",") if k]
    args.chunk_kinds = [k for k in kinds if k != "5xx"]
    rng = random.Random(args.seed)
    rng_lock = threading.Lock()

    def draw(f):
        with rng_lock:
            return f(rng)

    args.rng_draw = draw
    pattern = re.compile(args.stall_request.encode()) if args.stall_request else None
    stalled = {}

    def take_stall_request(data):
        m = pattern.search(data) if pattern else None
        if m is None:
            return False
        key = m.group(1) if m.re.groups else b""
        with rng_lock:
            if stalled.get(key, 0) >= args.stall_count:
                return False
            stalled[key] = stalled.get(key, 0) + 1
            return True

    args.take_stall_request = take_stall_request
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(128)
    print("PORT=%d" % listener.getsockname()[1], flush=True)
    burst = 0
    n = 0
    while True:
        client, _ = listener.accept()
        n += 1
        fault = None
        if burst > 0:
            burst -= 1
            fault = "5xx"
        elif kinds and draw(lambda r: r.random()) < args.rate:
            fault = draw(lambda r: r.choice(kinds))
            if fault == "5xx":
                burst = draw(lambda r: r.randint(0, 4))
        if fault == "5xx":
            log(args, "conn %d: 5xx" % n)
        threading.Thread(target=handle, args=(args, client, fault, n), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
