#!/usr/bin/env python3
"""Turn a dynamic VHDX made by qemu-img (8 MiB, block_size=1M) into a
differencing VHDX over PARENT (MS-VHDX §2.6.2.6 parent locator, §2.5.1
sector bitmap blocks), and write the raw image a reader must see.

usage: mkdiffvhdx.py CHILD.vhdx PARENT-NAME PARENT.raw EXPECTED.raw [KEY]

KEY names the locator entry holding the path (relative_path by default;
volume_path, absolute_win32_path). The metadata table and BAT carry no
checksums, so only they change. Blocks of 1 MiB:
  0: partially present, sectors 0-7 and 100-199 (0x22), junk 0x33 elsewhere
  1: not present          2: fully present (0x44)
  3: partially present, no sector (junk 0x55)   4: zero   5-7: not present
"""
import struct, sys, uuid

child, pname, parent_raw, expected = sys.argv[1:5]
key = sys.argv[5] if len(sys.argv) > 5 else "relative_path"
MiB = 1 << 20
BS = MiB
SIZE = 8 * MiB
CHUNK = (1 << 23) * 512 // BS          # chunk ratio

def guid(s):
    return uuid.UUID(s).bytes_le

BAT_G = guid("2dc27766-f623-4200-9d64-115e9bfd4a08")
META_G = guid("8b7ca206-4790-4b9a-b8fe-575f050f886e")
FILEPARAM_G = guid("caa16737-fa36-4d43-b3b6-33f0aa44e76b")
LOCATOR_G = guid("a8d35f2d-b30b-454d-abf7-d3d84834ab0c")
PARENT_VHDX_G = guid("b04aefb7-d19e-4a81-b789-25b8e9445913")

f = open(child, "r+b")
f.seek(192 * 1024)
rt = f.read(64 * 1024)
assert rt[0:4] == b"regi"
regions = {}
for i in range(struct.unpack_from("<I", rt, 8)[0]):
    g, off, length, _ = struct.unpack_from("<16sQII", rt, 16 + 32 * i)
    regions[g] = (off, length)
bat_off, bat_len = regions[BAT_G]
meta_off, meta_len = regions[META_G]
assert bat_len >= (CHUNK + 1) * 8

f.seek(meta_off)
table = bytearray(f.read(64 * 1024))
count = struct.unpack_from("<H", table, 10)[0]
for i in range(count):
    e = 32 + 32 * i
    if table[e:e + 16] == FILEPARAM_G:
        ioff = struct.unpack_from("<I", table, e + 16)[0]
        f.seek(meta_off + ioff)
        bsz, flags = struct.unpack("<II", f.read(8))
        assert bsz == BS, bsz
        f.seek(meta_off + ioff + 4)
        f.write(struct.pack("<I", flags | 2))          # has parent

def u16(s):
    return s.encode("utf-16-le")
kv = [("parent_linkage", "{" + str(uuid.uuid4()) + "}"),
      (key, (".\\" if key == "relative_path" else "") + pname)]
if key == "absolute_win32_path":
    kv[1] = (key, "C:\\nowhere\\" + pname)
    kv.append(("relative_path", ".\\" + pname))
hdr = PARENT_VHDX_G + struct.pack("<HH", 0, len(kv))
strings = b""
entries = b""
base = len(hdr) + 12 * len(kv)
for k, v in kv:
    ko = base + len(strings); strings += u16(k)
    vo = base + len(strings); strings += u16(v)
    entries += struct.pack("<IIHH", ko, vo, len(u16(k)), len(u16(v)))
loc = hdr + entries + strings
LOC_AT = 512 * 1024
e = 32 + 32 * count
table[e:e + 32] = LOCATOR_G + struct.pack("<IIII", LOC_AT, len(loc), 6, 0)
struct.pack_into("<H", table, 10, count + 1)
f.seek(meta_off); f.write(table)
f.seek(meta_off + LOC_AT); f.write(loc)

# Payload and sector bitmap blocks at the 1 MiB-aligned end of the file.
f.seek(0, 2)
end = (f.tell() + MiB - 1) // MiB * MiB
bat = [0] * (CHUNK + 1)
present0 = set(range(8)) | set(range(100, 200))
blk0 = bytearray(b"\x33" * BS)
for sct in present0:
    blk0[sct * 512:(sct + 1) * 512] = b"\x22" * 512
layout = [(0, 7, bytes(blk0)), (2, 6, b"\x44" * BS), (3, 7, b"\x55" * BS)]
for b, state, data in layout:
    f.seek(end); f.write(data)
    bat[b] = end | state
    end += BS
bat[4] = 2
sb = bytearray(MiB)
for sct in present0:
    sb[0 * 256 + sct // 8] |= 1 << (sct % 8)
f.seek(end); f.write(sb)
bat[CHUNK] = end | 6
end += MiB
f.seek(bat_off); f.write(b"".join(struct.pack("<Q", x) for x in bat))
f.close()

raw = bytearray(open(parent_raw, "rb").read().ljust(SIZE, b"\0"))
for sct in present0:
    raw[sct * 512:(sct + 1) * 512] = b"\x22" * 512
raw[2 * MiB:3 * MiB] = b"\x44" * MiB
raw[4 * MiB:5 * MiB] = bytes(MiB)
open(expected, "wb").write(raw)
