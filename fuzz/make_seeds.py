#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target to fuzz/seeds/<target>/ (run once; the
seeds are committed). Each seed is a small valid input in the shape the harness expects
(see the doc comment at the top of each src/bin/<target>.rs)."""
import base64, json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
H = "ab" * 32
H2 = "cd" * 32
T = "2024-01-02T03:04:05.123456789+01:00"


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frames(*fs):
    out = b""
    for sel, body in fs:
        if isinstance(body, str):
            body = body.encode()
        out += bytes([sel]) + struct.pack("<H", len(body)) + body
    return out


# pack_header: [u32 LE data length][plaintext header entries]
idb = bytes(range(32))
write("pack_header", "plain", struct.pack("<I", 100) + b"\x00" + struct.pack("<I", 60) + idb
      + b"\x01" + struct.pack("<I", 40) + idb)
write("pack_header", "compressed", struct.pack("<I", 100) + b"\x02" + struct.pack("<II", 60, 200)
      + idb + b"\x03" + struct.pack("<II", 40, 90) + idb)

# index_json
write("index_json", "index", json.dumps({
    "supersedes": [H2],
    "packs": [{"id": H, "blobs": [
        {"id": H, "type": "data", "offset": 0, "length": 38},
        {"id": H2, "type": "tree", "offset": 38, "length": 100, "uncompressed_length": 300}]}]}))

# tree_json
node = {"name": "a.txt", "type": "file", "mode": 420, "mtime": T, "atime": T, "ctime": T,
        "uid": 1000, "gid": 1000, "user": "u", "group": "g", "inode": 5, "device_id": 2049,
        "size": 3, "links": 1, "content": [H],
        "extended_attributes": [{"name": "user.x", "value": "AAE="}]}
write("tree_json", "tree", json.dumps({"nodes": [
    node,
    {"name": "d\\n\\\"q\\x01", "type": "dir", "mode": 2147484141, "mtime": T, "atime": T, "ctime": T,
     "uid": 0, "gid": 0, "user": "root", "inode": 6, "device_id": 2049, "subtree": H2},
    {"name": "l", "type": "symlink", "mode": 134218239, "mtime": T, "linktarget": "../x"},
    {"name": "c", "type": "chardev", "mode": 69206436, "mtime": T, "device": 259}]}))

# snapshot_json
write("snapshot_json", "snapshot", json.dumps({
    "time": T, "parent": H2, "tree": H, "paths": ["/a", "/b/"], "hostname": "h",
    "username": "u", "uid": 1000, "gid": 1000, "excludes": ["*.o"], "tags": ["x", "y"],
    "original": H, "program_version": "restic 0.14.0"}))

# key_file: mode byte 0 = raw key file; 1 = master key JSON [NUL config JSON]
b64 = lambda b: base64.b64encode(b).decode()
write("key_file", "raw", b"\x00" + json.dumps({
    "created": T, "username": "u", "hostname": "h", "kdf": "scrypt", "N": 2, "r": 1, "p": 1,
    "salt": b64(b"\x03" * 16), "data": b64(b"\x00" * 64)}).encode())
write("key_file", "plaintext", b"\x01" + json.dumps({
    "mac": {"k": b64(b"\x01" * 16), "r": b64(b"\x02" * 16)}, "encrypt": b64(b"\x04" * 32)}).encode()
    + b"\x00" + json.dumps({"version": 2, "id": H, "chunker_polynomial": "3da3358b4dc173"}).encode())

# rest: frames answer requests in order (selector 0 = 200, 4 = 404, 8 = 500; see lib.rs)
write("rest", "v2", frames(
    (0, ""), (0, json.dumps([{"name": H, "size": 5}])), (0, json.dumps([H])), (0, "xxxxx"),
    (0, json.dumps([{"name": H2, "size": 100}])), (0, "config"), (0, "snapshot"),
    (11, "0123456789abcdefg"), (0, ""), (0, "")))
write("rest", "errors", frames((4, ""), (4, "not found"), (8, "boom"), (5, "bad"),
                              (0, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n[]")))

# s3
listing = ("<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>t&amp;1"
           "</NextContinuationToken><Contents><Key>prefix/keys/%s</Key><Size>5</Size></Contents>"
           "</ListBucketResult>" % H)
last = ("<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>prefix/snapshots/%s"
        "</Key><Size>7</Size></Contents></ListBucketResult>" % H2)
write("s3", "listing", frames((0, ""), (0, listing), (0, last), (0, last), (0, last), (0, "snap"),
                              (11, "0123456789abcdefg"), (0, ""), (0, "")))
write("s3", "errors", frames(
    (5, "<Error><Code>AuthorizationHeaderMalformed</Code><Message>m</Message><Region>eu-west-1</Region></Error>"),
    (0, ""), (4, "<Error><Code>NoSuchBucket</Code><Message>no &lt;bucket&gt;</Message></Error>"),
    (6, "<Error><Code>AccessDenied</Code></Error>"), (8, "<Error><Code>InternalError</Code></Error>")))

# sftp: first frame answers INIT, then one frame per request (the id is filled in)
def s(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b

FXP_VERSION, FXP_STATUS, FXP_HANDLE, FXP_DATA, FXP_NAME, FXP_ATTRS = 2, 101, 102, 103, 104, 105
version = struct.pack(">I", 3) + s("posix-rename@openssh.com") + s("1") + s("fsync@openssh.com") + s("1")
ok = struct.pack(">I", 0) + s("") + s("")
eof = struct.pack(">I", 1) + s("eof") + s("")
nofile = struct.pack(">I", 2) + s("no such file") + s("")
file_attrs = struct.pack(">I", 1 | 4) + struct.pack(">Q", 5) + struct.pack(">I", 0o100600)
dir_attrs = struct.pack(">I", 4) + struct.pack(">I", 0o040700)
names = struct.pack(">I", 3) + s(".") + s("") + dir_attrs + s(H) + s("-rw") + file_attrs \
    + s("x.tmp-1") + s("") + file_attrs
dirs = struct.pack(">I", 1) + s("ab") + s("") + dir_attrs
write("sftp", "session", frames(
    (FXP_VERSION, version), (FXP_ATTRS, file_attrs),
    (FXP_HANDLE, s("h1")), (FXP_NAME, names), (FXP_STATUS, eof), (FXP_STATUS, ok),
    (FXP_HANDLE, s("h2")), (FXP_NAME, dirs), (FXP_STATUS, eof), (FXP_STATUS, ok),
    (FXP_HANDLE, s("h3")), (FXP_NAME, names), (FXP_STATUS, eof), (FXP_STATUS, ok),
    (FXP_HANDLE, s("h4")), (FXP_ATTRS, file_attrs), (FXP_DATA, s("hello")), (FXP_STATUS, ok),
    (FXP_HANDLE, s("h5")), (FXP_DATA, s("0123456789abcdefg")), (FXP_STATUS, ok)))
write("sftp", "missing", frames((FXP_VERSION, struct.pack(">I", 3)), (FXP_STATUS, nofile),
                                (FXP_STATUS, nofile), (FXP_STATUS, nofile), (FXP_STATUS, nofile)))
