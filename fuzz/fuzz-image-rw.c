/* Fuzz target for the write paths of one writable format (FUZZ_FORMAT):
 * what `check -r all`, dd/convert -n, resize, snapshot, bitmap, amend,
 * rebase -u and commit do to a hostile image.
 *
 * The input (with optional extra files, see fuzz.h) is served by the mem
 * protocol as writable private copies (fuzz_mem_setup_rw), re-armed fresh
 * before each pass so that passes do not see each other's writes:
 *   1. repair: open for check read-write, check with BLK_FIX_LEAKS |
 *              BLK_FIX_ERRORS, flush, close; then check the result again
 *              read-only (what qemu-img check -r all does);
 *   2. write:  open read-write with the backing chain, then a few requests
 *              whose offsets, lengths and kinds come from a hash of the
 *              input: pwrite of a pattern, pwrite_zeroes with and without
 *              MAY_UNMAP, discard, compressed writes, flush; close, reopen
 *              read-only and read back what was written, and check;
 *   3. resize: grow, write at the new end, shrink, grow back (formats with
 *              truncate), then reopen and check;
 *   4. meta:   snapshot create/apply/delete, bitmap add/clear/disable/
 *              remove, amend (compat, refcount_bits, lazy_refcounts, size),
 *              change_backing and make_empty, each where the format has
 *              it; then reopen and check;
 *   5. commit: reopen the backing node read-write, copy what the top
 *              allocates into it (as commit does), empty the top.
 * Work per input is bounded (requests, bytes, walk steps; the mem files
 * stop growing at MEM_RW_CAP, an -ENOSPC the drivers must handle).
 *
 * Write faults: about half the passes (chosen by the input's hash, or by a
 * "write-faults" part, see fuzz.h) run with the mem protocol's write faults
 * armed from before the open to after the close: the n-th write, zero
 * write, discard, truncate or flush fails with EIO (or, growing the file,
 * ENOSPC), once or from then on. Every step must fail cleanly. Then the
 * faults are disarmed and, if one hit, the image left behind is reopened
 * with its backing chain and read, and checked: it must open or be refused
 * cleanly (check may find corruption and leaks).
 *
 * Any crash, sanitizer report, leak or hang is a bug in the drivers. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/blk.h"
#include "fuzz/fuzz.h"
#include "protocols/mem.h"
#include "util/ckd.h"
#include "util/kvopts.h"
#include "util/secret.h"

#ifndef FUZZ_FORMAT
#error "FUZZ_FORMAT names the format driver"
#endif

#define MAX_OPS 12                      /* requests in the write pass */
#define MAX_LEN (256u << 10)            /* bytes per request */
#define MAX_READ (1u << 20)             /* bytes per read-back */
#define MAX_STEPS 256                   /* block_status steps in a commit walk */
#define MAX_COMMIT (4u << 20)           /* bytes copied by the commit pass */
#define FUZZ_SECRET "fuzzsec"

static uint8_t *buf;                    /* MAX_READ bytes */
static bool tracing;                    /* FUZZ_RW_TRACE=1: each step's result on stderr */
static uint8_t *pattern;                /* MAX_LEN bytes */
static uint64_t fault_seed;             /* the input's hash, for the write faults */

/* The passes, as bits of a "write-faults" part's PASSES. */
enum {
    PASS_REPAIR = 1,
    PASS_WRITE = 2,
    PASS_RESIZE = 4,
    PASS_META = 8,
    PASS_COMMIT = 16,
};

/* The input's hash drives every choice: the same input, the same run. */
struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(struct rng *r, uint64_t n)
{
    return n ? rng_next(r) % n : 0;
}

static uint64_t hash_input(const uint8_t *data, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 0x100000001b3ull;
    return h;
}

/* What a step returned, when tracing (to see how deep an input gets). */
static int tr(const char *what, int r)
{
    if (tracing)
        fprintf(stderr, "rw: %-16s %d\n", what, r);
    return r;
}

static void quiet(const char *line)
{
    (void)line;
}

static void setup_once(void)
{
    if (buf)
        return;
    tracing = getenv("FUZZ_RW_TRACE") && !strcmp(getenv("FUZZ_RW_TRACE"), "1");
    if (!tracing)
        blk_set_message_sink(quiet);        /* "Marking image as corrupt" etc. */
    buf = malloc(MAX_READ);
    pattern = malloc(MAX_LEN);
    for (size_t i = 0; i < MAX_LEN; i++)
        pattern[i] = (uint8_t)(0xa5 ^ (i >> 9) ^ i);
    /* The passphrase of the seed images (fuzz/make-corpus.sh). */
    secret_add(FUZZ_SECRET, strdup("qimg-fuzz"), 9);
}

