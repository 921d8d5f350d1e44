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
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "formats/qcow2/qcow2.h"
#include "util/ckd.h"
#include "util/hugemap.h"

/* Which cache must be flushed first (by identity). */
static struct qcow2_cache *cache_dep(struct qcow2_state *s, struct qcow2_cache *c);

/* Memory. Slots get their cluster buffer on first use, not at open: a
 * command that reads a handful of tables (info, map of a small image) would
 * otherwise pay for the whole cache (megabytes) at open. The buffers are
 * carved in order from one reserved, 2 MiB-aligned mapping of n * size
 * bytes (virtual until touched), advised for transparent huge pages: on a
 * fresh page the kernel's fault handling costs far more than the 64 KiB
 * read that fills it (measured 15-30 us per 4 KiB page in the bench VM;
 * docs/performance.md), and a walk over a large image's L2 tables touches
 * hundreds of them. One huge page is one fault. The bound stays n slots of
 * size bytes; if the mapping cannot be made, slots fall back to
 * posix_memalign one by one. Sanitizer builds always use the fallback, so
 * that an overrun of one table is caught and not silently written into the
 * next slot of the arena. */
struct cache_mem {
    uint8_t *arena;         /* NULL: per-slot allocations */
    size_t arena_len;       /* bytes mapped at arena */
    unsigned used;          /* slots carved from the arena */
    bool advised;           /* huge-page advice decided (at the first carve) */
    struct qcow2_cache_entry e[];
};

#define HUGE_SIZE HUGE_PAGE_SIZE
#define CACHE_ARENA HUGE_MAP_ENABLED

static struct cache_mem *cache_mem(struct qcow2_cache *c)
{
    return (struct cache_mem *)(void *)((char *)c->e - offsetof(struct cache_mem, e));
}


/* Huge pages only for a cache that will fill one. A huge page is one
 * fault instead of 512 but always 2 MiB resident: worth it for the L2
 * tables of a walk over a large image (4 GiB: 8 tables, 128 small-page
 * faults), a waste of memory for the one or two refcount blocks of a
 * small image or the two L2 tables of a 1 GiB one (rebase of a 1 GiB
 * overlay held four huge pages, 8 MiB, for 320 KiB of tables). The
 * estimate is what a full walk touches: the L1's tables for the L2
 * cache, the refcount blocks covering the file for the refcount cache;
 * at 512 KiB and more (128 small pages) the arena is advised. */
#define HUGE_MIN_USE ((uint64_t)512 << 10)

static void arena_advise(struct bds *bs, struct qcow2_cache *c, struct cache_mem *m)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t tables;

    m->advised = true;
    if (c == &s->l2_cache) {
        tables = s->l1_size;
    } else {
        int64_t len = blk_getlength(bs->file);
        unsigned shift = s->cluster_bits + s->rb_bits;
        tables = len > 0 && shift < 64 ? ((uint64_t)len >> shift) + 1 : 1;
    }
    if (min_u64(tables, c->n) * c->size < HUGE_MIN_USE)
        return;
#ifdef MADV_HUGEPAGE
    madvise(m->arena, m->arena_len, MADV_HUGEPAGE);     /* advice only */
#endif
}

int qcow2_cache_init(struct qcow2_cache *c, unsigned n, size_t size)
{
    struct cache_mem *m;
    size_t bytes, total;

    memset(c, 0, sizeof(*c));
    if (ckd_mul(&bytes, (size_t)n, sizeof(struct qcow2_cache_entry)) ||
        ckd_add(&bytes, bytes, sizeof(struct cache_mem)))
        return -ENOMEM;
    m = calloc(1, bytes);
    if (!m)
        return -ENOMEM;
    if (CACHE_ARENA && !ckd_mul(&total, (size_t)n, size) && total <= SIZE_MAX / 2) {
        size_t len = (total + HUGE_SIZE - 1) & ~(HUGE_SIZE - 1);
        m->arena = huge_map(len, true);
        if (m->arena)
            m->arena_len = len;
    }
    c->e = m->e;
    c->n = n;
    c->hwm = 0;
    c->size = size;
    return 0;
}

