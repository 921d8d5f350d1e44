#!/usr/bin/env python3
"""qimg against the real qemu-img, side by side on the same inputs.

Run by hand (it is not part of `make check`):

    make && bench/bench.py                 # defaults fit in about 15 GiB of disk
    BENCH_SIZE=1G BENCH_SMALL=256M BENCH_RUNS=3 bench/bench.py   # a quick pass
    bench/bench.py convert-zlib compare    # only the named workloads
    bench/bench.py cp-sparse               # cp --sparse=always of the large raw image
    bench/bench.py nbd-qemu-nbd-to-qcow2 nbd-raw-to-nbdkit-memory-m8W   # NBD (needs qemu-nbd, nbdkit)
    BENCH_SMALL=1G bench/bench.py nbd        # every NBD workload (only the small corpus is made)

Environment:
    QIMG          qimg binary (default: build/qimg next to this folder)
    QEMU_IMG      the reference (default: qemu-img on PATH)
    BENCH_DIR     scratch folder (default: /var/tmp/qimg-bench)
    BENCH_SIZE    size of the large corpus image (default 4G)
    BENCH_SMALL   size of the small one, used by the compression workloads (default 1G)
    BENCH_RUNS    timed runs per tool after one warm-up (default 5)

Requirements: python3, the real qemu-img and qemu-io, openssl (corpus), a C
compiler (cc, or CC=...) for bench/runstat.c, which starts every timed
command and reports its wall time, CPU time and peak RSS (see below); for
the NBD workloads qemu-nbd and nbdkit.

The corpus is deterministic: per MiB, 40% random data, 20% text-like data,
8% written zeros and 32% holes, chosen by a seeded generator. Each timed run
starts after `sync`; the tools alternate run by run. For every workload the
table shows, per tool, the median wall time, the median wall time including a
final `sync` (qemu-img's convert does not flush its output), the median CPU
time (user+sys) and the peak RSS, then the ratio qimg / qemu-img. A first row times `cp --sparse=always` of the
large raw image, the yardstick for the uncompressed converts. Each
command is forked by bench/runstat (a small C launcher built in BENCH_DIR),
which measures the wall time around fork/exec/wait4 and reads the child's
ru_maxrss from wait4: forked from this Python process instead, a child would
carry the interpreter's ~16 MiB of pages until it execs, and that floor hid
every RSS below it. Every output
is verified with the real `qemu-img compare` (and `check` for qcow2), so a fast
wrong answer fails loudly instead of winning.
"""
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
QIMG = os.path.abspath(os.environ.get("QIMG", os.path.join(HERE, "..", "build", "qimg")))
QEMU_IMG = os.environ.get("QEMU_IMG", shutil.which("qemu-img") or "qemu-img")
QEMU_IO = shutil.which("qemu-io") or "qemu-io"
DIR = os.environ.get("BENCH_DIR", "/var/tmp/qimg-bench")
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
MIB = 1 << 20


def parse_size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    s = s.strip().upper()
    if s and s[-1] in units:
        return int(float(s[:-1]) * units[s[-1]])
    return int(s)


SIZE = parse_size(os.environ.get("BENCH_SIZE", "4G"))
SMALL = parse_size(os.environ.get("BENCH_SMALL", "1G"))


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def text_chunks(seed, n=16):
    rng = random.Random(seed)
    words = ["".join(rng.choice("etaoinshrdlucmfwypvbgkjqxz") for _ in range(rng.randint(2, 9)))
             for _ in range(2000)]
    chunks = []
    for _ in range(n):
        out, size = [], 0
        while size < MIB:
            w = rng.choice(words) + rng.choice("     ,.\n")
            out.append(w)
            size += len(w)
        chunks.append("".join(out).encode()[:MIB])
    return chunks