static struct bds *open_image(int flags)
{
    struct kvopts o;
    struct err e;
    struct bds *bs;

    mem_set_fail_after(fuzz_fail_after);
    kvopts_init(&o);
    if (!strcmp(FUZZ_FORMAT, "luks"))
        kvopts_set(&o, "key-secret", FUZZ_SECRET);
    else if (!strcmp(FUZZ_FORMAT, "qcow2") || !strcmp(FUZZ_FORMAT, "qcow"))
        kvopts_set(&o, "encrypt.key-secret", FUZZ_SECRET);
    err_init(&e);
    bs = blk_open(FUZZ_IMAGE, FUZZ_FORMAT, &o, flags, &e);
    kvopts_release(&o);
    if (tracing)
        fprintf(stderr, "rw: open %#x %s%s\n", (unsigned)flags, bs ? "ok" : "failed: ",
                bs ? "" : e.msg);
    return bs;
}

static void log_line(void *opaque, const char *line)
{
    (void)opaque;
    (void)line;
}

static void check_node(struct bds *bs, int fix)
{
    struct blk_check_result res;
    struct err e;

    memset(&res, 0, sizeof(res));
    res.log = log_line;
    err_init(&e);
    tr(fix ? "check -r all" : "check", blk_check(bs, &res, fix, &e));
}

/* The image as the pass left it: qemu-img check, read-only. */
static void recheck(void)
{
    struct bds *bs = open_image(BLK_O_CHECK);
    if (!bs)
        return;
    check_node(bs, 0);
    blk_close(bs);
}

/* Arm the write faults for one pass (right after its fuzz_mem_setup_rw):
 * the input's "write-faults" part decides if it has one, else the hash arms
 * about half the passes, counting every kind of call or one, after 0..255
 * calls, once or sticky, sometimes as a full disk. */
static void arm_faults(unsigned pass)
{
    long n;
    unsigned flags;

    if (fuzz_write_faults_set) {
        if (!((unsigned long)fuzz_write_faults[2] & pass))
            return;
        n = fuzz_write_faults[0];
        flags = (unsigned)fuzz_write_faults[1];
    } else {
        struct rng r = { fault_seed ^ (pass * 0x5746u) };
        if (rng_below(&r, 2))
            return;
        n = (long)rng_below(&r, 1ull << rng_below(&r, 9));
        flags = rng_below(&r, 4) ? MEM_FAULT_KINDS : 1u << rng_below(&r, 4);
        if (rng_below(&r, 2))
            flags |= MEM_FAULT_STICKY;
        if (rng_below(&r, 4) == 0)
            flags |= MEM_FAULT_ENOSPC;
    }
    if (tracing)
        fprintf(stderr, "rw: write faults after %ld calls, flags %#x\n", n, flags);
    mem_set_write_faults(n, flags);
}

/* Disarm the write faults; true if one hit during the pass. */
static bool disarm_faults(void)
{
    unsigned long hits = mem_write_faults_hit();

    mem_set_write_faults(-1, 0);
    if (tracing && hits)
        fprintf(stderr, "rw: %lu write faults hit\n", hits);
    return hits > 0;
}

/* After a pass that failed writes: the image must open with its backing
 * chain (or be refused cleanly) and read, start and end. */
static void reopen_read(void)
{
    struct bds *bs = open_image(0);
    int64_t len;

    if (!bs)
        return;
    len = blk_getlength(bs);
    if (len > 0) {
        uint64_t n = min_u64((uint64_t)len, MAX_READ);
        if (tr("read start", blk_pread(bs, 0, n, buf)) == 0 && (uint64_t)len > n)
            tr("read end", blk_pread(bs, (uint64_t)len - n, n, buf));
    }
    blk_close(bs);
}

/* The end of a pass: faults off, then the image as the pass left it. */
static void after_pass(bool always_check)
{
    bool hit = disarm_faults();

    if (hit)
        reopen_read();
    if (hit || always_check)
        recheck();
}

static void pass_repair(const uint8_t *data, size_t size)
{
    struct bds *bs;

    fuzz_mem_setup_rw(data, size);
    arm_faults(PASS_REPAIR);
    bs = open_image(BLK_O_CHECK | BLK_O_RDWR);
    if (bs) {
        check_node(bs, BLK_FIX_LEAKS | BLK_FIX_ERRORS);
        blk_flush(bs);
        blk_close(bs);
    }
    after_pass(bs != NULL);
}

struct range {
    uint64_t off, len;
};

