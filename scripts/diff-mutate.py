#!/usr/bin/env python3
"""scripts/diff-mutate.py — differential mutation sweep: qimg vs qemu-img 7.2.

A hand-run tool (not part of `make check`). For each format it makes a small
valid image with the real qemu-img (a raw file with a few written clusters,
converted), derives N deterministic mutants from it (seeded: bit flips, byte
sets, 16/32/64-bit fields set to 0, 1, max, odd values; mostly inside the
header and the format's metadata blocks, the first 64 KiB weighted most) and
runs on every mutant, through symlinks named `qemu-img`, under `timeout 10`:

    info | info --output=json | check | map --output=json | convert -O raw

stdout, stderr and exit code must be equal (the work dir is replaced by
@DIR@); when both converts succeed, the raw outputs must be equal too. A
mutant is skipped for a command when qemu-img crashes (rc >= 128) or times
out (rc 124); when its first command times out, the whole mutant is skipped.

The summary groups differences by (format, command, kind) with a count, the
most frequent qemu-img messages and one example each; the examples (mutant
image, the mutation list, both tools' outputs) are saved under --out.

Usage:
    scripts/diff-mutate.py [--qimg PATH] [-n N] [--seed S] [--formats a,b]
                           [--jobs J] [--out DIR]
    scripts/diff-mutate.py --show FORMAT:INDEX [--cmd CMD]   (re-run one mutant
                           and print both sides; writes it to --out/show.img)

Formats: vdi vpc vhdx qed qcow parallels vmdk vmdk-stream qcow2v2 qcow2v3 luks
"""

import argparse
import collections
import concurrent.futures
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
QEMU_IMG = shutil.which("qemu-img") or "/usr/bin/qemu-img"
TIMEOUT = 10
SECRET = ["--object", "secret,id=sec0,data=pw"]

# ----------------------------------------------------------------- formats
# name -> (convert -O args, field endianness, header ranges [(start, end)])
# A negative start/end counts from the end of the file (vpc's footer).
FORMATS = {
    "vdi": (["-O", "vdi"], "<", [(0, 512), (0x40, 0x54), (0x154, 0x190), (512, 528)]),
    "vpc": (["-O", "vpc"], ">", [(0, 88), (512, 560), (1536, 1600), (-512, -424)]),
    "vhdx": (["-O", "vhdx", "-o", "block_size=1M,log_size=1M"], "<",
             [(0, 512), (65536, 65536 + 256), (131072, 131072 + 256),
              (196608, 196608 + 128), (262144, 262144 + 128)]),
    "qed": (["-O", "qed"], "<", [(0, 68)]),
    "qcow": (["-O", "qcow"], ">", [(0, 64)]),
    "parallels": (["-O", "parallels"], "<", [(0, 64), (64, 128)]),
    "vmdk": (["-O", "vmdk", "-o", "subformat=monolithicSparse"], "<", [(0, 80), (512, 1024)]),
    "vmdk-stream": (["-O", "vmdk", "-o", "subformat=streamOptimized"], "<", [(0, 80), (512, 1024)]),
    "qcow2v2": (["-O", "qcow2", "-o", "compat=0.10"], ">", [(0, 72)]),
    "qcow2v3": (["-O", "qcow2", "-o", "compat=1.1,cluster_size=4096"], ">", [(0, 112), (112, 512)]),
    "luks": (SECRET + ["-O", "luks", "-o", "key-secret=sec0,iter-time=10"], ">",
             [(0, 208), (208, 592)]),
}

CMDS = ["info", "info-json", "check", "map-json", "convert"]


def img_args(fmt, img):
    """How each command names the image."""
    if fmt == "luks":
        return SECRET + ["--image-opts",
                         "driver=luks,key-secret=sec0,file.filename=%s" % img]
    return [img]


