/* Unit tests for engine/compare.c: the sector-granular helpers and the
 * comparison walk over small raw images (offsets reported like qemu-img:
 * the start of the first differing 512-byte sector). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/compare.h"
#include "tap.h"

static char dir[] = "/tmp/qimg-test-compare.XXXXXX";

/* A raw file of size bytes with the given byte at the given offsets. */
static char *mkfile(const char *name, off_t size, const off_t *offs, int n, unsigned char byte)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *path = malloc(len);
    int fd;

    if (!path)
        abort();
    snprintf(path, len, "%s/%s", dir, name);
    fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0 || ftruncate(fd, size) < 0)
        abort();
    for (int i = 0; i < n; i++)
        if (pwrite(fd, &byte, 1, offs[i]) != 1)
            abort();
    close(fd);
    return path;
}

static struct bds *open_raw(const char *path)
{
    struct err e;
    struct bds *bs;

    err_init(&e);
    bs = blk_open(path, "raw", NULL, 0, &e);
    if (!bs) {
        printf("# open %s: %s\n", path, e.msg);
        abort();
    }
    return bs;
}

/* Run compare_common (and compare_tail when no difference was found and
 * the sizes differ) over two files; returns the final result. */
static struct compare_result run(const char *p1, const char *p2, bool strict, bool *tail_ran)
{
    struct bds *a = open_raw(p1), *b = open_raw(p2);
    struct compare_job job;
    struct compare_result res;

    memset(&job, 0, sizeof(job));
    job.bs[0] = a;
    job.bs[1] = b;
    job.size[0] = (uint64_t)blk_getlength(a);
    job.size[1] = (uint64_t)blk_getlength(b);
    job.strict = strict;
    job.buf_size = 64 * 1024;     /* small, so several steps are taken */
    *tail_ran = false;
    if (compare_common(&job, &res) < 0)
        abort();
    if (res.kind == COMPARE_IDENTICAL && job.size[0] != job.size[1]) {
        *tail_ran = true;
        if (compare_tail(&job, &res) < 0)
            abort();
    }
    blk_close(a);
    blk_close(b);
    return res;
}

static void test_find_nonzero(void)
{
    uint8_t buf[2048];

    memset(buf, 0, sizeof(buf));
    is_int(compare_find_nonzero(buf, sizeof(buf)), -1, "find_nonzero: all zero");
    buf[1000] = 1;
    is_int(compare_find_nonzero(buf, sizeof(buf)), 512, "find_nonzero: byte 1000 -> sector 512");
    buf[3] = 1;
    is_int(compare_find_nonzero(buf, sizeof(buf)), 0, "find_nonzero: byte 3 -> 0");
    memset(buf, 0, sizeof(buf));
    buf[600] = 7;
    is_int(compare_find_nonzero(buf, 700), 512, "find_nonzero: short last sector");
    is_int(compare_find_nonzero(buf, 600), -1, "find_nonzero: length stops before the byte");
    buf[0] = 1;
    is_int(compare_find_nonzero(buf, 100), 0, "find_nonzero: buffer shorter than a sector");
}

static void test_compare_sectors(void)
{
    uint8_t a[2048], b[2048];
    uint64_t pnum = 0;

    memset(a, 0x11, sizeof(a));
    memcpy(b, a, sizeof(b));
    ok(!compare_sectors(a, b, sizeof(a), &pnum), "sectors: equal buffers");
    is_uint(pnum, 2048, "sectors: equal run covers all");
    b[1100] = 0;
    ok(!compare_sectors(a, b, sizeof(a), &pnum), "sectors: first sector equal");
    is_uint(pnum, 1024, "sectors: equal run stops at the differing sector");
    ok(compare_sectors(a + 1024, b + 1024, 1024, &pnum), "sectors: differing first sector");
    is_uint(pnum, 512, "sectors: differing run is one sector");
    ok(!compare_sectors(a, b, 700, &pnum), "sectors: partial tail");
    is_uint(pnum, 700, "sectors: partial tail length");
}

static void test_walk(void)
{
    const off_t at1000[] = { 1000 }, at300k[] = { 300 * 1024 }, at3m[] = { 3 * 1024 * 1024 + 5 };
    char *z1 = mkfile("z1", 1 << 20, NULL, 0, 0);
    char *z2 = mkfile("z2", 1 << 20, NULL, 0, 0);
    char *d1 = mkfile("d1", 1 << 20, at1000, 1, 0x5a);
    char *d2 = mkfile("d2", 1 << 20, at300k, 1, 0x5a);
    char *big = mkfile("big", 4 << 20, NULL, 0, 0);
    char *bigd = mkfile("bigd", 4 << 20, at3m, 1, 1);
    struct compare_result r;
    bool tail;

    r = run(z1, z2, false, &tail);
    is_int(r.kind, COMPARE_IDENTICAL, "walk: two holes are identical");
    r = run(z1, d1, false, &tail);
    is_int(r.kind, COMPARE_CONTENT_MISMATCH, "walk: data vs hole differs");
    is_uint(r.offset, 512, "walk: reported at the sector of byte 1000");
    r = run(d1, d2, false, &tail);
    is_int(r.kind, COMPARE_CONTENT_MISMATCH, "walk: two data files differ");
    is_uint(r.offset, 512, "walk: first difference wins");
    r = run(z1, big, false, &tail);
    is_int(r.kind, COMPARE_IDENTICAL, "walk: longer empty image is identical");
    ok(tail, "walk: tail checked when sizes differ");
    r = run(bigd, z1, false, &tail);
    is_int(r.kind, COMPARE_CONTENT_MISMATCH, "walk: data in the longer tail differs");
    is_uint(r.offset, 3 * 1024 * 1024, "walk: tail difference at its sector");
    r = run(d1, d1, true, &tail);
    is_int(r.kind, COMPARE_IDENTICAL, "walk: strict, same file");
    unlink(z1); unlink(z2); unlink(d1); unlink(d2); unlink(big); unlink(bigd);
    free(z1); free(z2); free(d1); free(d2); free(big); free(bigd);
}

