#!/usr/bin/env python3
"""Write a differencing VHD (Microsoft VHD specification: footer, dynamic
disk header with parent name and locators, BAT, blocks of sector bitmap +
data) over a parent VHD, and the raw image a reader must see through it.

usage: mkdiffvhd.py PARENT.vhd CHILD.vhd EXPECTED.raw PARENT.raw [LOCATORS]

PARENT.raw is the parent's contents (from qemu-img convert). LOCATORS is a
comma list of W2ru, W2ku, MacX, name (parent unicode name only); default
W2ru,W2ku. Block layout (2 MiB blocks, 8 MiB disk):
  block 0: sectors 0-7 and 100-199 present (0x22), others hold 0x33 junk
  block 1: not allocated (parent shows through)
  block 2: all sectors present (0x44)
  block 3: allocated, no sector present (parent shows through)
"""
import os, struct, sys, time

parent, child, expected, parent_raw = sys.argv[1:5]
locs = (sys.argv[5] if len(sys.argv) > 5 else "W2ru,W2ku").split(",")
BS = 2 << 20
SIZE = 8 << 20
SECT = BS // 512
BITMAP = 512

def checksum(b):
    return (~sum(b)) & 0xffffffff

def footer(data_offset):
    f = bytearray(512)
    f[0:8] = b"conectix"
    struct.pack_into(">IIQI", f, 8, 2, 0x00010000, data_offset, int(time.time()) - 946684800)
    f[28:32] = b"win "
    struct.pack_into(">I", f, 32, 0x000a0000)
    f[36:40] = b"Wi2k"
    struct.pack_into(">QQ", f, 40, SIZE, SIZE)
    struct.pack_into(">HBB", f, 56, 963, 4, 17)
    struct.pack_into(">I", f, 60, 4)
    f[68:84] = bytes(range(16))
    struct.pack_into(">I", f, 64, checksum(f))
    return bytes(f)

name = os.path.basename(parent)
entries = []
data_at = 2048
blobs = []
for code in locs:
    if code == "name":
        continue
    if code == "W2ru":
        payload = (".\\" + name).encode("utf-16-le")
    elif code == "W2ku":
        payload = ("C:\\nowhere\\" + name).encode("utf-16-le")
    elif code == "MacX":
        payload = ("file://" + os.path.abspath(parent).replace(" ", "%20")).encode()
    else:
        raise SystemExit("unknown locator " + code)
    entries.append((code.encode(), 1, len(payload), data_at))
    blobs.append((data_at, payload))
    data_at += 512

dyn = bytearray(1024)
dyn[0:8] = b"cxsparse"
struct.pack_into(">QQIII", dyn, 8, 0xffffffffffffffff, 1536, 0x00010000, SIZE // BS, BS)
dyn[40:56] = bytes(16)
pname = name.encode("utf-16-be")
dyn[64:64 + len(pname)] = pname
for i, (code, space, length, off) in enumerate(entries):
    o = 576 + 24 * i
    dyn[o:o + 4] = code
    struct.pack_into(">IIIQ", dyn, o + 4, space, length, 0, off)
struct.pack_into(">I", dyn, 36, checksum(dyn))

first_block = data_at
bat = [0xffffffff] * (SIZE // BS)
blocks = {}
def bitmap(present):
    bm = bytearray(BITMAP)
    for s in present:
        bm[s // 8] |= 0x80 >> (s % 8)
    return bytes(bm)
present0 = set(range(0, 8)) | set(range(100, 200))
blk0 = bytearray(b"\x33" * BS)
for s in present0:
    blk0[s * 512:(s + 1) * 512] = b"\x22" * 512
blocks[0] = (bitmap(present0), bytes(blk0))
blocks[2] = (bitmap(range(SECT)), b"\x44" * BS)
blocks[3] = (bitmap([]), b"\x55" * BS)
at = first_block
for idx in sorted(blocks):
    bat[idx] = at // 512
    at += BITMAP + BS

with open(child, "wb") as f:
    f.write(footer(512))
    f.write(dyn)
    f.write(b"".join(struct.pack(">I", e) for e in bat).ljust(512, b"\0"))
    for off, payload in blobs:
        f.seek(off)
        f.write(payload.ljust(512, b"\0"))
    for idx in sorted(blocks):
        f.seek(bat[idx] * 512)
        f.write(blocks[idx][0] + blocks[idx][1])
    f.write(footer(512))

with open(parent_raw, "rb") as f:
    base = bytearray(f.read())
base = base.ljust(SIZE, b"\0")
for s in present0:
    base[s * 512:(s + 1) * 512] = b"\x22" * 512
base[2 * BS:3 * BS] = b"\x44" * BS
with open(expected, "wb") as f:
    f.write(base)