def cmd_argv(fmt, cmd, img):
    a = img_args(fmt, img)
    if cmd == "info":
        return ["info"] + a
    if cmd == "info-json":
        return ["info", "--output=json"] + a
    if cmd == "check":
        return ["check"] + a
    if cmd == "map-json":
        return ["map", "--output=json"] + a
    if cmd == "convert":
        return ["convert"] + a + ["-O", "raw", "out.raw"]
    raise ValueError(cmd)


# ----------------------------------------------------------------- base images
def make_raw(path, size=4 << 20):
    with open(path, "wb") as f:
        f.truncate(size)
        for off, n, byte in ((0, 65536, 0x11), (1 << 20, 65536, 0x22),
                             ((3 << 20) + 4096, 4096, 0x33), (size - 8192, 8192, 0x44)):
            f.seek(off)
            f.write(bytes([byte]) * n)
        f.seek(2 << 20)
        f.write(random.Random(7).randbytes(8192))


def make_base(fmt, work):
    raw = os.path.join(work, "src.raw")
    if not os.path.exists(raw):
        make_raw(raw)
    out = os.path.join(work, "base-%s.img" % fmt)
    args = FORMATS[fmt][0]
    subprocess.run([QEMU_IMG, "convert", "-f", "raw", raw] + args + [out],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def metadata_blocks(data):
    """512-byte blocks that are neither all-zero nor one repeated byte: the
    format's metadata (and compressed or random data)."""
    blocks = []
    for off in range(0, len(data) - 511, 512):
        b = data[off:off + 512]
        if b.count(b[0]) != 512:
            blocks.append(off)
    return blocks


# ----------------------------------------------------------------- crc fix-ups
# crc32c(buf): shared with the vhdx scenarios
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "interop", "tools"))
from crc32c import crc32c  # noqa: E402


def vpc_fix_checksums(img):
    """Recompute vpc's footer (both copies) and dynamic header checksums
    (applied to half of the vpc mutants)."""
    for off, length, ck in ((0, 512, 64), (len(img) - 512, 512, 64), (512, 1024, 36)):
        if off < 0 or off + length > len(img):
            continue
        img[off + ck:off + ck + 4] = bytes(4)
        total = sum(img[off:off + length])
        img[off + ck:off + ck + 4] = struct.pack(">I", (~total) & 0xFFFFFFFF)


def vhdx_fix_crcs(img):
    """Recompute the checksums of vhdx headers and region tables, so that
    mutations inside them reach the field checks (applied to half of the
    vhdx mutants)."""
    for off, length in ((65536, 4096), (131072, 4096), (196608, 65536), (262144, 65536)):
        if off + length > len(img):
            continue
        img[off + 4:off + 8] = bytes(4)
        img[off + 4:off + 8] = struct.pack("<I", crc32c(bytes(img[off:off + length])))


# ----------------------------------------------------------------- mutations
def gen_mutations(fmt, base, blocks, seed, index):
    rng = random.Random("%s:%s:%d" % (fmt, seed, index))
    size = len(base)
    endian = FORMATS[fmt][1]
    hdrs = []
    for s, e in FORMATS[fmt][2]:
        s = s + size if s < 0 else s
        e = e + size if e <= 0 and (s >= size - 4096) else e
        if e > size:
            e = size
        if s < e:
            hdrs.append((s, e))
    first64 = [b for b in blocks if b < 65536] or blocks
    muts = []
    nedits = 1 if rng.random() < 0.7 else rng.randint(2, 3)
    for _ in range(nedits):
        r = rng.random()
        if r < 0.45 and hdrs:
            s, e = rng.choice(hdrs)
            off = rng.randrange(s, e)
        elif r < 0.75 and first64:
            off = rng.choice(first64) + rng.randrange(512)
        elif r < 0.9 and blocks:
            off = rng.choice(blocks) + rng.randrange(512)
        else:
            off = rng.randrange(min(size, 65536))
        k = rng.random()
        if k < 0.15:
            muts.append(("flip", off, 1 << rng.randrange(8)))
        elif k < 0.3:
            muts.append(("byte", off, rng.choice([0, 1, 0xff, 0x7f, 0x80, rng.randrange(256)])))
        else:
            width = rng.choice([2, 4, 4, 8, 8])
            off -= off % width
            if off + width > size:
                off = size - width
            maxv = (1 << (8 * width)) - 1
            fmtc = {2: "H", 4: "I", 8: "Q"}[width]
            cur = struct.unpack(endian + fmtc, bytes(base[off:off + width]))[0]
            val = rng.choice([0, 1, maxv, maxv >> 1, (maxv >> 1) + 1, 3, 511, 513,
                              4095, 65535, 65537, size, size + 512, size * 4,
                              (cur + 1) & maxv, (cur - 1) & maxv, (cur * 2) & maxv,
                              (cur << 8) & maxv, rng.randrange(maxv + 1),
                              rng.randrange(1, 1 << 20) | 1]) & maxv
            muts.append(("set", off, width, endian, val))
    fixcrc = fmt in ("vhdx", "vpc") and rng.random() < 0.5
    return muts, fixcrc