/* A raw file of size bytes of non-zero data, with byte ^ 0xff at offs. */
static char *mkdata(const char *name, off_t size, const off_t *offs, int n)
{
    static uint8_t chunk[1 << 16];
    char *path = mkfile(name, size, NULL, 0, 0);
    int fd = open(path, O_WRONLY);

    if (fd < 0)
        abort();
    for (size_t i = 0; i < sizeof(chunk); i++)
        chunk[i] = (uint8_t)(i * 7 + 1);
    for (off_t o = 0; o < size; o += (off_t)sizeof(chunk))
        if (pwrite(fd, chunk, sizeof(chunk), o) != (ssize_t)sizeof(chunk))
            abort();
    for (int i = 0; i < n; i++) {
        uint8_t c = (uint8_t)(chunk[offs[i] % (off_t)sizeof(chunk)] ^ 0xff);
        if (pwrite(fd, &c, 1, offs[i]) != 1)
            abort();
    }
    close(fd);
    return path;
}

/* Progress must arrive in step order, whatever thread finished a step. */
struct order {
    struct compare_job *job;
    uint64_t sum;
    bool in_order;
};

static void on_progress(void *opaque, uint64_t bytes)
{
    struct order *o = opaque;
    o->sum += bytes;
    if (o->job->offset != o->sum)
        o->in_order = false;
}

/* Images large enough for the worker threads, with differences at several
 * places: the reported offset is always the first difference, as the
 * sequential walk finds it. */
static void test_parallel(void)
{
    const off_t size = 64 << 20;
    const off_t late[] = { 40 * 1024 * 1024 + 777, 50 * 1024 * 1024 + 3 };
    const off_t spread[] = { 9 * 1024 * 1024 + 1, 20 * 1024 * 1024 + 512, 33 * 1024 * 1024 + 5,
                             60 * 1024 * 1024 + 1000 };
    const off_t early[] = { 4096 + 700, 60 * 1024 * 1024 + 1000 };
    char *base = mkfile("pbase", size, spread, 4, 0x33);
    char *a = mkfile("pa", size, late, 2, 0x44);
    char *b = mkfile("pb", size, early, 2, 0x44);
    char *c = mkfile("pc", size, spread, 4, 0x33);
    struct compare_result r;
    bool tail;

    r = run(base, c, false, &tail);
    is_int(r.kind, COMPARE_IDENTICAL, "parallel: equal scattered data is identical");
    for (int rep = 0; rep < 5; rep++) {
        r = run(base, a, false, &tail);
        is_int(r.kind, COMPARE_CONTENT_MISMATCH, "parallel: scattered data differs");
        is_uint(r.offset, 9 * 1024 * 1024, "parallel: first of four differences wins");
    }
    r = run(a, b, false, &tail);
    is_uint(r.offset, 4096 + 512, "parallel: an early difference wins over later ones");
    r = run(b, a, false, &tail);
    is_uint(r.offset, 4096 + 512, "parallel: whichever side holds it");

    /* Differences in adjacent steps (64 KiB each here), both in flight at
     * once: whichever worker finishes first, the lower one is reported. */
    {
        const off_t adj[] = { 8 * 1024 * 1024 + 65536 + 100, 8 * 1024 * 1024 + 100 };
        char *d1 = mkdata("dd1", 16 << 20, NULL, 0), *d2 = mkdata("dd2", 16 << 20, adj, 2);
        bool all = true;
        for (int rep = 0; rep < 20; rep++) {
            r = run(d1, d2, false, &tail);
            all = all && r.kind == COMPARE_CONTENT_MISMATCH && r.offset == 8 * 1024 * 1024;
        }
        ok(all, "parallel: adjacent differing steps report the first, every time");
        unlink(d1); unlink(d2);
        free(d1); free(d2);
    }

    /* progress order */
    {
        struct bds *x = open_raw(base), *y = open_raw(c);
        struct compare_job job;
        struct compare_result res;
        struct order o = { &job, 0, true };

        memset(&job, 0, sizeof(job));
        job.bs[0] = x;
        job.bs[1] = y;
        job.size[0] = job.size[1] = (uint64_t)size;
        job.buf_size = 64 * 1024;
        job.progress = on_progress;
        job.opaque = &o;
        ok(compare_common(&job, &res) == 0 && res.kind == COMPARE_IDENTICAL,
           "parallel: identical with progress");
        ok(o.in_order, "parallel: progress arrives in step order");
        is_uint(o.sum, (uint64_t)size, "parallel: progress covers the whole image");
        blk_close(x);
        blk_close(y);
    }
    unlink(base); unlink(a); unlink(b); unlink(c);
    free(base); free(a); free(b); free(c);
}

int main(void)
{
    if (!mkdtemp(dir))
        abort();
    test_find_nonzero();
    test_compare_sectors();
    test_walk();
    test_parallel();
    rmdir(dir);
    return done_testing();
}