static uint64_t cluster_of(struct bds *bs)
{
    struct blk_info bi;

    memset(&bi, 0, sizeof(bi));
    if (blk_get_info(bs, &bi) < 0 || bi.cluster_size == 0 || bi.cluster_size > MAX_LEN)
        return 65536;
    return bi.cluster_size;
}

/* An offset and length inside [0, size): aligned to 1, 512 or the cluster
 * size; often near the start or the end, where the edge cases live. */
static struct range pick_range(struct rng *r, uint64_t size, uint64_t cluster)
{
    static const uint64_t aligns[] = { 1, 512, 0 };
    uint64_t a = aligns[rng_below(r, 3)], off, len;
    struct range g;

    if (!a)
        a = cluster;
    switch (rng_below(r, 4)) {
    case 0: off = rng_below(r, 4 * cluster); break;
    case 1: off = size - min_u64(size, rng_below(r, 4 * cluster) + 1); break;
    default: off = rng_below(r, size); break;
    }
    len = rng_below(r, 3) ? rng_below(r, 2 * cluster) + 1 : rng_below(r, MAX_LEN) + 1;
    off = off / a * a;
    if (a > 1)
        len = (len + a - 1) / a * a;
    if (off >= size)
        off = 0;
    g.off = off;
    g.len = min_u64(len, min_u64(size - off, MAX_LEN));
    return g;
}

static void write_ops(struct bds *bs, struct rng *r, struct range *done, int *ndone)
{
    int64_t size = blk_getlength(bs);
    uint64_t cluster = cluster_of(bs);
    uint8_t *cbuf = NULL;

    if (size <= 0)
        return;
    for (int i = 0; i < MAX_OPS; i++) {
        struct range g = pick_range(r, (uint64_t)size, cluster);
        int kind = (int)rng_below(r, 8);
        switch (kind) {
        case 0: case 1: case 2:
            if (tr("pwrite", blk_pwrite(bs, g.off, g.len, pattern, 0)) == 0)
                done[(*ndone)++] = g;
            break;
        case 3:
            tr("pwrite_zeroes", blk_pwrite_zeroes(bs, g.off, g.len, 0));
            break;
        case 4:
            tr("zeroes unmap", blk_pwrite_zeroes(bs, g.off, g.len, BLK_WRITE_MAY_UNMAP));
            break;
        case 5:
            tr("discard", blk_discard(bs, g.off, g.len));
            break;
        case 6:
            blk_flush(bs);
            break;
        case 7: {
            /* One whole cluster, compressed (qcow2, vmdk streamOptimized). */
            uint64_t off = g.off / cluster * cluster;
            uint64_t len = min_u64(cluster, (uint64_t)size - off);
            long plen;
            if (!blk_can_precompress(bs) || cluster > MAX_LEN)
                break;
            if (!cbuf && !(cbuf = malloc(2 * MAX_LEN)))
                break;
            plen = blk_compress(bs, pattern, (size_t)len, cbuf, 2 * MAX_LEN);
            if (plen == -ENOSPC)
                plen = -1;
            if (plen < -1)
                break;
            if (tr("compressed", blk_pwrite_compressed(bs, off, len, pattern, cbuf, plen)) == 0)
                done[(*ndone)++] = (struct range){ off, len };
            break;
        }
        }
    }
    free(cbuf);
}

static void read_back(const struct range *done, int ndone)
{
    struct bds *bs;

    if (!ndone)
        return;
    bs = open_image(0);
    if (!bs)
        return;
    for (int i = 0; i < ndone; i++)
        if (blk_pread(bs, done[i].off, min_u64(done[i].len, MAX_READ), buf) < 0)
            break;
    blk_close(bs);
}

static void pass_write(const uint8_t *data, size_t size, uint64_t seed)
{
    struct range done[MAX_OPS];
    struct rng r = { seed };
    int ndone = 0;
    struct bds *bs;

    fuzz_mem_setup_rw(data, size);
    arm_faults(PASS_WRITE);
    bs = open_image(BLK_O_RDWR);
    if (!bs) {
        after_pass(false);
        return;
    }
    write_ops(bs, &r, done, &ndone);
    blk_flush(bs);
    blk_close(bs);
    if (disarm_faults()) {
        reopen_read();
        ndone = 0;      /* "written" data a later failure may have lost */
    }
    read_back(done, ndone);
    recheck();
}

