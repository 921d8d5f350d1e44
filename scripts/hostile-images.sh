#!/usr/bin/env bash
# scripts/hostile-images.sh [--quick] [QIMG] — run qimg over hostile images.
#
# Makes valid images of every format with the real qemu-img/qemu-io, patches
# them with python3 into hostile ones (truncations, oversized tables and
# counts, out-of-range offsets, bad checksums, backing loops, a 1000-deep
# backing chain, absurd snapshot counts, VMDK extents escaping the folder or
# naming absolute paths and devices), then runs on each
#     qimg info | info --output=json | check | map | inspect | convert -O raw
# under `timeout 10` and `prlimit --as=1073741824` (1 GiB of address space;
# for a sanitizer build, whose shadow memory needs more, ASan's own
# max_allocation_size_mb=1024 stands in for it and any sanitizer report
# aborts). It counts
#     crashes:  exit status >= 128 (a signal: SEGV, abort, sanitizer report)
#     hangs:    the timeout fired
#     leftover: files the commands left outside the convert output they were
#               asked to write (hostile paths must not create files)
# and exits non-zero when any count is not zero. Clean errors (exit 1..127)
# are the expected outcome and are not counted.
#
# --quick: a smaller set (a truncation and a few patched images per format,
# human info left out), for `make check` (tests/interop/hostile.sh).
# Environment: QIMG (default build/qimg), QEMU_IMG, QEMU_IO, KEEP_TMP=1,
# VERBOSE=1 (print every run and the slowest ones), TIMEOUT (seconds, default
# 10). The full set is meant for a release build: under ASan the 500- and
# 1000-deep chains and the 65536-snapshot image take longer than 10 s (as
# they take qemu-img 17-29 s); --quick fits a sanitizer build.
set -u
export LC_ALL=C

quick=0
if [ "${1:-}" = --quick ]; then
    quick=1
    shift
fi
here=$(cd "$(dirname "$0")/.." && pwd)
QIMG=${1:-${QIMG:-$here/build/qimg}}
QIMG=$(cd "$(dirname "$QIMG")" && pwd)/$(basename "$QIMG")
QEMU_IMG=${QEMU_IMG:-qemu-img}
QEMU_IO=${QEMU_IO:-qemu-io}
TIMEOUT=${TIMEOUT:-10}
[ -x "$QIMG" ] || { echo "hostile-images.sh: no qimg at $QIMG" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qimg-hostile.XXXXXX")
if [ "${KEEP_TMP:-0}" = 1 ]; then echo "# temp dir: $tmp" >&2; else trap 'rm -rf "$tmp"' EXIT; fi
src=$tmp/src          # valid images made by qemu-img
box=$tmp/box          # the hostile images; commands run here
mkdir -p "$src" "$box/sub"

# ---------------------------------------------------------------- valid images
(
    set -e
    cd "$src"
    q() { "$QEMU_IMG" "$@" >/dev/null; }
    fill() { "$QEMU_IO" -f "$2" -c 'write -P 0x11 0 4k' -c 'write -P 0x22 64k 8k' "$1" >/dev/null; }
    q create -f qcow2 -o cluster_size=4k qcow2.img 1M && fill qcow2.img qcow2
    q snapshot -c s1 qcow2.img
    q create -f qcow2 -o compat=0.10 qcow2v2.img 1M && fill qcow2v2.img qcow2
    q create -f raw raw.img 256k
    "$QEMU_IO" -f raw -c 'write -P 0x33 0 64k' raw.img >/dev/null
    q convert -c -O qcow2 -o cluster_size=4k raw.img qcow2c.img
    q create -f qcow qcow.img 1M && fill qcow.img qcow
    q create -f qed -o cluster_size=4k,table_size=4 qed.img 1M && fill qed.img qed
    q create -f vmdk vmdk.img 1M && fill vmdk.img vmdk
    q convert -O vmdk -o subformat=streamOptimized raw.img vmdks.img
    q create -f vmdk -o subformat=monolithicFlat vmdkf.vmdk 64k
    q create -f vhdx -o block_size=1M,log_size=1M vhdx.img 2M && fill vhdx.img vhdx
    q create -f vdi vdi.img 2M && fill vdi.img vdi
    q create -f vpc vpc.img 2M && fill vpc.img vpc
    q create -f vpc -o subformat=fixed vpcf.img 256k
    q create -f parallels -o cluster_size=4k parallels.img 1M && fill parallels.img parallels
    # qemu's PBKDF benchmark fails on a busy machine ("Unable to get accurate
    # CPU usage"): retry with longer iteration times
    for t in 10 50 200 1000; do
        q create --object secret,id=s,data=x -f luks -o key-secret=s,iter-time=$t luks.img 64k 2>/dev/null && break
    done
) || { echo "hostile-images.sh: could not make the valid images with $QEMU_IMG" >&2; exit 2; }

# -------------------------------------------------------------- hostile images
python3 - "$src" "$box" "$quick" <<'PY' || { echo "hostile-images.sh: generator failed" >&2; exit 2; }
import os, struct, sys, zlib
src, box, quick = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
made = []

def rd(n):
    with open(os.path.join(src, n), "rb") as f:
        return bytearray(f.read())

def out(name, data, full_only=False):
    if quick and full_only:
        return
    with open(os.path.join(box, name), "wb") as f:
        f.write(data)
    made.append(name)

def be(b, off, fmt, v):
    b[off:off + struct.calcsize(">" + fmt)] = struct.pack(">" + fmt, v)
    return b

def le(b, off, fmt, v):
    b[off:off + struct.calcsize("<" + fmt)] = struct.pack("<" + fmt, v)
    return b

def patched(name, *edits):
    b = rd(name)
    for e in edits:
        e(b)
    return b

B = lambda off, fmt, v: (lambda b: be(b, off, fmt, v))
L = lambda off, fmt, v: (lambda b: le(b, off, fmt, v))

def crc32c(data, crc=0):
    crc ^= 0xffffffff
    for x in data:
        crc ^= x
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82f63b78 & -(crc & 1))
    return crc ^ 0xffffffff