def apply_mutations(base, muts, fixcrc, fmt):
    img = bytearray(base)
    for m in muts:
        if m[0] == "flip":
            img[m[1]] ^= m[2]
        elif m[0] == "byte":
            img[m[1]] = m[2]
        else:
            _, off, width, endian, val = m
            img[off:off + width] = struct.pack(endian + {2: "H", 4: "I", 8: "Q"}[width], val)
    if fixcrc and fmt == "vhdx":
        vhdx_fix_crcs(img)
    if fixcrc and fmt == "vpc":
        vpc_fix_checksums(img)
    return img


def describe(muts, fixcrc):
    parts = []
    for m in muts:
        if m[0] == "flip":
            parts.append("flip@%d^0x%02x" % (m[1], m[2]))
        elif m[0] == "byte":
            parts.append("byte@%d=0x%02x" % (m[1], m[2]))
        else:
            parts.append("%s%d@%d=0x%x" % ("be" if m[3] == ">" else "le", m[2] * 8, m[1], m[4]))
    if fixcrc:
        parts.append("crc-fixed")
    return " ".join(parts)


def write_sparse(path, img):
    """Write IMG to PATH leaving 64 KiB zero runs as holes (keeps the copies
    cheap and their allocation like the original's)."""
    with open(path, "wb") as f:
        f.truncate(len(img))
        z = bytes(65536)
        mv = memoryview(img)
        for off in range(0, len(img), 65536):
            chunk = mv[off:off + 65536]
            if chunk != z[:len(chunk)]:
                f.seek(off)
                f.write(chunk)


# ----------------------------------------------------------------- running
def run_tool(bindir, cwd, argv):
    env = dict(os.environ, LC_ALL="C", PATH=bindir + ":" + os.environ.get("PATH", ""))
    env.pop("QEMU_IMG_PROGNAME", None)
    try:
        p = subprocess.run(["timeout", str(TIMEOUT), "qemu-img"] + argv, cwd=cwd, env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=TIMEOUT + 20)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        rc, out, err = 124, b"", b""
    if rc < 0:
        rc = 128 - rc
    return rc, out, err


def normalise(b, d):
    return b.replace(d.encode(), b"@DIR@")


def _data_extents(fd, size):
    """The data extents of a (sparse) file, by SEEK_DATA/SEEK_HOLE."""
    out, off = [], 0
    while off < size:
        try:
            d = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            break
        h = os.lseek(fd, d, os.SEEK_HOLE)
        out.append((d, h))
        off = h
    return out


def file_bytes_equal(a, b):
    """Byte equality of two possibly huge sparse files: only the ranges
    where either has data are read (holes read as zeros)."""
    try:
        size = os.path.getsize(a)
        if size != os.path.getsize(b):
            return False
        fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
        try:
            for s, e in sorted(_data_extents(fa, size) + _data_extents(fb, size)):
                for off in range(s, e, 1 << 20):
                    n = min(1 << 20, e - off)
                    if os.pread(fa, n, off) != os.pread(fb, n, off):
                        return False
            return True
        finally:
            os.close(fa)
            os.close(fb)
    except OSError:
        return False