def make_corpus(path, size, seed):
    """Deterministic raw image with the data mix described above."""
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    rng = random.Random(seed)
    texts = text_chunks(seed)
    # AES-CTR over an endless stream of zeros: deterministic random bytes.
    zeros = open("/dev/zero", "rb")
    rand = subprocess.Popen(["openssl", "enc", "-aes-128-ctr", "-nosalt", "-pbkdf2",
                             "-pass", "pass:qimg-bench-%d" % seed], stdin=zeros,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    zeros.close()
    zero = bytes(MIB)
    with open(path + ".tmp", "wb") as f:
        f.truncate(size)
        for i in range(size // MIB):
            r = rng.random()
            if r < 0.40:
                chunk = rand.stdout.read(MIB)
                if len(chunk) != MIB:
                    raise RuntimeError("openssl gave %d random bytes, not %d" % (len(chunk), MIB))
                f.seek(i * MIB)
                f.write(chunk)
            elif r < 0.60:
                f.seek(i * MIB)
                f.write(texts[rng.randrange(len(texts))])
            elif r < 0.68:
                f.seek(i * MIB)
                f.write(zero)
            # else: a hole
    rand.kill()
    os.rename(path + ".tmp", path)


RUNSTAT = None


def build_runstat():
    """Compile bench/runstat.c (a C compiler is a requirement of the bench):
    every timed command is started by it rather than forked from Python, so
    ru_maxrss is the command's own peak RSS (a child forked from Python
    counts the interpreter's pages until it execs: a floor of about 16 MiB
    for every command) and the wall time excludes Python's fork cost."""
    global RUNSTAT
    out = os.path.join(DIR, "runstat")
    src = os.path.join(HERE, "runstat.c")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        cc = os.environ.get("CC", "cc")
        r = subprocess.run([cc, "-O2", "-o", out + ".tmp", src], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("cannot build %s with %s: %s" % (src, cc, r.stderr.strip()))
        os.rename(out + ".tmp", out)
    RUNSTAT = out


def run_once(cmd):
    """Run cmd under runstat; return (wall, wall_with_sync, cpu, maxrss_kib)."""
    os.sync()
    p = subprocess.run([RUNSTAT, "--"] + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t1 = time.monotonic()
    os.sync()
    sync_time = time.monotonic() - t1
    err = p.stderr.decode(errors="replace")
    fields = p.stdout.split()
    if p.returncode != 0 or len(fields) != 4:
        raise RuntimeError("runstat %s failed: %s" % (" ".join(cmd), err.strip()))
    wall, cpu, rss, code = float(fields[0]), float(fields[1]), int(fields[2]), int(fields[3])
    if code != 0:
        raise RuntimeError("%s failed (exit %d): %s" % (" ".join(cmd), code, err.strip()))
    return wall, wall + sync_time, cpu, rss


def verify(kind, out, ref):
    if kind in ("qcow2",):
        r = subprocess.run([QEMU_IMG, "check", out], capture_output=True, text=True)
        if r.returncode not in (0, 3):
            raise RuntimeError("qemu-img check %s: %s" % (out, r.stdout + r.stderr))
    if ref:
        r = subprocess.run([QEMU_IMG, "compare", ref, out], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("qemu-img compare %s %s: %s" % (ref, out, r.stdout + r.stderr))


# --- NBD servers for the nbd-* workloads (started here, stopped at exit) ---
#
# Everything a run of the NBD workloads makes (sockets, pid files, the
# exports written to, the converted outputs) lives in a folder of its own
# under DIR (tempfile.mkdtemp), removed at exit: two bench runs at once no
# longer stop each other's servers or write into each other's exports. The
# corpus itself (small.raw, small.qcow2) stays shared and read-only.

NBD_PIDS = []
NBD_RUN_DIR = None


def nbd_run_dir():
    global NBD_RUN_DIR
    if NBD_RUN_DIR is None:
        import tempfile
        NBD_RUN_DIR = tempfile.mkdtemp(prefix="nbd-run-", dir=DIR)
    return NBD_RUN_DIR


def stop_nbd_servers():
    for pidfile in NBD_PIDS:
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip())
            os.kill(pid, 15)
            for _ in range(100):            # wait until it is gone (at most 1 s)
                os.kill(pid, 0)
                time.sleep(0.01)
        except (OSError, ValueError):
            pass
    if NBD_RUN_DIR:
        shutil.rmtree(NBD_RUN_DIR, ignore_errors=True)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nbd(name, argv, tcp=False):
    """Start a daemonizing server (qemu-nbd --fork / nbdkit); '@PID@' in argv
    is replaced by its pid file, '@SOCK@' by its unix socket and '@PORT@' by
    a free TCP port, all in this run's own folder. Returns the socket's URI
    (nbd:// when tcp) or None."""
    sock = os.path.join(nbd_run_dir(), name + ".sock")
    pidfile = os.path.join(nbd_run_dir(), name + ".pid")
    port = str(free_port())
    argv = [a.replace("@PID@", pidfile).replace("@SOCK@", sock).replace("@PORT@", port)
            for a in argv]
    if not shutil.which(argv[0]):
        return None
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        print("# %s did not start: %s" % (name, (r.stdout + r.stderr).strip()))
        return None
    NBD_PIDS.append(pidfile)
    if tcp:
        return "nbd://127.0.0.1:" + port
    return "nbd+unix:///?socket=" + sock


def median(xs):
    return statistics.median(xs) if xs else float("nan")


class Workload:
    def __init__(self, name, argv, setup=None, out=None, out_kind=None, ref=None, cleanup=True,
                 post=None):
        self.name, self.argv, self.setup = name, argv, setup
        self.out, self.out_kind, self.ref, self.cleanup = out, out_kind, ref, cleanup
        self.post = post            # verification of an output that is not a file (NBD)


def measure(w):
    res = {}
    for tool in ("qemu-img", "qimg"):
        res[tool] = []
    binaries = {"qemu-img": QEMU_IMG, "qimg": QIMG}
    for i in range(RUNS + 1):                      # run 0 is the warm-up
        for tool in ("qemu-img", "qimg"):
            if w.setup:
                w.setup()
            if w.out and os.path.exists(w.out):
                os.unlink(w.out)
            r = run_once([binaries[tool]] + w.argv)
            if w.out:
                verify(w.out_kind, w.out, w.ref)
            if w.post:
                w.post()
            if i > 0:
                res[tool].append(r)
    if w.out and w.cleanup and os.path.exists(w.out):
        os.unlink(w.out)
    return res


def measure_reference(argv, out):
    """The same timing for a plain command (the issue's yardstick for the
    uncompressed converts: `cp --sparse=always` of the same raw data)."""
    rs = []
    for i in range(RUNS + 1):
        if os.path.exists(out):
            os.unlink(out)
        r = run_once(argv)
        if i > 0:
            rs.append(r)
    os.unlink(out)
    return "%7.3f %7.3f %7.2f %7.1f" % (median([r[0] for r in rs]), median([r[1] for r in rs]),
                                        median([r[2] for r in rs]), max(r[3] for r in rs) / 1024.0)


def row(name, res):
    cols = [name]
    meds = {}
    for tool in ("qemu-img", "qimg"):
        rs = res[tool]
        wall = median([r[0] for r in rs])
        synced = median([r[1] for r in rs])
        cpu = median([r[2] for r in rs])
        rss = max(r[3] for r in rs) / 1024.0
        meds[tool] = (wall, synced)
        cols.append("%7.3f %7.3f %7.2f %7.1f" % (wall, synced, cpu, rss))
    ratio = meds["qimg"][0] / meds["qemu-img"][0] if meds["qemu-img"][0] else float("nan")
    ratio_s = meds["qimg"][1] / meds["qemu-img"][1] if meds["qemu-img"][1] else float("nan")
    cols.append("%5.2f %5.2f" % (ratio, ratio_s))
    return " | ".join(cols)


def main():
    os.makedirs(DIR, exist_ok=True)
    os.chdir(DIR)
    build_runstat()
    q = QEMU_IMG
    print("qimg: %s\nqemu-img: %s\ncorpus: %d MiB and %d MiB in %s, %d runs each\n"
          % (QIMG, subprocess.run([q, "--version"], capture_output=True, text=True).stdout.split("\n")[0],
             SIZE // MIB, SMALL // MIB, DIR, RUNS))
    wanted = set(sys.argv[1:])
    # "nbd" alone selects every NBD workload; NBD workloads need only the
    # small corpus and its qcow2
    all_nbd = "nbd" in wanted
    only_nbd = bool(wanted) and all(n == "nbd" or n.startswith("nbd-") for n in wanted)
    make_corpus("small.raw", SMALL, 2)
    if not os.path.exists("small.qcow2"):
        sh(q, "convert", "-f", "raw", "-O", "qcow2", "small.raw", "small.qcow2")
    if not only_nbd:
        make_reference_images(q)

    workloads = [] if only_nbd else local_workloads(q)
    # the NBD servers only when an NBD workload will run
    if not wanted or any(n == "nbd" or n.startswith("nbd-") for n in wanted):
        workloads += nbd_workloads()

    print("%-28s | %-37s | %-37s | %s" % ("workload", "qemu-img: wall  +sync    cpu  rssMiB",
                                          "qimg:     wall  +sync    cpu  rssMiB", "ratio (+sync)"))
    if not wanted or "cp-sparse" in wanted:
        print("%-28s | %-37s |" % ("cp-sparse (reference)",
                                   measure_reference(["cp", "--sparse=always", "big.raw", "o.raw"],
                                                     "o.raw")), flush=True)
    for w in workloads:
        if wanted and w.name not in wanted and not (all_nbd and w.name.startswith("nbd-")):
            continue
        try:
            print(row("%-28s" % w.name, measure(w)), flush=True)
        except (RuntimeError, subprocess.CalledProcessError) as e:
            print("%-28s | FAILED: %s" % (w.name, str(e).strip().replace("\n", " ")[:200]), flush=True)


def make_reference_images(q):
    make_corpus("big.raw", SIZE, 1)
    # Reference images made once by the real qemu-img.
    if not os.path.exists("big.qcow2"):
        sh(q, "convert", "-f", "raw", "-O", "qcow2", "big.raw", "big.qcow2")
    for fmt, opt in (("vmdk", []), ("vdi", []), ("vpc", []), ("vhdx", [])):
        if not os.path.exists("small." + fmt):
            sh(q, "convert", "-f", "raw", "-O", fmt, *opt, "small.raw", "small." + fmt)
    # Compressed sources, as cloud images and OVA exports come.
    for name, args in (("small-zlib.qcow2", ["-c", "-O", "qcow2"]),
                       ("small-zstd.qcow2", ["-c", "-O", "qcow2", "-o", "compression_type=zstd"]),
                       ("small-stream.vmdk", ["-O", "vmdk", "-o", "subformat=streamOptimized"])):
        if not os.path.exists(name):
            sh(q, "convert", "-f", "raw", *args, "small.raw", name)
    # A 3-deep chain over the big image: two overlays with scattered writes.
    if not os.path.exists("top.qcow2"):
        sh(q, "create", "-f", "qcow2", "-b", "big.qcow2", "-F", "qcow2", "mid.qcow2")
        sh(q, "create", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2")
        for img, pat in (("mid.qcow2", 0x11), ("top.qcow2", 0x22)):
            cmds = []
            rng = random.Random(pat)
            for _ in range(64):
                off = rng.randrange(SIZE // MIB) * MIB
                cmds += ["-c", "write -P %d %d 256k" % (pat, off)]
            sh(QEMU_IO, "-f", "qcow2", *cmds, img, stdout=subprocess.DEVNULL)
        sh(q, "convert", "-O", "raw", "top.qcow2", "top.raw")
    if not os.path.exists("sparse64.qcow2"):
        sh(q, "create", "-f", "qcow2", "sparse64.qcow2", "64G", stdout=subprocess.DEVNULL)
        sh(QEMU_IO, "-f", "qcow2", "-c", "write -P 7 0 1M", "-c", "write -P 8 40G 1M",
           "sparse64.qcow2", stdout=subprocess.DEVNULL)


def local_workloads(q):
    def fresh_overlay():
        for f in ("ov.qcow2", "ovbase.qcow2"):
            if os.path.exists(f):
                os.unlink(f)
        shutil.copyfile("small.qcow2", "ovbase.qcow2")
        sh(q, "create", "-q", "-f", "qcow2", "-b", "ovbase.qcow2", "-F", "qcow2", "ov.qcow2")
        sh(QEMU_IO, "-f", "qcow2", "-c", "write -P 5 0 64M", "ov.qcow2", stdout=subprocess.DEVNULL)

    workloads = [
        Workload("convert-raw-qcow2", ["convert", "-f", "raw", "-O", "qcow2", "big.raw", "o.qcow2"],
                 out="o.qcow2", out_kind="qcow2", ref="big.raw"),
        Workload("convert-raw-qcow2-m16W", ["convert", "-m", "16", "-W", "-f", "raw", "-O", "qcow2",
                                            "big.raw", "o.qcow2"], out="o.qcow2", out_kind="qcow2",
                 ref="big.raw"),
        Workload("convert-qcow2-raw", ["convert", "-f", "qcow2", "-O", "raw", "big.qcow2", "o.raw"],
                 out="o.raw", ref="big.raw"),
        Workload("convert-zlib", ["convert", "-c", "-f", "raw", "-O", "qcow2", "small.raw", "o.qcow2"],
                 out="o.qcow2", out_kind="qcow2", ref="small.raw"),
        Workload("convert-zlib-m16W", ["convert", "-c", "-m", "16", "-W", "-f", "raw", "-O", "qcow2",
                                       "small.raw", "o.qcow2"], out="o.qcow2", out_kind="qcow2",
                 ref="small.raw"),
        Workload("convert-zstd", ["convert", "-c", "-o", "compression_type=zstd", "-f", "raw",
                                  "-O", "qcow2", "small.raw", "o.qcow2"], out="o.qcow2",
                 out_kind="qcow2", ref="small.raw"),
        Workload("convert-zstd-m16W", ["convert", "-c", "-m", "16", "-W", "-o",
                                       "compression_type=zstd", "-f", "raw", "-O", "qcow2",
                                       "small.raw", "o.qcow2"], out="o.qcow2", out_kind="qcow2",
                 ref="small.raw"),
        Workload("convert-qcow2-vmdk-stream", ["convert", "-f", "qcow2", "-O", "vmdk", "-o",
                                               "subformat=streamOptimized", "small.qcow2", "o.vmdk"],
                 out="o.vmdk", ref="small.raw"),
        Workload("compare-raw-qcow2", ["compare", "-f", "raw", "-F", "qcow2", "big.raw", "big.qcow2"]),
        Workload("read-zlib-qcow2-raw", ["convert", "-O", "raw", "small-zlib.qcow2", "o.raw"],
                 out="o.raw", ref="small.raw"),
        Workload("read-zstd-qcow2-raw", ["convert", "-O", "raw", "small-zstd.qcow2", "o.raw"],
                 out="o.raw", ref="small.raw"),
        Workload("read-vmdk-stream-raw", ["convert", "-O", "raw", "small-stream.vmdk", "o.raw"],
                 out="o.raw", ref="small.raw"),
        Workload("compare-zlib-qcow2-raw", ["compare", "small-zlib.qcow2", "small.raw"]),
        Workload("flatten-chain", ["convert", "-O", "qcow2", "top.qcow2", "o.qcow2"], out="o.qcow2",
                 out_kind="qcow2", ref="top.raw"),
        Workload("convert-nocache", ["convert", "-t", "none", "-T", "none", "-f", "raw", "-O", "qcow2",
                                     "big.raw", "o.qcow2"], out="o.qcow2", out_kind="qcow2",
                 ref="big.raw"),
        Workload("info", ["info", "big.qcow2"]),
        Workload("check", ["check", "big.qcow2"]),
        Workload("map", ["map", "big.qcow2"]),
        Workload("measure", ["measure", "-O", "qcow2", "big.qcow2"]),
        Workload("version", ["--version"]),      # start-up alone
        Workload("convert-sparse64-raw", ["convert", "-O", "raw", "sparse64.qcow2", "o.raw"],
                 out="o.raw", ref="sparse64.qcow2"),
        Workload("convert-sparse64-qcow2", ["convert", "-O", "qcow2", "sparse64.qcow2", "o.qcow2"],
                 out="o.qcow2", out_kind="qcow2", ref="sparse64.qcow2"),
        Workload("commit", ["commit", "ov.qcow2"], setup=fresh_overlay),
        Workload("rebase", ["rebase", "-b", "", "ov.qcow2"], setup=fresh_overlay),
    ]
    for fmt in ("vmdk", "vdi", "vpc", "vhdx"):
        workloads.append(Workload("convert-%s-qcow2" % fmt, ["convert", "-f", fmt, "-O", "qcow2",
                                                             "small." + fmt, "o.qcow2"],
                                  out="o.qcow2", out_kind="qcow2", ref="small." + fmt))
    for mode in ("off", "metadata", "falloc", "full"):
        workloads.append(Workload("create-prealloc-%s" % mode,
                                  ["create", "-q", "-f", "qcow2", "-o", "preallocation=" + mode,
                                   "c.qcow2", str(SMALL)], out="c.qcow2", out_kind="qcow2"))
    return workloads


def nbd_workloads():
    """NBD: qimg's libnbd driver against qemu-img's own client, both ways, over
    qemu-nbd and nbdkit exports of the small corpus. qemu-nbd is started with
    -e 8, so it advertises multi-conn, as nbdkit's file and memory plugins do
    (qimg may open up to NBD_MAX_CONNS connections, src/protocols/nbd.c;
    qemu-img always uses one)."""
    import atexit
    import signal
    atexit.register(stop_nbd_servers)
    # a bench stopped by SIGTERM (timeout, kill) stops its servers too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workloads = []
    rd = nbd_run_dir()
    nbdw, nbdw2 = os.path.join(rd, "nbdw.raw"), os.path.join(rd, "nbdw2.raw")
    for img in (nbdw, nbdw2):
        with open(img, "wb") as f:
            f.truncate(SMALL)
    small_raw, small_qcow2 = os.path.abspath("small.raw"), os.path.abspath("small.qcow2")
    oq, orw = os.path.join(rd, "o.qcow2"), os.path.join(rd, "o.raw")
    srv = {
        "qnbd-ro": start_nbd("qnbd-ro", ["qemu-nbd", "--fork", "--pid-file=@PID@", "-t", "-r",
                                         "-e", "8", "-k", "@SOCK@", "-f", "qcow2", small_qcow2]),
        "qnbd-rw": start_nbd("qnbd-rw", ["qemu-nbd", "--fork", "--pid-file=@PID@", "-t",
                                         "-e", "8", "-k", "@SOCK@", "-f", "raw", nbdw]),
        "kfile": start_nbd("kfile", ["nbdkit", "-P", "@PID@", "-U", "@SOCK@", "-r",
                                     "file", small_raw]),
        "kmem": start_nbd("kmem", ["nbdkit", "-P", "@PID@", "-U", "@SOCK@",
                                   "memory", str(SMALL)]),
        "kfile-rw": start_nbd("kfile-rw", ["nbdkit", "-P", "@PID@", "-U", "@SOCK@",
                                           "file", nbdw2]),
        # qemu-nbd's default: one client, no multi-conn (one connection,
        # requests pipelined on it)
        "qnbd-1": start_nbd("qnbd-1", ["qemu-nbd", "--fork", "--pid-file=@PID@", "-t", "-r",
                                       "-k", "@SOCK@", "-f", "qcow2", small_qcow2]),
        "qnbd-tcp": start_nbd("qnbd-tcp", ["qemu-nbd", "--fork", "--pid-file=@PID@", "-t", "-r",
                                           "-e", "8", "-b", "127.0.0.1", "-p", "@PORT@",
                                           "-f", "raw", small_raw], tcp=True),
    }

    def nbd_same_as(uri, ref):
        def post():
            r = subprocess.run([QEMU_IMG, "compare", "-f", "raw", "-F", "raw", ref, uri],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError("qemu-img compare %s %s: %s" % (ref, uri, r.stdout + r.stderr))
        return post

    if srv["qnbd-ro"]:
        workloads.append(Workload("nbd-qemu-nbd-to-qcow2", ["convert", "-O", "qcow2", srv["qnbd-ro"],
                                                            oq],
                                  out=oq, out_kind="qcow2", ref=small_raw))
        workloads.append(Workload("nbd-qemu-nbd-to-raw-m8W", ["convert", "-m", "8", "-W", "-O", "raw",
                                                              srv["qnbd-ro"], orw],
                                  out=orw, ref=small_raw))
    if srv["kfile"]:
        workloads.append(Workload("nbd-nbdkit-file-to-qcow2", ["convert", "-O", "qcow2", srv["kfile"],
                                                               oq],
                                  out=oq, out_kind="qcow2", ref=small_raw))
        workloads.append(Workload("nbd-nbdkit-file-to-raw", ["convert", "-O", "raw", srv["kfile"],
                                                             orw],
                                  out=orw, ref=small_raw))
    if srv["qnbd-1"]:
        workloads.append(Workload("nbd-qemu-nbd-1conn-to-raw", ["convert", "-O", "raw", srv["qnbd-1"],
                                                                orw],
                                  out=orw, ref=small_raw))
    if srv["qnbd-tcp"]:
        workloads.append(Workload("nbd-qemu-nbd-tcp-to-raw", ["convert", "-O", "raw", srv["qnbd-tcp"],
                                                              orw],
                                  out=orw, ref=small_raw))
    if srv["kfile-rw"]:
        workloads.append(Workload("nbd-raw-to-nbdkit-file", ["convert", "-n", "-f", "raw", "-O", "raw",
                                                             small_raw, srv["kfile-rw"]],
                                  post=nbd_same_as(srv["kfile-rw"], small_raw)))
    if srv["qnbd-rw"]:
        workloads.append(Workload("nbd-raw-to-qemu-nbd", ["convert", "-n", "-f", "raw", "-O", "raw",
                                                          small_raw, srv["qnbd-rw"]],
                                  post=nbd_same_as(srv["qnbd-rw"], small_raw)))
    if srv["kmem"]:
        workloads.append(Workload("nbd-qcow2-to-nbdkit-memory", ["convert", "-n", "-f", "qcow2", "-O",
                                                                 "raw", small_qcow2, srv["kmem"]],
                                  post=nbd_same_as(srv["kmem"], small_raw)))
        workloads.append(Workload("nbd-raw-to-nbdkit-memory-m8W", ["convert", "-n", "-m", "8", "-W",
                                                                   "-f", "raw", "-O", "raw",
                                                                   small_raw, srv["kmem"]],
                                  post=nbd_same_as(srv["kmem"], small_raw)))
    return workloads


if __name__ == "__main__":
    main()