/* A new size: small steps, doubling, or far (large tables, caps). */
static uint64_t pick_size(struct rng *r, uint64_t cur, bool grow)
{
    static const uint64_t far[] = { 1ull << 30, 1ull << 40, 1ull << 50, (1ull << 62) - 512 };
    uint64_t n;

    if (!grow) {
        switch (rng_below(r, 3)) {
        case 0: n = 512; break;
        case 1: n = cur / 2; break;
        default: n = cur - min_u64(cur, rng_below(r, 1u << 20)); break;
        }
        return n < 512 ? 512 : (n + 511) / 512 * 512;
    }
    switch (rng_below(r, 8)) {
    case 0: n = far[rng_below(r, 4)]; break;
    case 1: case 2: n = cur * 2; break;
    default: n = cur + rng_below(r, 16u << 20) + 1; break;
    }
    return n < cur ? cur : (n + 511) / 512 * 512;
}

static void pass_resize(const uint8_t *data, size_t size, uint64_t seed)
{
    struct rng r = { seed ^ 0x5265u };
    struct bds *bs;
    struct err e;
    int64_t cur;

    fuzz_mem_setup_rw(data, size);
    arm_faults(PASS_RESIZE);
    bs = open_image(BLK_O_RDWR);
    if (!bs) {
        after_pass(false);
        return;
    }
    cur = blk_getlength(bs);
    if (cur <= 0)
        goto out;
    uint64_t grown = pick_size(&r, (uint64_t)cur, true);
    err_init(&e);
    if (tr("grow", blk_truncate(bs, grown, true, BLK_PREALLOC_OFF, &e)) == 0) {
        int64_t n = blk_getlength(bs);
        if (n >= 4096)
            blk_pwrite(bs, (uint64_t)n - 4096, 4096, pattern, 0);
    }
    uint64_t shrunk = pick_size(&r, (uint64_t)cur, false);
    err_init(&e);
    tr("shrink", blk_truncate(bs, shrunk, true, BLK_PREALLOC_OFF, &e));
    err_init(&e);
    tr("regrow", blk_truncate(bs, (uint64_t)cur, true, BLK_PREALLOC_OFF, &e));
    blk_flush(bs);
out:
    blk_close(bs);
    after_pass(true);
}

static void snapshots(struct bds *bs, struct rng *r)
{
    struct blk_snapshot *list = NULL, sn;
    struct err e;
    int n;

    err_init(&e);
    n = blk_snapshot_list(bs, &list, &e);
    if (n < 0)
        return;
    memset(&sn, 0, sizeof(sn));
    snprintf(sn.name, sizeof(sn.name), "fz%u", (unsigned)rng_below(r, 4));
    sn.date_sec = 1700000000;
    err_init(&e);
    tr("snapshot -c", blk_snapshot_create(bs, &sn, &e));
    if (n > 0) {
        const struct blk_snapshot *old = &list[rng_below(r, (uint64_t)n)];
        err_init(&e);
        tr("snapshot -a", blk_snapshot_goto(bs, rng_below(r, 2) ? old->id_str : old->name, &e));
        if (rng_below(r, 2)) {
            err_init(&e);
            tr("snapshot -d", blk_snapshot_delete(bs, old->id_str, old->name, &e));
        }
    } else {
        err_init(&e);
        tr("snapshot -a", blk_snapshot_goto(bs, sn.name, &e));
    }
    blk_pwrite(bs, 0, 512, pattern, 0);
    err_init(&e);
    tr("snapshot -d", blk_snapshot_delete(bs, NULL, sn.name, &e));
    free(list);
}

static void bitmaps(struct bds *bs, struct rng *r)
{
    struct blk_bitmap_info *list = NULL;
    struct err e;
    int n;

    if (!blk_supports_bitmaps(bs))
        return;
    err_init(&e);
    n = blk_bitmap_list(bs, &list, &e);
    if (n < 0)
        return;
    err_init(&e);
    tr("bitmap add", blk_bitmap_add(bs, "fzb", rng_below(r, 2) ? 0 : 512u << rng_below(r, 12), false, &e));
    blk_pwrite(bs, 0, 4096, pattern, 0);
    if (n > 0) {
        const char *old = list[rng_below(r, (uint64_t)n)].name;
        err_init(&e);
        switch (rng_below(r, 4)) {
        case 0: blk_bitmap_clear(bs, old, &e); break;
        case 1: blk_bitmap_enable(bs, old, false, &e); break;
        case 2: blk_bitmap_merge(bs, "fzb", bs, old, &e); break;
        default: blk_bitmap_remove(bs, old, &e); break;
        }
    }
    err_init(&e);
    blk_bitmap_remove(bs, "fzb", &e);
    free(list);
}