def truncations(tag, name, points):
    b = rd(name)
    for p in points:
        if p < len(b):
            out(f"{tag}-trunc-{p}", b[:p], full_only=p != points[1])

# --- every format: truncated copies
for tag, name in [("qcow2", "qcow2.img"), ("qcow", "qcow.img"), ("qed", "qed.img"),
                  ("vmdk", "vmdk.img"), ("vhdx", "vhdx.img"), ("vdi", "vdi.img"),
                  ("vpc", "vpc.img"), ("parallels", "parallels.img"), ("luks", "luks.img"),
                  ("vmdks", "vmdks.img")]:
    n = len(rd(name))
    truncations(tag, name, [100, n // 2, 4, 16, 72, 512, 4096, 65536 + 100, n - 1])

# --- qcow2 (big endian header)
q = "qcow2.img"
out("qcow2-l1-huge", patched(q, B(36, "I", 0x7fffffff)))
out("qcow2-l1-offset-eof", patched(q, B(40, "Q", 1 << 50)), True)
out("qcow2-l1-offset-unaligned", patched(q, B(40, "Q", 0x10001)), True)
out("qcow2-refcount-table-huge", patched(q, B(56, "I", 0xffffffff)), True)
out("qcow2-refcount-offset-eof", patched(q, B(48, "Q", 1 << 55)), True)
out("qcow2-cluster-bits-0", patched(q, B(20, "I", 0)), True)
out("qcow2-cluster-bits-63", patched(q, B(20, "I", 63)), True)
out("qcow2-cluster-bits-21", patched(q, B(20, "I", 21)), True)
out("qcow2-size-2e63", patched(q, B(24, "Q", (1 << 63) - 512)), True)
out("qcow2-snapshots-absurd", patched(q, B(60, "I", 0xffffffff)))
out("qcow2-snapshots-65536", patched(q, B(60, "I", 65536)), True)
out("qcow2-snapshot-offset-eof", patched(q, B(64, "Q", 1 << 40)), True)
out("qcow2-header-length-huge", patched(q, B(100, "I", 0xfffffff0)), True)
out("qcow2-refcount-order-7", patched(q, B(96, "I", 7)), True)
out("qcow2-incompat-bits", patched(q, B(72, "Q", 0xffffffffffffffff)), True)
out("qcow2-crypt-method-9", patched(q, B(32, "I", 9)), True)
out("qcow2-backing-name-eof", patched(q, B(8, "Q", 1 << 40), B(16, "I", 1000)), True)
out("qcow2-backing-name-long", patched(q, B(8, "Q", 0x200), B(16, "I", 0xffffffff)), True)
# every L1/L2/refcount entry pointing far beyond the end
def spray(off_from, off_to, val):
    def f(b):
        for o in range(off_from, min(off_to, len(b)), 8):
            if b[o:o + 8] != bytes(8):
                b[o:o + 8] = struct.pack(">Q", val)
    return f
l1 = struct.unpack(">Q", rd(q)[40:48])[0]
out("qcow2-l1-entries-eof", patched(q, spray(l1, l1 + 64, (1 << 63) | (1 << 50))), True)
out("qcow2-all-entries-eof", patched(q, spray(4096, len(rd(q)), (1 << 63) | (1 << 45))), True)
out("qcow2-compressed-bogus", patched("qcow2c.img", spray(4096, 3 * 4096, (1 << 62) | (0x3fff << 48) | (1 << 40))))
# a backing file that is the image itself, two images naming each other,
# and extensions that say nothing sensible
def with_backing(name, backing, fmt_ext=None):
    b = rd(name)
    be(b, 8, "Q", 0x800)
    be(b, 16, "I", len(backing))
    b[0x800:0x800 + len(backing)] = backing.encode()
    return b
out("qcow2-loop-self", with_backing("qcow2v2.img", "qcow2-loop-self"))
out("qcow2-loop-a", with_backing("qcow2v2.img", "qcow2-loop-b"), True)
out("qcow2-loop-b", with_backing("qcow2v2.img", "qcow2-loop-a"), True)
out("qcow2-backing-dev-zero", with_backing("qcow2v2.img", "/dev/zero"), True)
out("qcow2-backing-escape", with_backing("qcow2v2.img", "../../../../etc/passwd"), True)
out("qcow2-backing-json", with_backing("qcow2v2.img", 'json:{"driver":"qcow2","file":{"driver":"file","filename":"qcow2-loop-self"}}'), True)
# 1000-deep chain: chain-0000 .. chain-0999, each backed by the next
depth = 20 if quick else 1000
for i in range(depth):
    nxt = f"chain-{i + 1:04d}" if i + 1 < depth else ""
    b = rd("qcow2v2.img")
    if nxt:
        be(b, 8, "Q", 0x800)
        be(b, 16, "I", len(nxt))
        b[0x800:0x800 + len(nxt)] = nxt.encode()
    with open(os.path.join(box, f"chain-{i:04d}"), "wb") as f:
        f.write(b)
made.append("chain-0000")
if not quick:
    made.append("chain-0500")

# --- qcow (v1, big endian)
q = "qcow.img"
out("qcow-size-huge", patched(q, B(24, "Q", 0xffffffffffffffff)))
out("qcow-cluster-bits-0", patched(q, B(32, "B", 0)), True)
out("qcow-l2-bits-30", patched(q, B(33, "B", 30)), True)
out("qcow-cluster-bits-31", patched(q, B(32, "B", 31), B(33, "B", 31)), True)
out("qcow-l1-offset-eof", patched(q, B(40, "Q", 1 << 60)), True)
out("qcow-crypt-7", patched(q, B(36, "I", 7)), True)
out("qcow-backing-loop", patched(q, B(8, "Q", 0x100), B(16, "I", 17),
                                 lambda b: b.__setitem__(slice(0x100, 0x111), b"qcow-backing-loop")))

# --- qed (little endian)
q = "qed.img"
out("qed-cluster-size-3", patched(q, L(4, "I", 3)), True)
out("qed-cluster-size-huge", patched(q, L(4, "I", 1 << 31)), True)
out("qed-table-size-0", patched(q, L(8, "I", 0)), True)
out("qed-table-size-huge", patched(q, L(8, "I", 0x10000)), True)
out("qed-header-size-huge", patched(q, L(12, "I", 0xffffffff)), True)
out("qed-l1-eof", patched(q, L(40, "Q", 1 << 50)))
out("qed-size-huge", patched(q, L(48, "Q", 0xfffffffffffff000)), True)
out("qed-backing-loop", patched(q, L(16, "Q", 1), L(56, "I", 0x200), L(60, "I", 16),
                                lambda b: b.__setitem__(slice(0x200, 0x210), b"qed-backing-loop")))
out("qed-backing-size-huge", patched(q, L(16, "Q", 1), L(56, "I", 0x200), L(60, "I", 0xffffffff)), True)

# --- vmdk sparse (little endian)
q = "vmdk.img"
out("vmdk-capacity-huge", patched(q, L(12, "Q", 0xffffffffffffffff)), True)
out("vmdk-grain-0", patched(q, L(20, "Q", 0)), True)
out("vmdk-grain-huge", patched(q, L(20, "Q", 1 << 40)), True)
out("vmdk-gtes-huge", patched(q, L(44, "I", 0xffffffff)))
out("vmdk-gd-eof", patched(q, L(56, "Q", 1 << 50)), True)
out("vmdk-desc-huge", patched(q, L(28, "Q", 1), L(36, "Q", 1 << 40)), True)
out("vmdk-stream-gd-eof", patched("vmdks.img", L(56, "Q", 0xffffffffffff)), True)
out("vmdk-stream-grains-bogus", patched("vmdks.img", spray(2048, 8192, 0x41414141)), True)
# descriptor files: extents escaping the folder, absolute paths, devices,
# many extents, a descriptor naming itself as extent and as parent
desc = rd("vmdkf.vmdk").decode()
def vmdk_desc_full(name, extents, extra=""):
    if not quick:
        vmdk_desc(name, extents, extra)
def vmdk_desc(name, extents, extra=""):
    lines = []
    for l in desc.splitlines():
        if l.startswith("RW ") or l.startswith("RDONLY "):
            continue
        lines.append(l)
        if l.startswith("# Extent description"):
            lines += extents
    text = "\n".join(lines) + "\n" + extra
    out(name, text.encode())
vmdk_desc("vmdk-extent-escape.vmdk", ['RW 128 FLAT "../../../../../../etc/passwd" 0'])
vmdk_desc("vmdk-extent-absolute.vmdk", ['RW 128 FLAT "/etc/passwd" 0'])
vmdk_desc_full("vmdk-extent-dev-zero.vmdk", ['RW 2000000 FLAT "/dev/zero" 0'], )
vmdk_desc_full("vmdk-extent-self.vmdk", ['RW 128 SPARSE "vmdk-extent-self.vmdk"'])
vmdk_desc_full("vmdk-extent-missing.vmdk", ['RW 128 FLAT "sub/nothere.raw" 0'])
vmdk_desc_full("vmdk-extent-dir.vmdk", ['RW 128 FLAT "sub" 0'])
vmdk_desc_full("vmdk-extent-offset-huge.vmdk", ['RW 128 FLAT "vmdkf-flat.vmdk" 36028797018963967'])
vmdk_desc_full("vmdk-extent-sectors-huge.vmdk", ['RW 9223372036854775807 FLAT "vmdkf-flat.vmdk" 0'])
vmdk_desc_full("vmdk-extents-many.vmdk", ['RW 1 FLAT "vmdkf-flat.vmdk" %d' % i for i in range(3000)])
vmdk_desc("vmdk-parent-self.vmdk", ['RW 128 FLAT "vmdkf-flat.vmdk" 0'],
          extra='parentFileNameHint="vmdk-parent-self.vmdk"\n')
with open(os.path.join(box, "vmdkf-flat.vmdk"), "wb") as f:
    f.write(rd("vmdkf-flat.vmdk"))

# --- vhdx: bad checksums, region tables and BAT out of range (checksums
# recomputed so the bad values get past the crc check)
q = "vhdx.img"
def vhdx_fix(b, off, size):
    b[off + 4:off + 8] = bytes(4)
    le(b, off + 4, "I", crc32c(bytes(b[off:off + size])))
out("vhdx-bad-header-crc", patched(q, lambda b: b.__setitem__(65536 + 100, b[65536 + 100] ^ 0xff),
                                   lambda b: b.__setitem__(131072 + 100, b[131072 + 100] ^ 0xff)))
out("vhdx-bad-region-crc", patched(q, lambda b: b.__setitem__(196608 + 40, b[196608 + 40] ^ 0xff),
                                   lambda b: b.__setitem__(262144 + 40, b[262144 + 40] ^ 0xff)), True)
def region_entries(n):
    def f(b):
        for r in (196608, 262144):
            le(b, r + 8, "I", n)
            vhdx_fix(b, r, 65536)
    return f
out("vhdx-region-count-huge", patched(q, region_entries(0xffffffff)), True)
out("vhdx-region-count-0", patched(q, region_entries(0)), True)
def region_offsets(v):
    def f(b):
        for r in (196608, 262144):
            for e in range(2):
                le(b, r + 16 + 32 * e + 16, "Q", v)
            vhdx_fix(b, r, 65536)
    return f
out("vhdx-region-offset-eof", patched(q, region_offsets(1 << 50)), True)
out("vhdx-region-offset-zero", patched(q, region_offsets(0)), True)
def header_log(b):
    for h in (65536, 131072):
        le(b, h + 68, "I", 0xfff00000)      # log length
        le(b, h + 72, "Q", 1 << 44)        # log offset
        b[h + 48:h + 64] = b"\x01" * 16    # log guid: a log to replay
        vhdx_fix(b, h, 4096)
out("vhdx-log-bogus", patched(q, header_log))
out("vhdx-bat-bogus", patched(q, lambda b: [le(b, o, "Q", 0xfffffffffff00006)
                                            for o in range(0x300000, 0x300000 + 64, 8)]), True)

# --- vdi (little endian, header at 0x40)
q = "vdi.img"
out("vdi-blocks-huge", patched(q, L(0x180, "I", 0xffffffff)))
out("vdi-block-size-0", patched(q, L(0x178, "I", 0)), True)
out("vdi-block-size-odd", patched(q, L(0x178, "I", 12345)), True)
out("vdi-bmap-eof", patched(q, L(0x154, "I", 0xfffffe00)), True)
out("vdi-disk-size-huge", patched(q, L(0x170, "Q", 0xffffffffffffffff)), True)
out("vdi-header-size-0", patched(q, L(0x48, "I", 0)), True)
def vdi_bmap(b):
    bm = struct.unpack("<I", b[0x154:0x158])[0]
    for i in range(2):
        le(b, bm + 4 * i, "I", 0x7ffffff0)
out("vdi-bmap-entries-bogus", patched(q, vdi_bmap), True)

# --- vpc (big endian footer with checksum, dynamic header at data_offset)
q = "vpc.img"
def vpc_sum(b, off, size, cks):
    be(b, off + cks, "I", 0)
    be(b, off + cks, "I", (~sum(b[off:off + size])) & 0xffffffff)
def vpc_dyn(field, fmt, v):
    def f(b):
        d = struct.unpack(">Q", b[16:24])[0]
        be(b, d + field, fmt, v)
        vpc_sum(b, d, 1024, 36)
    return f
out("vpc-bad-footer-crc", patched(q, lambda b: b.__setitem__(48, b[48] ^ 1),
                                  lambda b: b.__setitem__(len(b) - 512 + 48, b[len(b) - 512 + 48] ^ 1)))
out("vpc-table-entries-huge", patched(q, vpc_dyn(28, "I", 0xffffffff)))
out("vpc-block-size-0", patched(q, vpc_dyn(32, "I", 0)), True)
out("vpc-block-size-odd", patched(q, vpc_dyn(32, "I", 0x80000001)), True)
out("vpc-bat-eof", patched(q, vpc_dyn(16, "Q", 1 << 50)), True)
def vpc_size(b):
    be(b, 48, "Q", 0xfffffffffffffe00)
    vpc_sum(b, 0, 512, 64)
out("vpc-size-huge", patched(q, vpc_size), True)
def vpc_bat(b):
    d = struct.unpack(">Q", b[16:24])[0]
    t = struct.unpack(">Q", b[d + 16:d + 24])[0]
    for i in range(4):
        be(b, t + 4 * i, "I", 0x7ffffff0)
out("vpc-bat-entries-bogus", patched(q, vpc_bat), True)
def vpcf_size(b):
    o = len(b) - 512
    be(b, o + 48, "Q", 1 << 62)
    vpc_sum(b, o, 512, 64)
out("vpc-fixed-size-huge", patched("vpcf.img", vpcf_size), True)

# --- parallels (little endian)
q = "parallels.img"
out("parallels-bat-huge", patched(q, L(32, "I", 0xffffffff)), True)
out("parallels-tracks-0", patched(q, L(28, "I", 0)), True)
out("parallels-tracks-huge", patched(q, L(28, "I", 0x80000000)), True)
out("parallels-sectors-huge", patched(q, L(36, "Q", 0xffffffffffffffff)), True)
out("parallels-data-off-eof", patched(q, L(48, "I", 0xffffffff)), True)
out("parallels-bat-entries-eof", patched(q, lambda b: [le(b, 64 + 4 * i, "I", 0xfffffff0) for i in range(8)]))
out("parallels-ext-eof", patched(q, L(56, "Q", 1 << 40)), True)

# --- luks (big endian phdr)
q = "luks.img"
out("luks-payload-huge", patched(q, B(104, "I", 0xffffffff)))
out("luks-key-bytes-huge", patched(q, B(108, "I", 0xffffffff)), True)
out("luks-key-bytes-0", patched(q, B(108, "I", 0)), True)
out("luks-slot-offset-eof", patched(q, B(208 + 40, "I", 0xfffffff0)), True)
out("luks-stripes-huge", patched(q, B(208 + 44, "I", 0xffffffff)), True)
out("luks-cipher-garbage", patched(q, lambda b: b.__setitem__(slice(8, 40), b"\xff" * 32)), True)
out("luks-version-9", patched(q, B(6, "H", 9)), True)

with open(os.path.join(box, ".list"), "w") as f:
    f.write("\n".join(made) + "\n")
PY

# ------------------------------------------------------------------- the runs
asan=0
if grep -qa -e '__asan_init' -e 'AddressSanitizer' "$QIMG" 2>/dev/null || \
   ldd "$QIMG" 2>/dev/null | grep -q libasan; then
    asan=1
    export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:max_allocation_size_mb=1024:allocator_may_return_null=1
    export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
fi
cd "$box"
ls -A >"$tmp/before"
crashes=0 hangs=0 leftovers=0 runs=0 clean=0
report="$tmp/report"
: >"$report"
run() { # IMG ARGS...: one command, classified
    local img=$1 rc
    shift
    runs=$((runs + 1))
    local t0=${EPOCHREALTIME/./}
    if [ "$asan" = 1 ]; then
        (timeout -k 2 "$TIMEOUT" "$QIMG" "$@" >"$tmp/out" 2>&1 </dev/null) 2>/dev/null
    else
        (timeout -k 2 "$TIMEOUT" prlimit --as=1073741824 -- "$QIMG" "$@" >"$tmp/out" 2>&1 </dev/null) 2>/dev/null
    fi
    rc=$?
    echo "$(( (${EPOCHREALTIME/./} - t0) / 1000 )) ms rc=$rc qimg $*" >>"$tmp/times"
    local what=''
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        hangs=$((hangs + 1)); what=HANG
    elif [ "$rc" -ge 128 ]; then
        crashes=$((crashes + 1)); what="CRASH (signal $((rc - 128)))"
    else
        clean=$((clean + 1))
    fi
    if [ -n "$what" ]; then
        { echo "$what: qimg $*"; head -c 3000 "$tmp/out" | sed 's/^/    /'; } >>"$report"
    elif [ "${VERBOSE:-0}" = 1 ]; then
        echo "rc=$rc: qimg $* :: $(head -c 200 "$tmp/out" | tr '\n' ' ')"
    fi
}
while read -r img; do
    [ -n "$img" ] || continue
    [ "$quick" = 1 ] || run "$img" info "$img"     # --quick: the JSON info covers it
    run "$img" info --output=json "$img"
    run "$img" check "$img"
    run "$img" map "$img"
    run "$img" inspect --output=json "$img"     # qimg only: exit 2 = unsafe
    run "$img" convert -O raw "$img" "$tmp/converted.raw"
    rm -f "$tmp/converted.raw"
    # nothing new may appear next to the images (or under sub/)
    ls -A >"$tmp/after"
    if ! cmp -s "$tmp/before" "$tmp/after" || [ -n "$(ls -A sub)" ]; then
        leftovers=$((leftovers + 1))
        echo "LEFTOVER after $img: $(comm -13 "$tmp/before" "$tmp/after" | tr '\n' ' ') $(ls -A sub)" >>"$report"
        comm -13 "$tmp/before" "$tmp/after" | while read -r f; do rm -rf -- "./$f"; done
        rm -rf sub && mkdir sub
    fi
done <.list
# files outside the box (../): the temp dir holds only what the script made
for f in "$tmp"/*; do
    case ${f##*/} in src|box|before|after|out|report|times) ;; *)
        leftovers=$((leftovers + 1)); echo "LEFTOVER outside: $f" >>"$report" ;;
    esac
done

cat "$report"
if [ "${VERBOSE:-0}" = 1 ]; then
    echo "slowest runs:"
    sort -rn "$tmp/times" | head -15
fi
nimg=$(grep -c . .list)
echo "hostile images: $nimg images, $runs runs: $clean clean exits, $crashes crashes, $hangs hangs, $leftovers leftover files"
[ "$crashes" -eq 0 ] && [ "$hangs" -eq 0 ] && [ "$leftovers" -eq 0 ]
