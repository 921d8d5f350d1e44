/* qcow2 driver end to end: create images with several layouts, apply a
 * deterministic mix of unaligned writes, zero writes, discards and compressed
 * writes (with and without a backing file), and check that reads match a
 * reference buffer and that our check finds no errors or leaks afterwards,
 * also after reopening. */
#include <stdlib.h>
#include <unistd.h>

#include "block/blk.h"
#include "tap.h"

#define SIZE (4u << 20)

static uint32_t rng = 12345;
static uint32_t next(void)
{
    rng = rng * 1103515245u + 12345u;
    return rng >> 8;
}

static bool create(const char *path, const char *opts, const char *size)
{
    struct kvopts o;
    struct err e;
    int r;

    kvopts_init(&o);
    err_init(&e);
    if (opts && kvopts_parse(&o, opts, NULL, &e) < 0)
        return false;
    kvopts_set(&o, "size", size);
    r = blk_create("qcow2", path, &o, &e);
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

static void run(const char *opts, bool with_backing)
{
    char path[] = "/tmp/qimg-qcow2-XXXXXX", bpath[] = "/tmp/qimg-qcow2b-XXXXXX";
    uint8_t *ref = calloc(1, SIZE), *data = malloc(256 << 10);
    char topts[512];
    struct err e;
    struct bds *bs;
    int fd;

    fd = mkstemp(path);
    close(fd);
    fd = mkstemp(bpath);
    close(fd);
    for (uint32_t i = 0; i < (256u << 10); i++)
        data[i] = (uint8_t)(next() | 1);

    if (with_backing) {
        ok(create(bpath, NULL, "4M"), "[%s] create backing", opts);
        err_init(&e);
        bs = blk_open(bpath, "qcow2", NULL, BLK_O_RDWR | BLK_O_NO_FLUSH, &e);
        for (uint32_t off = 0; off < SIZE; off += 512 << 10) {
            memset(ref + off, 0x42, 100 << 10);
            blk_pwrite(bs, off, 100 << 10, ref + off, 0);
        }
        blk_close(bs);
        snprintf(topts, sizeof(topts), "%s%sbacking_file=%s,backing_fmt=qcow2", opts ? opts : "",
                 opts ? "," : "", bpath);
    } else {
        snprintf(topts, sizeof(topts), "%s", opts ? opts : "");
    }
    ok(create(path, topts[0] ? topts : NULL, "4M"), "[%s%s] create", opts, with_backing ? "+backing" : "");
    err_init(&e);
    bs = blk_open(path, "qcow2", NULL, BLK_O_RDWR | BLK_O_NO_FLUSH, &e);
    ok(bs != NULL, "[%s] open: %s", opts, e.msg);
    if (!bs)
        goto out;

    bool io_ok = true;
    for (int i = 0; i < 300; i++) {
        uint32_t op = next() % 10;
        uint32_t off = next() % SIZE, len = 1 + next() % (200 << 10);
        if (off + len > SIZE)
            len = SIZE - off;
        if (op < 6) {
            uint32_t src = next() % ((256u << 10) - len + 1);
            int r = blk_pwrite(bs, off, len, data + src, 0);
            if (r < 0) {
                printf("# write %u+%u: %d\n", off, len, r);
                io_ok = false;
            }
            memcpy(ref + off, data + src, len);
        } else if (op < 8) {
            int r = blk_pwrite_zeroes(bs, off, len, op == 7 ? BLK_WRITE_MAY_UNMAP : 0);
            if (r < 0) {
                printf("# zero %u+%u: %d\n", off, len, r);
                io_ok = false;
            }
            memset(ref + off, 0, len);
        } else if (op == 8) {
            /* discard keeps the contents undefined only for the discarded
             * whole clusters; compare by reading back */
            uint8_t *tmp = malloc(len);
            if (blk_discard(bs, off, len) < 0 || blk_pread(bs, off, len, tmp) < 0) {
                printf("# discard %u+%u failed\n", off, len);
                io_ok = false;
            }
            memcpy(ref + off, tmp, len);
            free(tmp);
        } else {
            uint32_t c = (off / 65536) * 65536;
            uint32_t src = next() % (192u << 10);
            if (blk_discard(bs, c, 65536) < 0) {
                printf("# discard %u failed\n", c);
                io_ok = false;
            } else {
                /* compressed write of a discarded (zero/unallocated) cluster */
                uint8_t *tmp = malloc(65536);
                if (blk_pread(bs, c, 65536, tmp) < 0)
                    io_ok = false;
                memcpy(ref + c, tmp, 65536);
                free(tmp);
                memset(data + src, 0x77, 30000);
                int r = blk_pwrite(bs, c, 65536, data + src, BLK_WRITE_COMPRESSED);
                if (r == 0)
                    memcpy(ref + c, data + src, 65536);
            }
        }
    }
    ok(io_ok, "[%s] i/o succeeded", opts);
    ok(verify(bs, ref, "before close"), "[%s] reads match before close", opts);
    blk_close(bs);

    err_init(&e);
    bs = blk_open(path, "qcow2", NULL, BLK_O_RDWR | BLK_O_CHECK | BLK_O_NO_FLUSH, &e);
    ok(bs != NULL, "[%s] reopen", opts);
    if (bs) {
        struct blk_check_result res;
        memset(&res, 0, sizeof(res));
        err_init(&e);
        int r = blk_check(bs, &res, 0, &e);
        ok(r == 0 && res.corruptions == 0 && res.leaks == 0 && res.check_errors == 0,
           "[%s] check clean (r=%d corruptions=%" PRId64 " leaks=%" PRId64 ")", opts, r,
           res.corruptions, res.leaks);
        ok(verify(bs, ref, "after reopen"), "[%s] reads match after reopen", opts);
        blk_close(bs);
    }
out:
    unlink(path);
    unlink(bpath);
    free(ref);
    free(data);
}

int main(void)
{
    run(NULL, false);
    run("compat=0.10", false);
    run("cluster_size=4096", false);
    run("refcount_bits=1", false);
    run("refcount_bits=64", false);
    run("extended_l2=on", false);
    run("compression_type=zstd", false);
    run("lazy_refcounts=on", false);
    run("cluster_size=512", false);
    run(NULL, true);
    run("compat=0.10", true);
    run("extended_l2=on", true);
    return done_testing();
}