static void amend(struct bds *bs, struct rng *r)
{
    static const char *const keys[][4] = {
        { "compat", "0.10", "1.1", "v3" },
        { "refcount_bits", "1", "8", "64" },
        { "lazy_refcounts", "on", "off", "on" },
        { "size", "1M", "64M", "1G" },
    };
    struct kvopts o;
    struct err e;

    if (!blk_driver_amend_opts(bs->drv) || !strcmp(FUZZ_FORMAT, "luks"))
        return;
    kvopts_init(&o);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (rng_below(r, 3) == 0)
            kvopts_set(&o, keys[i][0], keys[i][1 + rng_below(r, 3)]);
    if (o.n) {
        for (size_t i = 0; tracing && i < o.n; i++)
            fprintf(stderr, "rw: amend %s=%s\n", o.v[i].key, o.v[i].val);
        err_init(&e);
        tr("amend", blk_amend(bs, &o, rng_below(r, 2), NULL, NULL, &e));
    }
    kvopts_release(&o);
}

static void pass_meta(const uint8_t *data, size_t size, uint64_t seed)
{
    struct rng r = { seed ^ 0x4d65u };
    struct bds *bs;
    struct err e;

    /* LUKS has none of these (its amend needs key-slot secrets), and each
     * open with a key runs the PBKDF: not worth two more opens. */
    if (!strcmp(FUZZ_FORMAT, "luks"))
        return;
    fuzz_mem_setup_rw(data, size);
    arm_faults(PASS_META);
    bs = open_image(BLK_O_RDWR);
    if (!bs) {
        after_pass(false);
        return;
    }
    snapshots(bs, &r);
    bitmaps(bs, &r);
    amend(bs, &r);
    if (rng_below(&r, 2) == 0 && blk_driver_supports_backing(bs->drv)) {
        err_init(&e);
        blk_change_backing(bs, rng_below(&r, 2) ? "base" : NULL, rng_below(&r, 2) ? "raw" : NULL,
                           &e);
    }
    if (rng_below(&r, 4) == 0) {
        err_init(&e);
        tr("make_empty", blk_make_empty(bs, &e));
    }
    blk_flush(bs);
    blk_close(bs);
    after_pass(true);
}

/* Commit: what the top allocates above its backing goes into it. */
static void pass_commit(const uint8_t *data, size_t size)
{
    struct bds *bs, *base;
    struct err e;
    uint64_t copied = 0;
    int64_t len;

    if (!blk_driver_supports_backing(blk_find_format(FUZZ_FORMAT)))
        return;
    fuzz_mem_setup_rw(data, size);
    arm_faults(PASS_COMMIT);
    bs = open_image(BLK_O_RDWR);
    if (!bs) {
        after_pass(false);
        return;
    }
    base = bs->backing;
    err_init(&e);
    if (!base || tr("reopen base", blk_reopen(base, BLK_O_RDWR, &e)) < 0)
        goto out;
    len = blk_getlength(bs);
    int64_t blen = blk_getlength(base);
    if (len <= 0 || blen < 0)
        goto out;
    if (blen < len) {
        err_init(&e);
        if (blk_truncate(base, (uint64_t)len, false, BLK_PREALLOC_OFF, &e) < 0)
            goto out;
    }
    uint64_t off = 0, n;
    for (int i = 0; i < MAX_STEPS && off < (uint64_t)len && copied < MAX_COMMIT; i++, off += n) {
        int st = blk_block_status_above(bs, base, off, (uint64_t)len - off, &n, NULL, NULL, NULL);
        if (st < 0 || n == 0)
            break;
        n = min_u64(n, (uint64_t)len - off);
        if (!(st & BLK_STATUS_ALLOCATED))
            continue;
        if ((st & BLK_STATUS_ZERO) && !(st & BLK_STATUS_DATA)) {
            if (blk_pwrite_zeroes(base, off, n, BLK_WRITE_MAY_UNMAP) < 0)
                break;
            continue;
        }
        n = min_u64(n, MAX_READ);
        if (blk_pread(bs, off, n, buf) < 0 || blk_pwrite(base, off, n, buf, 0) < 0)
            break;
        copied += n;
    }
    if (blk_flush(base) == 0) {
        err_init(&e);
        blk_make_empty(bs, &e);
    }
out:
    blk_close(bs);
    after_pass(false);
}

int FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    uint64_t seed = hash_input(data, size);

    setup_once();
    fault_seed = seed ^ 0x7772666175ull;
    pass_repair(data, size);
    pass_write(data, size, seed);
    pass_resize(data, size, seed);
    pass_meta(data, size, seed);
    pass_commit(data, size);
    fuzz_mem_teardown();
    return 0;
}
