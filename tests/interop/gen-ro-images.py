#!/usr/bin/env python3
"""Deterministic test images for the read-only formats qemu-img 7.2 reads
but cannot create: bochs (redolog "Growing", both header versions), cloop
(V2.0) and dmg (UDIF: koly trailer, blkx tables as XML plist or resource
fork, chunks of every type).

Usage: gen-ro-images.py [DIR]   (default: the current directory)

Writes, for every image NAME.EXT, the guest contents it must read as in
NAME.expect.raw, and a set of hostile variants h-*.{bochs,cloop,dmg} (no
expected contents: tools must refuse them cleanly). Same bytes every run.

Layouts follow what QEMU 7.2's readers expect (block/bochs.c, cloop.c,
dmg.c): multi-byte fields are little-endian in bochs, big-endian in cloop
and dmg.
"""
import bz2
import hashlib
import os
import plistlib
import struct
import sys
import zlib

SECTOR = 512


def pseudo(seed, n):
    """n deterministic pseudo-random bytes."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%s-%d" % (seed.encode(), i)).digest()
        i += 1
    return bytes(out[:n])


def fill(byte, n):
    return bytes([byte]) * n


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- bochs
#
# 512-byte header: magic[32] type[16] subtype[16] version header catalog
# bitmap extent, then (v2) reserved u32 + disk u64, or (v1) disk u64. The
# catalog (u32 per extent, 0xffffffff = not allocated) starts at `header`;
# extents follow it back to back, each as its bitmap blocks (one bit per
# sector, LSB first) then its data blocks.

BOCHS_MAGIC = b"Bochs Virtual HD Image"


def bochs_header(version, hdr_size, catalog, bitmap, extent, disk,
                 magic=BOCHS_MAGIC, typ=b"Redolog", subtype=b"Growing"):
    h = bytearray(512)
    h[0:32] = magic.ljust(32, b"\0")[:32]
    h[32:48] = typ.ljust(16, b"\0")[:16]
    h[48:64] = subtype.ljust(16, b"\0")[:16]
    struct.pack_into("<IIIII", h, 64, version, hdr_size, catalog, bitmap, extent)
    if version == 0x00010000:
        struct.pack_into("<Q", h, 84, disk)
    else:
        struct.pack_into("<IQ", h, 84, 0, disk)
    return h


def make_bochs(version, disk, extent, catalog_n, plan, seed, hdr_size=512):
    """plan: {extent_index: (slot, set_of_present_sectors or None=all)}.
    Returns (image bytes, expected guest bytes)."""
    spe = extent // SECTOR
    bitmap_bytes = (spe + 7) // 8
    bitmap_blocks = 1 + (bitmap_bytes - 1) // SECTOR
    ext_blocks = 1 + (extent - 1) // SECTOR
    catalog = [0xFFFFFFFF] * catalog_n
    nslots = max([s for s, _ in plan.values()], default=-1) + 1
    data_off = hdr_size + 4 * catalog_n
    slots = [bytes((bitmap_blocks + ext_blocks) * SECTOR)] * nslots
    expect = bytearray(disk // SECTOR * SECTOR)
    for idx, (slot, present) in sorted(plan.items()):
        catalog[idx] = slot
        payload = pseudo("%s-%d" % (seed, idx), extent)
        bm = bytearray(bitmap_blocks * SECTOR)
        body = bytearray(ext_blocks * SECTOR)
        for s in range(spe):
            if present is not None and s not in present:
                # not present: the bytes on disk are garbage that must not show
                body[s * SECTOR:(s + 1) * SECTOR] = fill(0xEE, SECTOR)
                continue
            bm[s // 8] |= 1 << (s % 8)
            body[s * SECTOR:(s + 1) * SECTOR] = payload[s * SECTOR:(s + 1) * SECTOR]
            g = idx * extent + s * SECTOR
            if g < len(expect):
                expect[g:g + SECTOR] = payload[s * SECTOR:(s + 1) * SECTOR][:len(expect) - g]
        slots[slot] = bytes(bm) + bytes(body)
    hdr = bochs_header(version, hdr_size, catalog_n, bitmap_bytes, extent, disk)
    img = bytes(hdr).ljust(hdr_size, b"\0") + struct.pack("<%dI" % catalog_n, *catalog)
    assert len(img) == data_off
    img += b"".join(slots)
    return img, bytes(expect)


# ---------------------------------------------------------------- cloop
#
# A shell preamble of 128 bytes, then block_size and n_blocks (u32 BE), then
# n_blocks + 1 u64 BE offsets; block i is the zlib stream at
# [offsets[i], offsets[i+1]) that inflates to exactly block_size bytes.

CLOOP_MAGIC = (b"#!/bin/sh\n#V2.0 Format\n"
               b"modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n")


def make_cloop(block_size, blocks, level=9):
    n = len(blocks)
    comp = [zlib.compress(b, level) for b in blocks]
    offs = [128 + 8 + 8 * (n + 1)]
    for c in comp:
        offs.append(offs[-1] + len(c))
    img = CLOOP_MAGIC.ljust(128, b"\0") + struct.pack(">II", block_size, n)
    img += struct.pack(">%dQ" % (n + 1), *offs) + b"".join(comp)
    return img


def cloop_blocks(block_size, n, seed):
    out = []
    for i in range(n):
        if i % 3 == 1:
            b = bytes(block_size)                   # compresses to nothing
        elif i % 3 == 2:
            b = (fill(0x5A, block_size // 2) + pseudo("%s-%d" % (seed, i), block_size))[:block_size]
        else:
            b = pseudo("%s-%d" % (seed, i), block_size)
        out.append(b)
    return out


# ---------------------------------------------------------------- dmg
#
# UDIF: the data fork (chunk payloads), the blkx table as base64 <data> in an
# XML plist or as resources in a resource fork, then the 512-byte "koly"
# trailer at the very end: data fork offset at 0x18, resource fork offset and
# length at 0x28/0x30, plist offset and length at 0xd8/0xe0, sector count at
# 0x1ec. A "mish" block: first sector at 8, data offset at 0x18, chunk
# entries from 204, 40 bytes each (type, comment, sector, count, offset,
# length; sector and offset relative to the block's own bases).

UDZE, UDRW, UDIG = 0, 1, 2
UDZO, UDBZ, ULFO = 0x80000005, 0x80000006, 0x80000007
UDCM, UDLE = 0x7FFFFFFE, 0xFFFFFFFF


def koly(data_fork_off, data_fork_len, rsrc_off, rsrc_len, xml_off, xml_len, sectors):
    k = bytearray(512)
    k[0:4] = b"koly"
    struct.pack_into(">III", k, 4, 4, 512, 1)
    struct.pack_into(">QQQQQ", k, 0x10, 0, data_fork_off, data_fork_len, rsrc_off, rsrc_len)
    struct.pack_into(">II", k, 0x38, 1, 1)
    struct.pack_into(">QQ", k, 0xD8, xml_off, xml_len)
    struct.pack_into(">IQ", k, 0x1E8, 1, sectors)
    return bytes(k)


def mish(first_sector, sector_count, data_off, entries):
    """entries: (type, sector, count, offset, length), relative values."""
    m = bytearray(204)
    m[0:4] = b"mish"
    struct.pack_into(">IQQQII", m, 4, 1, first_sector, sector_count, data_off, 0, 0)
    struct.pack_into(">I", m, 0xC8, len(entries))
    for t, s, c, o, ln in entries:
        m += struct.pack(">IIQQQQ", t, 0, s, c, o, ln)
    return bytes(m)


def plist_xml(mishes):
    blkx = [{"Attributes": "0x0050", "CFName": "part %d" % i, "Data": m, "ID": str(i - 1),
             "Name": "part %d" % i} for i, m in enumerate(mishes)]
    return plistlib.dumps({"resource-fork": {"blkx": blkx}}, fmt=plistlib.FMT_XML,
                          sort_keys=True)


def rsrc_fork(mishes):
    """Classic resource fork: header (data offset, map offset, data length,
    map length), the data as length-prefixed resources, then a map (ignored
    by qemu, so a minimal one)."""
    data = b"".join(struct.pack(">I", len(m)) + m for m in mishes)
    hdr = struct.pack(">IIII", 256, 256 + len(data), len(data), 30)
    return hdr.ljust(256, b"\0") + data + bytes(30)


class Dmg:
    """Builds a dmg from partitions of chunks. A chunk is (type, guest bytes);
    the builder picks the payload and records the expected guest bytes."""

    def __init__(self, lead=b""):
        self.fork = bytearray(lead)     # data fork starts at file offset 0
        self.mishes = []
        self.expect = bytearray()
        self.sector = 0

    def partition(self, chunks, data_base=0):
        """chunks: list of (type, data). data_base: the mish's data offset
        (payload offsets are stored relative to it)."""
        first = self.sector
        base = len(self.fork) + data_base
        self.fork += bytes(data_base)
        entries = []
        rel = 0
        for t, data in chunks:
            n = (len(data) + SECTOR - 1) // SECTOR if data else 0
            off = len(self.fork) - base
            if t == UDZO:
                payload = zlib.compress(data, 6)
            elif t == UDBZ:
                payload = bz2.compress(data, 9)
            elif t == UDRW:
                payload = data
            elif t == ULFO:
                payload = pseudo("lzfse", 100)  # never decoded by qemu 7.2 here
            else:
                payload = b""
            self.fork += payload
            if t in (UDCM, UDLE):
                entries.append((t, rel, 0, off, 0))
                continue
            entries.append((t, rel, n, off, len(payload)))
            rel += n
            guest = data if t in (UDZO, UDBZ, UDRW, ULFO) else bytes(n * SECTOR)
            self.expect += guest.ljust(n * SECTOR, b"\0")
        self.sector += rel
        self.mishes.append(mish(first, rel, base, entries))
        # sector numbers in entries are relative to the mish's first sector
        return self

    def build(self, form="xml", sectors=None):
        fork = bytes(self.fork)
        if sectors is None:
            sectors = self.sector
        if form == "xml":
            x = plist_xml(self.mishes)
            img = fork + x
            img += koly(0, len(fork), 0, 0, len(fork), len(x), sectors)
        else:
            r = rsrc_fork(self.mishes)
            img = fork + r
            img += koly(0, len(fork), len(fork), len(r), 0, 0, sectors)
        return img, bytes(self.expect)


def dmg_basic():
    d = Dmg()
    d.partition([
        (UDRW, pseudo("dmg-raw0", 8 * SECTOR)),
        (UDZE, bytes(16 * SECTOR)),
        (UDZO, pseudo("dmg-z0", 4096) + fill(0x11, 60 * 1024)),
        (UDCM, b""),
        (UDIG, bytes(3 * SECTOR)),
        (UDRW, pseudo("dmg-raw1", 1024)),
        (UDLE, b""),
    ])
    d.partition([
        (UDZO, fill(0xAB, 128 * 1024)),
        (UDZE, bytes(2048 * SECTOR)),            # 1 MiB of zeros
        (UDZO, pseudo("dmg-z1", 33 * SECTOR)),
        (UDLE, b""),
    ], data_base=1024)
    return d


def dmg_bz2():
    d = Dmg()
    d.partition([
        (UDBZ, pseudo("dmg-bz0", 4 * SECTOR) + fill(0x77, 20 * SECTOR)),
        (UDZE, bytes(8 * SECTOR)),
        (UDZO, pseudo("dmg-z2", 12 * SECTOR)),
        (UDBZ, fill(0x42, 64 * 1024)),
        (UDRW, pseudo("dmg-raw2", 2 * SECTOR)),
        (UDIG, bytes(4 * SECTOR)),
        (UDLE, b""),
    ])
    return d


def dmg_lzfse():
    d = Dmg()
    d.partition([
        (UDRW, pseudo("dmg-raw3", 4 * SECTOR)),
        (ULFO, pseudo("dmg-lz", 8 * SECTOR)),
        (UDZE, bytes(4 * SECTOR)),
        (UDLE, b""),
    ])
    return d


# ---------------------------------------------------------------- hostile

def patch(img, off, fmt, val):
    b = bytearray(img)
    if off < 0:
        off += len(b)
    struct.pack_into(fmt, b, off, val)
    return bytes(b)


def hostile(out):
    """Variants of the good images with one field broken each."""
    bimg, _ = make_bochs(0x00020000, 1 << 20, 64 * 1024, 16,
                         {0: (0, None), 3: (1, {0, 5})}, "hb")
    h = {}
    h["h-bochs-magic.bochs"] = patch(bimg, 0, "<I", 0x636f6278)
    h["h-bochs-subtype.bochs"] = bimg[:48] + b"Undoable".ljust(16, b"\0") + bimg[64:]
    h["h-bochs-version.bochs"] = patch(bimg, 64, "<I", 0x00030000)
    h["h-bochs-catalog-huge.bochs"] = patch(bimg, 72, "<I", 0x100001)
    h["h-bochs-catalog-max.bochs"] = patch(bimg, 72, "<I", 0x100000)
    h["h-bochs-catalog-small.bochs"] = patch(bimg, 72, "<I", 15)
    h["h-bochs-extent-small.bochs"] = patch(bimg, 80, "<I", 256)
    h["h-bochs-extent-pow2.bochs"] = patch(bimg, 80, "<I", 65536 + 512)
    h["h-bochs-extent-big.bochs"] = patch(bimg, 80, "<I", 16 << 20)
    h["h-bochs-disk-huge.bochs"] = patch(bimg, 88, "<Q", 1 << 62)
    h["h-bochs-header-off.bochs"] = patch(bimg, 68, "<I", 0xFFFFFF00)
    h["h-bochs-truncated.bochs"] = bimg[:300]
    h["h-bochs-short-catalog.bochs"] = bimg[:520]
    h["h-bochs-entry-far.bochs"] = patch(bimg, 512, "<I", 0x7FFFFFFF)
    h["h-bochs-entry-max.bochs"] = patch(bimg, 512, "<I", 0xFFFFFFFE)
    h["h-bochs-bitmap-zero.bochs"] = patch(patch(bimg, 76, "<I", 0), 512 + 12, "<I", 0xFFFFFFF0)

    blocks = cloop_blocks(4096, 4, "hc")
    cimg = make_cloop(4096, blocks)
    tbl = 136
    h["h-cloop-magic.cloop"] = b"#!/bin/bash\n" + cimg[12:]
    h["h-cloop-bs-odd.cloop"] = patch(cimg, 128, ">I", 1000)
    h["h-cloop-bs-zero.cloop"] = patch(cimg, 128, ">I", 0)
    h["h-cloop-bs-big.cloop"] = patch(cimg, 128, ">I", 128 << 20)
    h["h-cloop-bs-max.cloop"] = patch(cimg, 128, ">I", 64 << 20)
    h["h-cloop-nblocks-huge.cloop"] = patch(cimg, 132, ">I", 0xFFFFFFFF)
    h["h-cloop-nblocks-limit.cloop"] = patch(cimg, 132, ">I", 536870912)
    h["h-cloop-nblocks-offsets.cloop"] = patch(cimg, 132, ">I", 67108864)
    h["h-cloop-nblocks-many.cloop"] = patch(cimg, 132, ">I", 1000)
    h["h-cloop-nblocks-zero.cloop"] = patch(cimg, 132, ">I", 0)
    # 32769 blocks of 64 MiB: 2^32 + 2^17 sectors, which qemu keeps in 32
    # bits (64 MiB); the offsets table lies past the end (zeros)
    h["h-cloop-wrap.cloop"] = patch(patch(cimg[:136], 128, ">I", 64 << 20), 132, ">I", 32769)
    h["h-cloop-not-monotonic.cloop"] = patch(cimg, tbl + 16, ">Q", 10)
    h["h-cloop-block-huge.cloop"] = patch(cimg, tbl + 32, ">Q", 1 << 40)
    h["h-cloop-past-eof.cloop"] = patch(cimg, tbl + 32, ">Q", len(cimg) + 100000)
    h["h-cloop-offset-max.cloop"] = patch(cimg, tbl + 24, ">Q", (1 << 64) - 1)
    h["h-cloop-truncated.cloop"] = cimg[:200]
    h["h-cloop-header-only.cloop"] = cimg[:136]
    h["h-cloop-short.cloop"] = cimg[:100]
    h["h-cloop-bad-zlib.cloop"] = patch(cimg, len(cimg) - 40, ">Q", 0x0123456789abcdef)
    h["h-cloop-empty.cloop"] = b""

    d = dmg_basic()
    dimg, _ = d.build("xml")
    kol = len(dimg) - 512
    h["h-dmg-magic.dmg"] = patch(dimg, kol, ">I", 0x6b6f6c78)
    h["h-dmg-tiny.dmg"] = dimg[-300:]
    h["h-dmg-empty.dmg"] = b""
    h["h-dmg-trailer-shifted.dmg"] = dimg + b"xyz"
    h["h-dmg-trailer-lost.dmg"] = dimg + bytes(600)
    h["h-dmg-datafork.dmg"] = patch(dimg, kol + 0x18, ">Q", kol + 1)
    h["h-dmg-xml-len.dmg"] = patch(dimg, kol + 0xE0, ">Q", kol)
    h["h-dmg-xml-zero.dmg"] = patch(dimg, kol + 0xE0, ">Q", 0)
    h["h-dmg-sectors-neg.dmg"] = patch(dimg, kol + 0x1EC, ">Q", 1 << 63)
    h["h-dmg-sectors-huge.dmg"] = patch(dimg, kol + 0x1EC, ">Q", 1 << 60)
    h["h-dmg-sectors-big.dmg"] = patch(dimg, kol + 0x1EC, ">Q", 1 << 53)
    h["h-dmg-sectors-short.dmg"] = patch(dimg, kol + 0x1EC, ">Q", 10)
    h["h-dmg-sectors-long.dmg"] = patch(dimg, kol + 0x1EC, ">Q", d.sector + 64)
    h["h-dmg-rsrc-off.dmg"] = patch(dimg, kol + 0x28, ">Q", kol + 5)

    # hand-made chunk tables
    def table(entries, sectors, fork=b"", form="xml", mish_sector=0, data_off=0, count=None):
        m = mish(mish_sector, sectors, data_off, entries)
        if count is not None:
            m = m[:count]
        if form == "xml":
            x = plist_xml([m])
            return fork + x + koly(0, len(fork), 0, 0, len(fork), len(x), sectors)
        r = rsrc_fork([m])
        return fork + r + koly(0, len(fork), len(fork), len(r), 0, 0, sectors)

    raw = pseudo("t", 4096)
    h["h-dmg-count-max.dmg"] = table([(UDZO, 0, 131073, 0, 100)], 131073, raw)
    h["h-dmg-count-zero-ok.dmg"] = table([(UDZE, 0, 1 << 40, 0, 0)], 1 << 40, raw)
    h["h-dmg-len-max.dmg"] = table([(UDRW, 0, 8, 0, (64 << 20) + 1)], 8, raw)
    h["h-dmg-len-zero-chunk.dmg"] = table([(UDZE, 0, 8, 0, (64 << 20) + 1)], 8, raw)
    h["h-dmg-raw-past-eof.dmg"] = table([(UDRW, 0, 8, 1 << 30, 4096)], 8, raw)
    h["h-dmg-raw-offset-neg.dmg"] = table([(UDRW, 0, 8, (1 << 63) + 4096, 4096)], 8, raw)
    h["h-dmg-zlib-past-eof.dmg"] = table([(UDZO, 0, 8, 1 << 30, 4096)], 8, raw)
    h["h-dmg-zlib-garbage.dmg"] = table([(UDZO, 0, 8, 0, 4096)], 8, raw)
    h["h-dmg-zlib-short.dmg"] = table([(UDZO, 0, 16, 0, len(zlib.compress(raw))),
                                       (UDLE, 0, 0, 0, 0)], 16, zlib.compress(raw))
    h["h-dmg-raw-short.dmg"] = table([(UDRW, 0, 16, 0, 4096)], 16, raw)
    h["h-dmg-gap.dmg"] = table([(UDRW, 0, 4, 0, 2048), (UDRW, 6, 2, 2048, 1024)], 8, raw)
    h["h-dmg-unknown-type.dmg"] = table([(UDRW, 0, 4, 0, 2048), (0x80000004, 4, 4, 2048, 1024)],
                                        8, raw)
    h["h-dmg-unsorted.dmg"] = table([(UDRW, 4, 4, 0, 2048), (UDZE, 0, 4, 0, 0)], 8, raw)
    h["h-dmg-no-chunks.dmg"] = table([], 8, raw)
    h["h-dmg-mish-short.dmg"] = table([(UDRW, 0, 8, 0, 4096)], 8, raw, count=243)
    h["h-dmg-mish-partial-entry.dmg"] = table([(UDRW, 0, 4, 0, 2048), (UDRW, 4, 4, 2048, 2048)],
                                              8, raw, count=204 + 40 + 39)
    h["h-dmg-rsrc.dmg"] = table([(UDRW, 0, 8, 0, 4096)], 8, raw, form="rsrc")
    r = table([(UDRW, 0, 8, 0, 4096)], 8, raw, form="rsrc")
    k = len(r) - 512
    h["h-dmg-rsrc-dataoff.dmg"] = patch(r, 4096, ">I", 100000)
    h["h-dmg-rsrc-count0.dmg"] = patch(r, 4096 + 8, ">I", 0)
    h["h-dmg-rsrc-count-big.dmg"] = patch(r, 4096 + 8, ">I", 0xFFFFFF00)
    h["h-dmg-rsrc-res-len.dmg"] = patch(r, 4096 + 256, ">I", 0x7FFFFFFF)
    h["h-dmg-rsrc-len.dmg"] = patch(r, k + 0x30, ">Q", 1 << 62)
    # XML: unterminated <data>, huge length, garbage base64, NUL inside
    x = table([(UDRW, 0, 8, 0, 4096)], 8, raw)
    xs = x.replace(b"</data>", b"</dat>", 1)
    h["h-dmg-xml-unterminated.dmg"] = xs
    h["h-dmg-xml-huge.dmg"] = patch(x, len(x) - 512 + 0xE0, ">Q", (16 << 20) + 1)
    i = x.index(b"<data>") + 6
    h["h-dmg-xml-garbage.dmg"] = x[:i] + b"!!@@##$$%%" + x[i + 10:]
    h["h-dmg-xml-nul.dmg"] = x[:i] + b"\0" + x[i + 1:]
    h["h-dmg-xml-padding.dmg"] = x[:i] + b"=" + x[i + 1:]
    # lzfse (no decoder in qemu 7.2 as packaged): warned, dropped, I/O error
    img, _ = dmg_lzfse().build("xml")
    h["h-dmg-lzfse.dmg"] = img
    # bochs/cloop content named .dmg: probing ties
    h["h-cloop-named.dmg"] = cimg
    h["h-bochs-named.dmg"] = bimg

    for name, data in sorted(h.items()):
        write(os.path.join(out, name), data)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    images = {}
    # bochs v2: 1 MiB, 64 KiB extents, extents stored out of order, holes,
    # partly present extents
    images["b2.bochs"] = make_bochs(0x00020000, 1 << 20, 64 * 1024, 16,
                                    {0: (2, None), 1: (0, {0, 1, 2, 64, 127}),
                                     5: (1, None), 15: (3, set(range(100, 128)))}, "b2")
    # bochs v1 (older header: disk size at 84), disk not a multiple of the
    # extent, catalog larger than needed, header size > 512
    images["b1.bochs"] = make_bochs(0x00010000, 300 * 1024 + 512 + 100, 4096, 80,
                                    {0: (0, None), 7: (1, {3}), 75: (2, None)}, "b1",
                                    hdr_size=1024)
    # an empty (all unallocated) bochs
    images["b0.bochs"] = make_bochs(0x00020000, 256 * 1024, 8192, 32, {}, "b0")
    bs = 64 * 1024
    blocks = cloop_blocks(bs, 7, "c")
    images["c.cloop"] = (make_cloop(bs, blocks), b"".join(blocks))
    blocks = cloop_blocks(512, 3, "c512")
    images["c512.cloop"] = (make_cloop(512, blocks), b"".join(blocks))
    images["d.dmg"] = dmg_basic().build("xml")
    images["drsrc.dmg"] = dmg_basic().build("rsrc")
    images["dbz.dmg"] = dmg_bz2().build("xml")
    for name, (img, exp) in images.items():
        write(os.path.join(out, name), img)
        write(os.path.join(out, name.rsplit(".", 1)[0] + ".expect.raw"), exp)
    hostile(out)


if __name__ == "__main__":
    main()
