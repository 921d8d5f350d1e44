#!/usr/bin/env python3
"""Write a VMware seSparse image (descriptor NAME.vmdk + extent
NAME-sesparse.vmdk; layout as documented in src/formats/vmdk/vmdk-sesparse.c)
and the raw image a reader must see.

usage: mksesparse.py NAME EXPECTED.raw [FIELD=VALUE ...]

FIELD=VALUE patches a 64-bit field of the constant header by byte offset
(e.g. 24=9 for a bad grain size) or 'vol24=1' for the volatile header, to
make hostile variants. 32 MiB disk, 4 KiB grains, two grain tables:
  grains 0-3 allocated (0x41..), 5 zero, 6 unmapped, 4100 allocated with a
  grain number above 4095 (exercises the split encoding), rest unallocated.
"""
import struct, sys

name, expected = sys.argv[1:3]
patches = sys.argv[3:]
SECT = 512
CAP = 32 << 20
GRAIN = 4096
NGT = 2
GT_SECT = 64
GD_OFF, GT_OFF = 4, 8
GRAINS_OFF = GT_OFF + GT_SECT * NGT
hdr = bytearray(512)
fields = [0xcafebabe, 0x0000000200000001, CAP // SECT, 8, 64, 0, 0, 0, 0, 0,
          1, 1,            # volatile header
          2, 1, 3, 1,      # journal header, journal
          GD_OFF, 1,       # grain directory: one sector (64 entries)
          GT_OFF, GT_SECT * NGT,
          0, 0, 0, 0,      # free bitmap, backmap
          GRAINS_OFF, 8 * 8192]
struct.pack_into("<%dQ" % len(fields), hdr, 0, *fields)
vol = bytearray(512)
struct.pack_into("<4Q", vol, 0, 0xcafecafe, 0, 1, 0)
for p in patches:
    k, v = p.split("=")
    if k.startswith("vol"):
        struct.pack_into("<Q", vol, int(k[3:]), int(v, 0))
    else:
        struct.pack_into("<Q", hdr, int(k), int(v, 0))

gd = [0] * 64
gd[0] = 0x1000000000000000 | 0
gd[1] = 0x1000000000000000 | 1
gts = [[0] * 4096 for _ in range(NGT)]
grains = {}
expect = bytearray(CAP)
def alloc(g, number, byte):
    e = 0x3000000000000000 | ((number & 0xfff) << 48) | (number >> 12)
    gts[g // 4096][g % 4096] = e
    grains[number] = bytes([byte]) * GRAIN
    expect[g * GRAIN:(g + 1) * GRAIN] = bytes([byte]) * GRAIN
for g in range(4):
    alloc(g, g, 0x41 + g)
alloc(4100, 5000, 0x7e)
gts[0][5] = 0x2000000000000000
gts[0][6] = 0x1000000000000000

with open(name + "-sesparse.vmdk", "wb") as f:
    f.write(hdr)
    f.write(vol)
    f.seek(GD_OFF * SECT); f.write(struct.pack("<64Q", *gd))
    for i, t in enumerate(gts):
        f.seek((GT_OFF + i * GT_SECT) * SECT); f.write(struct.pack("<4096Q", *t))
    for number, data in grains.items():
        f.seek((GRAINS_OFF + number * 8) * SECT); f.write(data)
with open(name + ".vmdk", "w") as f:
    f.write('# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n'
            'createType="seSparse"\n\n# Extent description\n'
            'RW %d SESPARSE "%s-sesparse.vmdk"\n\n# The Disk Data Base\n#DDB\n\n'
            'ddb.virtualHWVersion = "14"\nddb.geometry.cylinders = "65"\n'
            'ddb.geometry.heads = "16"\nddb.geometry.sectors = "63"\n'
            'ddb.adapterType = "lsilogic"\n' % (CAP // SECT, name.split("/")[-1]))
with open(expected, "wb") as f:
    f.write(expect)
