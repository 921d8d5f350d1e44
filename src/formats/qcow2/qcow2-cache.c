/* qcow2 metadata cache: a few whole-cluster buffers for L2 tables and for
 * refcount blocks, written back lazily (qcow2.txt "Host cluster management",
 * "Cluster mapping").
 *
 * Ordering rules that keep an image consistent after a crash:
 *  - refcount increases reach the disk before the L2 entries using them;
 *  - L2 entries that drop a reference reach the disk before the refcount
 *    decrease (so a crash only leaks);
 *  - guest data reaches the disk (file flush) before the L2 entries mapping it.
 * The first two are expressed by "depends": a cache whose entries may only be
 * written after another cache has been flushed. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"

/* Which cache must be flushed first (by identity). */
static struct qcow2_cache *cache_dep(struct qcow2_state *s, struct qcow2_cache *c);

int qcow2_cache_init(struct qcow2_cache *c, unsigned n, size_t size)
{
    memset(c, 0, sizeof(*c));
    c->e = calloc(n, sizeof(*c->e));
    if (!c->e)
        return -ENOMEM;
    c->n = n;
    c->size = size;
    for (unsigned i = 0; i < n; i++) {
        if (posix_memalign((void **)&c->e[i].buf, 4096, size)) {
            c->e[i].buf = NULL;
            qcow2_cache_release(c);
            return -ENOMEM;
        }
    }
    return 0;
}

void qcow2_cache_release(struct qcow2_cache *c)
{
    if (!c->e)
        return;
    for (unsigned i = 0; i < c->n; i++)
        free(c->e[i].buf);
    free(c->e);
    memset(c, 0, sizeof(*c));
}

/* A flag per state says the refcount cache must wait for the L2 cache
 * (a decrease is pending); the reverse dependency is the default: L2 tables
 * always go after refcount blocks. */
static struct qcow2_cache *cache_dep(struct qcow2_state *s, struct qcow2_cache *c)
{
    if (c == &s->l2_cache)
        return &s->rb_cache;
    return NULL;
}

static int write_entry(struct bds *bs, struct qcow2_cache *c, struct qcow2_cache_entry *e)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_cache *dep = cache_dep(s, c);
    int r;

    if (!e->dirty)
        return 0;
    if (dep) {
        /* Refcount blocks first, then the data barrier, then the L2 table. */
        r = qcow2_cache_flush(bs, dep);
        if (r < 0)
            return r;
        if (s->need_file_flush) {
            r = blk_flush(bs->file);
            if (r == 0 && s->data_file != bs->file)
                r = blk_flush(s->data_file);
            if (r < 0)
                return r;
            s->need_file_flush = false;
        }
    }
    r = blk_pwrite(bs->file, e->offset, c->size, e->buf, 0);
    if (r < 0)
        return r;
    e->dirty = false;
    return 0;
}

int qcow2_cache_flush(struct bds *bs, struct qcow2_cache *c)
{
    int ret = 0;
    for (unsigned i = 0; i < c->n; i++) {
        if (c->e[i].offset && c->e[i].dirty) {
            int r = write_entry(bs, c, &c->e[i]);
            if (r < 0 && ret == 0)
                ret = r;
        }
    }
    return ret;
}

int qcow2_cache_get(struct bds *bs, struct qcow2_cache *c, uint64_t offset, bool empty,
                    uint8_t **buf)
{
    struct qcow2_cache_entry *victim = NULL;
    int r;

    if (offset & (c->size - 1)) {
        struct qcow2_state *s = qcow2_st(bs);
        qcow2_signal_corruption(bs, true, "Cannot get entry from %s cache: Offset %#" PRIx64
                                " is unaligned", c == &s->l2_cache ? "L2 table" : "Refcount block",
                                offset);
        return -EIO;
    }
    for (unsigned i = 0; i < c->n; i++) {
        if (c->e[i].offset == offset) {
            c->e[i].lru = ++c->tick;
            if (empty)
                memset(c->e[i].buf, 0, c->size);
            *buf = c->e[i].buf;
            return 0;
        }
    }
    for (unsigned i = 0; i < c->n; i++) {
        struct qcow2_cache_entry *e = &c->e[i];
        if (!e->offset) {
            victim = e;
            break;
        }
        if (!victim || e->lru < victim->lru)
            victim = e;
    }
    if (victim->offset && victim->dirty) {
        r = write_entry(bs, c, victim);
        if (r < 0)
            return r;
    }
    victim->offset = 0;
    victim->dirty = false;
    if (empty) {
        memset(victim->buf, 0, c->size);
    } else {
        r = blk_pread(bs->file, offset, c->size, victim->buf);
        if (r < 0)
            return r;
    }
    victim->offset = offset;
    victim->lru = ++c->tick;
    *buf = victim->buf;
    return 0;
}

void qcow2_cache_mark_dirty(struct qcow2_cache *c, const uint8_t *buf)
{
    for (unsigned i = 0; i < c->n; i++) {
        if (c->e[i].buf == buf) {
            c->e[i].dirty = true;
            return;
        }
    }
}

void qcow2_cache_drop(struct qcow2_cache *c, uint64_t offset)
{
    for (unsigned i = 0; i < c->n; i++) {
        if (c->e[i].offset == offset) {
            c->e[i].offset = 0;
            c->e[i].dirty = false;
        }
    }
}

void qcow2_cache_drop_all(struct qcow2_cache *c)
{
    for (unsigned i = 0; i < c->n; i++) {
        c->e[i].offset = 0;
        c->e[i].dirty = false;
    }
}

int qcow2_meta_flush(struct bds *bs)
{
    struct qcow2_state *s = qcow2_st(bs);
    int r = qcow2_cache_flush(bs, &s->rb_cache);
    if (r == 0)
        r = qcow2_cache_flush(bs, &s->l2_cache);
    return r;
}