def run_mutant(ctx, fmt, index, cmds, keep_all=False):
    base, blocks = ctx["bases"][fmt]
    muts, fixcrc = gen_mutations(fmt, base, blocks, ctx["seed"], index)
    img = apply_mutations(base, muts, fixcrc, fmt)
    d = tempfile.mkdtemp(prefix="m-", dir=ctx["work"])
    qd, rd = os.path.join(d, "q"), os.path.join(d, "r")
    os.mkdir(qd)
    os.mkdir(rd)
    write_sparse(os.path.join(rd, "img"), img)
    os.link(os.path.join(rd, "img"), os.path.join(qd, "img"))
    results = []
    try:
        for cmd in cmds:
            argv = cmd_argv(fmt, cmd, "img")
            rr = run_tool(ctx["rbin"], rd, argv)
            if rr[0] == 124 or rr[0] >= 128:
                results.append((cmd, "skip", None, None))
                if cmd == cmds[0] and rr[0] == 124:
                    break
                continue
            qr = run_tool(ctx["qbin"], qd, argv)
            kinds = []
            if qr[0] != rr[0]:
                kinds.append("rc")
            qo, ro = normalise(qr[1], qd), normalise(rr[1], rd)
            qe, re_ = normalise(qr[2], qd), normalise(rr[2], rd)
            if qo != ro:
                kinds.append("stdout")
            if qe != re_:
                kinds.append("stderr")
            if cmd == "convert" and qr[0] == 0 and rr[0] == 0:
                if not file_bytes_equal(os.path.join(qd, "out.raw"), os.path.join(rd, "out.raw")):
                    kinds.append("data")
            for s in (qd, rd):
                try:
                    os.unlink(os.path.join(s, "out.raw"))
                except FileNotFoundError:
                    pass
            if kinds or keep_all:
                results.append((cmd, "+".join(kinds) or "same",
                                {"rc": qr[0], "stdout": qo.decode(errors="replace"),
                                 "stderr": qe.decode(errors="replace")},
                                {"rc": rr[0], "stdout": ro.decode(errors="replace"),
                                 "stderr": re_.decode(errors="replace")}))
            else:
                results.append((cmd, "same", None, None))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return fmt, index, describe(muts, fixcrc), results, img


def signature(side):
    """qemu-img's message with numbers and quoted names generalised."""
    text = side["stderr"].strip().splitlines()
    line = text[0] if text else ("rc=%d (no stderr)" % side["rc"])
    line = re.sub(r"0x[0-9a-fA-F]+|\d+", "N", line)
    return line[:160]


