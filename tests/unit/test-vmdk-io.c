/* vmdk driver end to end: create each subformat, apply a deterministic mix
 * of unaligned writes (and zero writes with zeroed grains), with and without
 * a backing file, and check that reads match a reference buffer, also after
 * reopening; streamOptimized takes whole-grain compressed writes in order. */
#include <stdlib.h>
#include <unistd.h>

#include "block/blk.h"
#include "tap.h"

#define SIZE (3u << 20)
#define GRAIN 65536u

static uint32_t rng = 4242;
static uint32_t next(void)
{
    rng = rng * 1103515245u + 12345u;
    return rng >> 8;
}

static bool create(const char *path, const char *opts)
{
    struct kvopts o;
    struct err e;
    int r;

    kvopts_init(&o);
    err_init(&e);
    if (opts && kvopts_parse(&o, opts, NULL, &e) < 0)
        return false;
    kvopts_set(&o, "size", "3M");
    r = blk_create("vmdk", path, &o, &e);
    if (r < 0)
        printf("# create %s: %s\n", opts ? opts : "", e.msg);
    kvopts_release(&o);
    return r == 0;
}

static bool verify(struct bds *bs, const uint8_t *ref, const char *what)
{
    uint8_t *buf = malloc(SIZE);
    bool good = blk_pread(bs, 0, SIZE, buf) == 0 && memcmp(buf, ref, SIZE) == 0;
    if (!good) {
        for (uint32_t i = 0; i < SIZE; i++)
            if (buf[i] != ref[i]) {
                printf("# %s: first difference at %u (%02x != %02x)\n", what, i, buf[i], ref[i]);
                break;
            }
    }
    free(buf);
    return good;
}

static void cleanup(const char *dir)
{
    char cmd[600];
    if (getenv("QIMG_KEEP")) {
        printf("# kept %s\n", dir);
        return;
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
}

static void run(const char *subformat, bool zeroed, bool with_backing)
{
    char dir[] = "/tmp/qimg-vmdk-XXXXXX";
    char path[128], bpath[128], opts[256];
    uint8_t *ref = calloc(1, SIZE), *data = malloc(256 << 10);
    struct err e;
    struct bds *bs;
    const char *what = subformat;

    if (!mkdtemp(dir)) {
        ok(false, "mkdtemp");
        return;
    }
    snprintf(path, sizeof(path), "%s/t.vmdk", dir);
    snprintf(bpath, sizeof(bpath), "%s/b.vmdk", dir);
    if (with_backing) {
        ok(create(bpath, NULL), "%s: create backing", what);
        err_init(&e);
        bs = blk_open(bpath, "vmdk", NULL, BLK_O_RDWR, &e);
        ok(bs != NULL, "%s: open backing", what);
        if (!bs)
            goto out;
        for (uint32_t i = 0; i < SIZE; i++)
            ref[i] = (uint8_t)(i * 7 + 3);
        ok(blk_pwrite(bs, 0, SIZE, ref, 0) == 0, "%s: fill backing", what);
        blk_close(bs);
        snprintf(opts, sizeof(opts), "subformat=%s,zeroed_grain=%s,backing_file=b.vmdk,"
                 "backing_fmt=vmdk", subformat, zeroed ? "on" : "off");
    } else {
        snprintf(opts, sizeof(opts), "subformat=%s%s", subformat, zeroed ? ",zeroed_grain=on" : "");
    }
    ok(create(path, opts), "%s: create (%s)", what, opts);
    err_init(&e);
    bs = blk_open(path, NULL, NULL, BLK_O_RDWR, &e);
    ok(bs != NULL, "%s: open probed%s%s", what, bs ? "" : ": ", bs ? "" : e.msg);
    if (!bs)
        goto out;
    is_uint(bs->total_size, SIZE, "%s: virtual size", what);
    ok(verify(bs, ref, "fresh"), "%s: fresh image reads as its backing/zeros", what);

    if (!strcmp(subformat, "streamOptimized")) {
        /* Whole grains in order, skipping some (they stay unallocated). */
        for (uint32_t off = 0; off < SIZE; off += GRAIN) {
            if ((off / GRAIN) % 3 == 1)
                continue;
            for (uint32_t i = 0; i < GRAIN; i++)
                data[i] = (uint8_t)(next() % 5 == 0 ? next() : 0x5a);
            ok(blk_pwrite(bs, off, GRAIN, data, BLK_WRITE_COMPRESSED) == 0,
               "%s: compressed write at %u", what, off);
            memcpy(ref + off, data, GRAIN);
        }
        ok(blk_pwrite(bs, 0, GRAIN, data, BLK_WRITE_COMPRESSED) < 0,
           "%s: rewriting a written grain is refused", what);
    } else {
        for (int n = 0; n < 40; n++) {
            uint32_t len = 1 + next() % (200 << 10);
            uint32_t off = next() % (SIZE - len);
            for (uint32_t i = 0; i < len; i++)
                data[i] = (uint8_t)next();
            ok(blk_pwrite(bs, off, len, data, 0) == 0, "%s: write %u+%u", what, off, len);
            memcpy(ref + off, data, len);
        }
        if (zeroed) {
            ok(blk_pwrite_zeroes(bs, GRAIN * 4, GRAIN * 2, BLK_WRITE_MAY_UNMAP) == 0,
               "%s: zero two grains", what);
            memset(ref + GRAIN * 4, 0, GRAIN * 2);
            uint64_t pnum = 0, map = 0;
            struct bds *f = NULL;
            int st = blk_block_status(bs, GRAIN * 4, GRAIN, &pnum, &map, &f);
            ok(st >= 0 && (st & BLK_STATUS_ZERO) && !(st & BLK_STATUS_DATA),
               "%s: zeroed grain reports ZERO (%d)", what, st);
        }
        ok(blk_pwrite_zeroes(bs, 1000, 3000, 0) == 0, "%s: unaligned zero write", what);
        memset(ref + 1000, 0, 3000);
    }
    ok(verify(bs, ref, "written"), "%s: reads match after writes", what);
    ok(blk_flush(bs) == 0, "%s: flush", what);
    blk_close(bs);

    err_init(&e);
    bs = blk_open(path, "vmdk", NULL, 0, &e);
    ok(bs != NULL, "%s: reopen", what);
    if (bs) {
        ok(verify(bs, ref, "reopened"), "%s: reads match after reopen", what);
        struct blk_check_result res = { 0 };
        err_init(&e);
        ok(blk_check(bs, &res, 0, &e) == 0 && res.corruptions == 0, "%s: check is clean", what);
        blk_close(bs);
    }
out:
    cleanup(dir);
    free(ref);
    free(data);
}

int main(void)
{
    run("monolithicSparse", false, false);
    run("monolithicSparse", true, false);
    run("monolithicSparse", false, true);
    run("monolithicSparse", true, true);
    run("monolithicFlat", false, false);
    run("twoGbMaxExtentSparse", false, true);
    run("twoGbMaxExtentFlat", false, false);
    run("streamOptimized", false, false);
    return done_testing();
}