/* A buffer for a slot that has none. */
static uint8_t *cache_buf_new(struct qcow2_cache *c)
{
    struct cache_mem *m = cache_mem(c);
    void *p = NULL;

    if (m->arena && m->used < c->n)
        return m->arena + (size_t)m->used++ * c->size;
    /* 4 KiB aligned so that O_DIRECT files need no bounce buffer. */
    if (posix_memalign(&p, 4096, c->size))
        return NULL;
    return p;
}

static bool in_arena(const struct cache_mem *m, const uint8_t *b)
{
    return m->arena && (uintptr_t)b >= (uintptr_t)m->arena &&
           (uintptr_t)b < (uintptr_t)m->arena + m->arena_len;
}

void qcow2_cache_release(struct qcow2_cache *c)
{
    struct cache_mem *m;

    if (!c->e)
        return;
    m = cache_mem(c);
    for (unsigned i = 0; i < c->n; i++)
        if (c->e[i].buf && !in_arena(m, c->e[i].buf))
            free(c->e[i].buf);
    if (m->arena)
        munmap(m->arena, m->arena_len);
    free(m);
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
    for (unsigned i = 0; i < c->hwm; i++) {
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
    for (unsigned i = 0; i < c->hwm; i++) {
        if (c->e[i].offset == offset && c->e[i].buf) {
            /* Move the hit to the front: walks (map, check, allocation
             * scans) ask for the same table thousands of times in a row.
             * Callers hold buffers, never slot indices, and eviction goes
             * by lru, so the order of the slots is free. */
            if (i > 0) {
                struct qcow2_cache_entry t = c->e[0];
                c->e[0] = c->e[i];
                c->e[i] = t;
            }
            c->e[0].lru = ++c->tick;
            if (empty)
                memset(c->e[0].buf, 0, c->size);
            *buf = c->e[0].buf;
            return 0;
        }
    }
    /* A free slot that already has a buffer, else a never-used one, else the
     * least recently used. Slots from hwm on are all never used (no buffer),
     * so the scan stops there: with a large cache of which little is in use
     * (512-byte clusters: 65536 slots), every operation would otherwise cost
     * the whole cache, and loops that touch the cache once per table (check,
     * shrink, freeing clusters) became quadratic (a fuzzed image: seconds). */
    for (unsigned i = 0; i < c->hwm; i++) {
        struct qcow2_cache_entry *e = &c->e[i];
        if (!e->offset) {
            if (e->buf) {
                victim = e;
                break;
            }
            if (!victim || victim->offset)
                victim = e;
            continue;
        }
        if (!victim || (victim->offset && e->lru < victim->lru))
            victim = e;
    }
    if ((!victim || victim->offset) && c->hwm < c->n)
        victim = &c->e[c->hwm++];
    if (victim->offset && victim->dirty) {
        r = write_entry(bs, c, victim);
        if (r < 0)
            return r;
    }
    victim->offset = 0;
    victim->dirty = false;
    if (!victim->buf && cache_mem(c)->arena && !cache_mem(c)->advised)
        arena_advise(bs, c, cache_mem(c));
    if (!victim->buf && !(victim->buf = cache_buf_new(c)))
        return -ENOMEM;
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

uint8_t *qcow2_cache_lookup(struct qcow2_cache *c, uint64_t offset)
{
    for (unsigned i = 0; offset && i < c->hwm; i++)
        if (c->e[i].offset == offset && c->e[i].buf)
            return c->e[i].buf;
    return NULL;
}

void qcow2_cache_mark_dirty(struct qcow2_cache *c, const uint8_t *buf)
{
    for (unsigned i = 0; i < c->hwm; i++) {
        if (c->e[i].buf == buf) {
            c->e[i].dirty = true;
            return;
        }
    }
}

void qcow2_cache_drop(struct qcow2_cache *c, uint64_t offset)
{
    for (unsigned i = 0; i < c->hwm; i++) {
        if (c->e[i].offset == offset) {
            c->e[i].offset = 0;
            c->e[i].dirty = false;
        }
    }
}

void qcow2_cache_drop_all(struct qcow2_cache *c)
{
    for (unsigned i = 0; i < c->hwm; i++) {
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