def write_summary(groups, exdir, out):
    lines = []
    for key in sorted(groups, key=lambda k: -groups[k]["n"]):
        g = groups[key]
        idx, desc, q, r, img = g["ex"]
        name = "%s__%s__%s" % key
        p = os.path.join(exdir, name)
        os.makedirs(p, exist_ok=True)
        write_sparse(os.path.join(p, "img"), img)
        with open(os.path.join(p, "report.txt"), "w") as f:
            f.write("format %s command %s kind %s\nmutant %s:%d  %s\nargv: qemu-img %s\n"
                    % (key[0], key[1], key[2], key[0], idx, desc,
                       " ".join(cmd_argv(key[0], key[1], "img"))))
            for side, v in (("qimg", q), ("qemu-img", r)):
                f.write("\n---- %s rc=%d\n-- stdout\n%s-- stderr\n%s" %
                        (side, v["rc"], v["stdout"], v["stderr"]))
        lines.append("%-12s %-9s %-18s %4d  e.g. %s:%d (%s)" %
                     (key[0], key[1], key[2], g["n"], key[0], idx, desc))
        for sig, n in g["sigs"].most_common(3):
            lines.append("      %4d  %s" % (n, sig))
    summary = "\n".join(lines) + "\n"
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write(summary)
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qimg", default=os.path.join(HERE, "..", "build-dm-rel", "qimg"))
    ap.add_argument("-n", type=int, default=300)
    ap.add_argument("--seed", default="1")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="/tmp/diff-mutate")
    ap.add_argument("--show", help="FORMAT:INDEX — re-run one mutant, print both sides")
    ap.add_argument("--cmd", help="with --show: only this command")
    o = ap.parse_args()

    qimg = os.path.abspath(o.qimg)
    if not os.access(qimg, os.X_OK):
        sys.exit("diff-mutate: no qimg at %s" % qimg)
    os.makedirs(o.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="diffmut.")
    qbin, rbin = os.path.join(work, "bin-q"), os.path.join(work, "bin-r")
    os.mkdir(qbin)
    os.mkdir(rbin)
    os.symlink(qimg, os.path.join(qbin, "qemu-img"))
    os.symlink(QEMU_IMG, os.path.join(rbin, "qemu-img"))
    ctx = {"work": work, "qbin": qbin, "rbin": rbin, "seed": o.seed, "bases": {}}
    try:
        if o.show:
            fmt, idx = o.show.rsplit(":", 1)
            base = bytearray(open(make_base(fmt, work), "rb").read())
            ctx["bases"][fmt] = (base, metadata_blocks(base))
            cmds = [o.cmd] if o.cmd else CMDS
            _, _, desc, res, img = run_mutant(ctx, fmt, int(idx), cmds, keep_all=True)
            write_sparse(os.path.join(o.out, "show.img"), img)
            print("mutant %s: %s (image: %s/show.img)" % (o.show, desc, o.out))
            for cmd, kind, q, r in res:
                print("== %s: %s" % (cmd, kind))
                if q:
                    for side, v in (("qimg", q), ("qemu-img", r)):
                        print("-- %s rc=%d\n%s%s" % (side, v["rc"], v["stdout"], v["stderr"]))
            return 0

        groups = collections.OrderedDict()
        counts = collections.Counter()
        exdir = os.path.join(o.out, "examples")
        shutil.rmtree(exdir, ignore_errors=True)
        os.makedirs(exdir)
        for fmt in o.formats.split(","):
            base = bytearray(open(make_base(fmt, work), "rb").read())
            ctx["bases"][fmt] = (base, metadata_blocks(base))
            with concurrent.futures.ThreadPoolExecutor(o.jobs) as ex:
                futs = [ex.submit(run_mutant, ctx, fmt, i, CMDS) for i in range(o.n)]
                for fu in concurrent.futures.as_completed(futs):
                    fmt_, idx, desc, res, img = fu.result()
                    for cmd, kind, q, r in res:
                        counts[(fmt_, cmd, kind if kind in ("same", "skip") else "diff")] += 1
                        if q is None:
                            continue
                        key = (fmt_, cmd, kind)
                        g = groups.setdefault(key, {"n": 0, "sigs": collections.Counter(),
                                                    "ex": None})
                        g["n"] += 1
                        g["sigs"][signature(r) + "  ||  qimg: " + signature(q)] += 1
                        if g["ex"] is None or idx < g["ex"][0]:
                            g["ex"] = (idx, desc, q, r, img)
            print("# %s: %d mutants, %s" % (fmt, o.n, ", ".join(
                "%s %d/%d" % (c, counts[(fmt, c, "diff")],
                              o.n - counts[(fmt, c, "skip")]) for c in CMDS)), flush=True)
            write_summary(groups, exdir, o.out)   # partial results survive an interrupt

        summary = write_summary(groups, exdir, o.out)
        print(summary, end="")
        print("# %d difference classes; examples in %s" % (len(groups), exdir))
        return 1 if groups else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
