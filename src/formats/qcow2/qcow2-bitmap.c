/* qcow2 persistent dirty bitmaps (qcow2.txt "Bitmaps extension", autoclear
 * bit 0, "Bitmaps": "Bitmap directory", "Bitmap table", "Bitmap data",
 * "Dirty tracking bitmaps").
 *
 * The model is qemu 7.2's, because the on-disk result of every command must
 * be what qemu-img leaves behind:
 * - open (any mode) validates the whole directory and, for each bitmap not
 *   flagged in_use, its table and the table's size; the data is loaded into
 *   memory. A bitmap flagged in_use at open is "inconsistent": it is listed
 *   and can be removed, nothing else; it is never rewritten.
 * - a read-write open flags the loaded bitmaps in_use on disk (directory
 *   rewritten in place while the autoclear bit is dropped), then guest writes
 *   set bits in the enabled ones (qcow2_bitmap_note_write);
 * - close stores every consistent bitmap afresh: data clusters (only those
 *   holding a set bit; zero clusters are 0 entries), its table, a new
 *   directory, refcounts flushed, then the header switch; the old tables and
 *   directory are freed after it.
 *
 * Invariants: b->dir mirrors the directory on disk (s->nb_bitmaps entries,
 * every entry passed the constraint check); b->mem holds the in-memory
 * bitmaps in creation order (qemu keeps its list newest first, so "qemu's
 * order" below is the reverse). A chunk covers one cluster of serialized
 * bitmap (cluster_size * 8 bits, bit n at byte n / 8, bit n % 8); NULL is all
 * zero, BM_ONES all set; bits past the bitmap's end are always zero. Memory
 * for loaded data is capped (hostile tables may point many entries at the
 * same cluster). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"

#define BME_MAX_TABLE_SIZE 0x8000000ULL
#define BME_MAX_PHYS_SIZE 0x20000000ULL
#define BME_MAX_GRAN_BITS 31
#define BME_MIN_GRAN_BITS 9
#define BME_MAX_NAME_SIZE 1023
#define BME_MAX_BITMAPS 65535
#define BME_MAX_DIR_SIZE (1024ULL * 65535)
#define BME_ENTRY_HDR 24

#define BME_FLAG_IN_USE 1u
#define BME_FLAG_AUTO 2u
#define BME_RESERVED_FLAGS 0xfffffffcu

#define BME_TE_RESERVED 0xff000000000001feULL
#define BME_TE_OFFSET 0x00fffffffffffe00ULL
#define BME_TE_ALL_ONES 1ULL

#define BM_TYPE_DIRTY 1

/* Total loaded bitmap data we accept beyond the file's own size. */
#define BM_MEM_SLACK (256ULL << 20)

static uint8_t bm_ones_marker;
#define BM_ONES (&bm_ones_marker)

struct bm_dirent {
    char *name;
    uint64_t tbl_off;
    uint32_t tbl_size;
    uint32_t flags;
    uint8_t gbits;
};

struct bm_mem {
    char *name;
    uint8_t gbits;
    bool enabled, inconsistent, readonly;
    uint64_t size;          /* guest bytes covered */
    uint64_t nchunks;
    uint8_t **chunk;
};

struct qcow2_bitmaps {
    struct bm_dirent *dir;
    uint32_t ndir;
    struct bm_mem **mem;
    size_t nmem;
    uint64_t loaded;        /* bytes of chunk data read at open */
};

/* ---------------------------------------------------------------- helpers */

static uint64_t bm_nbits(uint64_t size, unsigned gbits)
{
    return (size >> gbits) + ((size & ((1ULL << gbits) - 1)) != 0);
}

static uint64_t bm_bytes(uint64_t size, unsigned gbits)
{
    return div_round_up_u64(bm_nbits(size, gbits), 8);
}

static uint64_t entry_size(size_t name_len)
{
    return align_up_u64(BME_ENTRY_HDR + name_len, 8);
}

/* qemu names the node in some messages; its auto-generated node names are
 * "#block" + a counter (1 for the image) + two random digits. */
static const char *node_name(char buf[16])
{
    snprintf(buf, 16, "#block1%02d", rand() % 99);
    return buf;
}

static void dir_free(struct bm_dirent *d, uint32_t n)
{
    for (uint32_t i = 0; d && i < n; i++)
        free(d[i].name);
    free(d);
}

static void mem_free(struct bm_mem *m)
{
    if (!m)
        return;
    for (uint64_t i = 0; i < m->nchunks; i++)
        if (m->chunk[i] != BM_ONES)
            free(m->chunk[i]);
    free(m->chunk);
    free(m->name);
    free(m);
}

void qcow2_bitmaps_free(struct qcow2_state *s)
{
    struct qcow2_bitmaps *b = s->bitmaps;
    if (!b)
        return;
    dir_free(b->dir, b->ndir);
    for (size_t i = 0; i < b->nmem; i++)
        mem_free(b->mem[i]);
    free(b->mem);
    free(b);
    s->bitmaps = NULL;
}

static struct qcow2_bitmaps *state_get(struct qcow2_state *s)
{
    if (!s->bitmaps)
        s->bitmaps = calloc(1, sizeof(*s->bitmaps));
    return s->bitmaps;
}

static struct bm_mem *mem_find(struct qcow2_state *s, const char *name)
{
    struct qcow2_bitmaps *b = s->bitmaps;
    for (size_t i = 0; b && i < b->nmem; i++)
        if (!strcmp(b->mem[i]->name, name))
            return b->mem[i];
    return NULL;
}

static int dir_find(const struct bm_dirent *d, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(d[i].name, name))
            return (int)i;
    return -1;
}

static struct bm_mem *mem_new(struct qcow2_state *s, const char *name, unsigned gbits,
                              uint64_t size)
{
    struct bm_mem *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->name = strdup(name);
    m->gbits = (uint8_t)gbits;
    m->size = size;
    m->nchunks = div_round_up_u64(bm_bytes(size, gbits), s->cluster_size);
    m->chunk = calloc(m->nchunks ? m->nchunks : 1, sizeof(*m->chunk));
    if (!m->name || !m->chunk) {
        mem_free(m);
        return NULL;
    }
    return m;
}

static int mem_append(struct qcow2_state *s, struct bm_mem *m)
{
    struct qcow2_bitmaps *b = state_get(s);
    struct bm_mem **p;
    if (!b)
        return -ENOMEM;
    p = realloc(b->mem, (b->nmem + 1) * sizeof(*p));
    if (!p)
        return -ENOMEM;
    b->mem = p;
    b->mem[b->nmem++] = m;
    return 0;
}

static void mem_release(struct qcow2_state *s, struct bm_mem *m)
{
    struct qcow2_bitmaps *b = s->bitmaps;
    for (size_t i = 0; i < b->nmem; i++) {
        if (b->mem[i] == m) {
            memmove(b->mem + i, b->mem + i + 1, (b->nmem - i - 1) * sizeof(*b->mem));
            b->nmem--;
            break;
        }
    }
    mem_free(m);
}

/* Set bits [a, b] (inclusive) of one chunk buffer. */
static void bits_set(uint8_t *p, uint64_t a, uint64_t b)
{
    while (a <= b && (a & 7)) {
        p[a / 8] |= (uint8_t)(1u << (a & 7));
        a++;
    }
    if (a > b)
        return;
    if (b - a + 1 >= 8) {
        uint64_t n = (b - a + 1) / 8;
        memset(p + a / 8, 0xff, n);
        a += n * 8;
    }
    while (a <= b) {
        p[a / 8] |= (uint8_t)(1u << (a & 7));
        a++;
    }
}

/* Clear the bits of chunk c that lie past the bitmap's end. */
static void chunk_mask_tail(const struct qcow2_state *s, const struct bm_mem *m, uint64_t c,
                            uint8_t *p)
{
    uint64_t per = s->cluster_size * 8, nbits = bm_nbits(m->size, m->gbits);
    uint64_t first = c * per;
    if (first + per <= nbits)
        return;
    for (uint64_t i = nbits - first; i < per; i++) {
        if (!(i & 7) && per - i >= 8) {
            memset(p + i / 8, 0, (per - i) / 8);
            break;
        }
        p[i / 8] &= (uint8_t)~(1u << (i & 7));
    }
}

static int chunk_materialize(const struct qcow2_state *s, struct bm_mem *m, uint64_t c)
{
    uint8_t *p;
    if (m->chunk[c] && m->chunk[c] != BM_ONES)
        return 0;
    p = malloc(s->cluster_size);
    if (!p)
        return -ENOMEM;
    memset(p, m->chunk[c] == BM_ONES ? 0xff : 0, s->cluster_size);
    if (m->chunk[c] == BM_ONES)
        chunk_mask_tail(s, m, c, p);
    m->chunk[c] = p;
    return 0;
}

/* Mark guest bytes [off, off+len) dirty (clipped to the bitmap). */
static int mem_set_range(const struct qcow2_state *s, struct bm_mem *m, uint64_t off, uint64_t len)
{
    uint64_t per = s->cluster_size * 8, nbits = bm_nbits(m->size, m->gbits), first, last;
    if (!len || off >= m->size)
        return 0;
    if (len > m->size - off)
        len = m->size - off;
    first = off >> m->gbits;
    last = (off + len - 1) >> m->gbits;
    if (last >= nbits)
        last = nbits - 1;
    while (first <= last) {
        uint64_t c = first / per, cend = min_u64(last, c * per + per - 1);
        if (m->chunk[c] != BM_ONES) {
            int r = chunk_materialize(s, m, c);
            if (r < 0)
                return r;
            bits_set(m->chunk[c], first - c * per, cend - c * per);
        }
        first = cend + 1;
    }
    return 0;
}

static bool chunk_bit(const struct qcow2_state *s, const struct bm_mem *m, uint64_t bit)
{
    uint64_t per = s->cluster_size * 8, c = bit / per, i = bit % per;
    if (!m->chunk[c])
        return false;
    if (m->chunk[c] == BM_ONES)
        return true;
    return m->chunk[c][i / 8] >> (i & 7) & 1;
}

static void mem_clear(struct bm_mem *m)
{
    for (uint64_t i = 0; i < m->nchunks; i++) {
        if (m->chunk[i] != BM_ONES)
            free(m->chunk[i]);
        m->chunk[i] = NULL;
    }
}

static int mem_resize(const struct qcow2_state *s, struct bm_mem *m, uint64_t size)
{
    uint64_t n = div_round_up_u64(bm_bytes(size, m->gbits), s->cluster_size);
    if (n > m->nchunks) {
        uint8_t **p = realloc(m->chunk, n * sizeof(*p));
        if (!p)
            return -ENOMEM;
        memset(p + m->nchunks, 0, (n - m->nchunks) * sizeof(*p));
        m->chunk = p;
    } else {
        for (uint64_t i = n; i < m->nchunks; i++)
            if (m->chunk[i] != BM_ONES)
                free(m->chunk[i]);
    }
    m->nchunks = n;
    if (size < m->size && n) {
        int r = chunk_materialize(s, m, n - 1);
        m->size = size;
        if (r < 0)
            return r;
        chunk_mask_tail(s, m, n - 1, m->chunk[n - 1]);
    }
    m->size = size;
    return 0;
}

/* OR src into dst (granularities may differ: every dirty src range marks
 * the dst bits it touches). */
static int mem_merge(const struct qcow2_state *s, struct bm_mem *dst, const struct qcow2_state *ss,
                     const struct bm_mem *src)
{
    uint64_t nbits = bm_nbits(src->size, src->gbits), per = ss->cluster_size * 8;
    uint64_t bit = 0;
    while (bit < nbits) {
        uint64_t c = bit / per;
        if (!src->chunk[c]) {
            bit = (c + 1) * per;
            continue;
        }
        if (!chunk_bit(ss, src, bit)) {
            bit++;
            continue;
        }
        uint64_t end = bit + 1;
        while (end < nbits && chunk_bit(ss, src, end))
            end++;
        uint64_t a = bit << src->gbits, e = end << src->gbits;
        if (e > src->size || e < a)
            e = src->size;
        int r = mem_set_range(s, dst, a, e - a);
        if (r < 0)
            return r;
        bit = end;
    }
    return 0;
}

/* ------------------------------------------------------ directory on disk */

static int check_table_entry(uint64_t e, uint64_t cluster_size)
{
    uint64_t off = e & BME_TE_OFFSET;
    if (e & BME_TE_RESERVED)
        return -EINVAL;
    if (off && ((e & BME_TE_ALL_ONES) || (off & (cluster_size - 1))))
        return -EINVAL;
    return 0;
}

static int check_dir_entry(const struct qcow2_state *s, uint64_t len, uint64_t tbl_off,
                           uint32_t tbl_size, uint32_t flags, uint8_t type, uint8_t gbits,
                           size_t name_size)
{
    uint64_t phys;
    if (tbl_size == 0 || tbl_off == 0 || (tbl_off & (s->cluster_size - 1)) ||
        tbl_size > BME_MAX_TABLE_SIZE || gbits > BME_MAX_GRAN_BITS ||
        gbits < BME_MIN_GRAN_BITS || (flags & BME_RESERVED_FLAGS) ||
        name_size > BME_MAX_NAME_SIZE || type != BM_TYPE_DIRTY)
        return -EINVAL;
    phys = (uint64_t)tbl_size * s->cluster_size;
    if (phys > BME_MAX_PHYS_SIZE)
        return -EINVAL;
    if (!(flags & BME_FLAG_IN_USE) && len > ((phys * 8) << gbits))
        return -EINVAL;
    return 0;
}

/* Read and validate the directory the header points to (qemu's messages). */
static int dir_load(struct bds *bs, struct bm_dirent **out, uint32_t *nout, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t size = s->bitmap_dir_size, pos = 0;
    struct bm_dirent *d = NULL;
    uint32_t n = 0;
    uint8_t *buf = NULL;
    int r;

    if (size == 0)
        return err_set(err, EINVAL, "Requested bitmap directory size is zero");
    if (size > BME_MAX_DIR_SIZE)
        return err_set(err, EINVAL, "Requested bitmap directory size is too big");
    buf = malloc(size);
    d = calloc(s->nb_bitmaps ? s->nb_bitmaps : 1, sizeof(*d));
    if (!buf || !d) {
        r = err_set(err, ENOMEM, "Failed to allocate space for bitmap directory");
        goto fail;
    }
    r = blk_pread(bs->file, s->bitmap_dir_offset, size, buf);
    if (r < 0) {
        err_set_errno(err, -r, "Failed to read bitmap directory");
        goto fail;
    }
    while (pos < size) {
        const uint8_t *e = buf + pos;
        uint32_t extra;
        uint16_t ns;
        uint64_t esz;

        if (size - pos < BME_ENTRY_HDR)
            goto broken;
        /* n counts only entries that exist in d (dir_free walks them). */
        if (n >= s->nb_bitmaps) {
            r = err_set(err, EINVAL, "More bitmaps found than specified in header extension");
            goto fail;
        }
        n++;
        ns = get_be16(e + 18);
        extra = get_be32(e + 20);
        esz = align_up_u64((uint64_t)BME_ENTRY_HDR + ns + extra, 8);
        if (esz > size - pos)
            goto broken;
        if (extra) {
            r = err_set(err, EINVAL, "Bitmap extra data is not supported");
            goto fail;
        }
        struct bm_dirent *de = &d[n - 1];
        de->tbl_off = get_be64(e);
        de->tbl_size = get_be32(e + 8);
        de->flags = get_be32(e + 12);
        de->gbits = e[17];
        if (check_dir_entry(s, bs->total_size, de->tbl_off, de->tbl_size, de->flags, e[16],
                            de->gbits, ns) < 0) {
            r = err_set(err, EINVAL, "Bitmap '%.*s' doesn't satisfy the constraints", (int)ns,
                        (const char *)e + BME_ENTRY_HDR);
            goto fail;
        }
        de->name = strndup((const char *)e + BME_ENTRY_HDR, ns);
        if (!de->name) {
            r = err_set(err, ENOMEM, "Failed to allocate space for bitmap directory");
            goto fail;
        }
        pos += esz;
    }
    if (n != s->nb_bitmaps) {
        r = err_set(err, EINVAL, "Less bitmaps found than specified in header extension");
        goto fail;
    }
    free(buf);
    *out = d;
    *nout = n;
    return 0;

broken:
    r = err_set(err, EINVAL, "Broken bitmap directory");
fail:
    dir_free(d, n < s->nb_bitmaps ? n : s->nb_bitmaps);
    free(buf);
    return r;
}

/* Serialize a directory; -EINVAL when an entry breaks the constraints. */
static int dir_serialize(struct bds *bs, const struct bm_dirent *d, uint32_t n, uint8_t **out,
                         uint64_t *size_out)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t size = 0, pos = 0;
    uint8_t *buf;

    for (uint32_t i = 0; i < n; i++)
        size += entry_size(strlen(d[i].name));
    if (size == 0 || size > BME_MAX_DIR_SIZE)
        return -EINVAL;
    buf = calloc(1, size);
    if (!buf)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        size_t ns = strlen(d[i].name);
        uint8_t *e = buf + pos;
        if (check_dir_entry(s, bs->total_size, d[i].tbl_off, d[i].tbl_size, d[i].flags,
                            BM_TYPE_DIRTY, d[i].gbits, ns) < 0) {
            free(buf);
            return -EINVAL;
        }
        put_be64(e, d[i].tbl_off);
        put_be32(e + 8, d[i].tbl_size);
        put_be32(e + 12, d[i].flags);
        e[16] = BM_TYPE_DIRTY;
        e[17] = d[i].gbits;
        put_be16(e + 18, (uint16_t)ns);
        memcpy(e + BME_ENTRY_HDR, d[i].name, ns);
        pos += entry_size(ns);
    }
    *out = buf;
    *size_out = size;
    return 0;
}

static int header_sync(struct bds *bs)
{
    int r = qcow2_update_header(bs);
    return r < 0 ? r : blk_flush(bs->file);
}

/* Rewrite the directory where it is (only flags change), with the autoclear
 * bit dropped meanwhile so that a crash leaves the bitmaps inconsistent. */
static int dir_update_in_place(struct bds *bs)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_bitmaps *b = s->bitmaps;
    uint8_t *buf = NULL;
    uint64_t size;
    int r;

    if (!(s->autoclear & QCOW2_AUTOCLEAR_BITMAPS) || !b || !b->ndir || b->ndir != s->nb_bitmaps)
        return -EINVAL;
    s->autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
    r = header_sync(bs);
    if (r < 0)
        return r;
    r = dir_serialize(bs, b->dir, b->ndir, &buf, &size);
    if (r < 0)
        return r;
    if (size != s->bitmap_dir_size) {
        free(buf);
        return -EINVAL;
    }
    r = blk_pwrite(bs->file, s->bitmap_dir_offset, size, buf, 0);
    free(buf);
    if (r < 0)
        return r;
    r = header_sync(bs);
    if (r < 0)
        return r;
    s->autoclear |= QCOW2_AUTOCLEAR_BITMAPS;
    return header_sync(bs);
}

/* Write d as the new directory and switch the header to it; frees the old
 * directory afterwards. Takes ownership of d on success. */
static int dir_replace(struct bds *bs, struct bm_dirent *d, uint32_t n)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_bitmaps *b = s->bitmaps;
    uint64_t old_off = s->bitmap_dir_offset, old_size = s->bitmap_dir_size;
    uint64_t old_auto = s->autoclear, new_size = 0;
    uint32_t old_nb = s->nb_bitmaps;
    int64_t new_off = 0;
    uint8_t *buf = NULL;
    int r;

    if (n) {
        if (n > BME_MAX_BITMAPS)
            return -EINVAL;
        r = dir_serialize(bs, d, n, &buf, &new_size);
        if (r < 0)
            return r;
        new_off = qcow2_alloc_clusters(bs, new_size);
        if (new_off < 0) {
            free(buf);
            return (int)new_off;
        }
        r = blk_pwrite(bs->file, (uint64_t)new_off, new_size, buf, 0);
        free(buf);
        if (r == 0)
            r = qcow2_meta_flush(bs);
        if (r < 0)
            goto fail;
        s->autoclear |= QCOW2_AUTOCLEAR_BITMAPS;
    } else {
        s->autoclear &= ~QCOW2_AUTOCLEAR_BITMAPS;
    }
    s->bitmap_dir_offset = (uint64_t)new_off;
    s->bitmap_dir_size = new_size;
    s->nb_bitmaps = n;
    r = header_sync(bs);
    if (r < 0)
        goto fail;
    if (old_size)
        qcow2_free_clusters(bs, old_off, old_size, QCOW2_DISCARD_OTHER);
    dir_free(b->dir, b->ndir);
    b->dir = d;
    b->ndir = n;
    return 0;

fail:
    if (new_off > 0)
        qcow2_free_clusters(bs, (uint64_t)new_off, new_size, QCOW2_DISCARD_OTHER);
    s->bitmap_dir_offset = old_off;
    s->bitmap_dir_size = old_size;
    s->nb_bitmaps = old_nb;
    s->autoclear = old_auto;
    return r;
}

static int dir_copy(const struct bm_dirent *src, uint32_t n, struct bm_dirent **out)
{
    struct bm_dirent *d = calloc(n + 1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        d[i] = src[i];
        d[i].name = strdup(src[i].name);
        if (!d[i].name) {
            dir_free(d, i);
            return -ENOMEM;
        }
    }
    *out = d;
    return 0;
}

/* ------------------------------------------------------------ tables */

static int table_load(struct bds *bs, uint64_t off, uint32_t size, uint64_t **out)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t *t;
    uint8_t *raw;
    int r;

    if (size == 0 || size > BME_MAX_TABLE_SIZE)
        return -EINVAL;
    t = calloc(size, sizeof(*t));
    raw = malloc((size_t)size * 8);
    if (!t || !raw) {
        free(t);
        free(raw);
        return -ENOMEM;
    }
    r = blk_pread(bs->file, off, (uint64_t)size * 8, raw);
    for (uint32_t i = 0; r == 0 && i < size; i++) {
        t[i] = get_be64(raw + 8 * (size_t)i);
        r = check_table_entry(t[i], s->cluster_size);
    }
    free(raw);
    if (r < 0) {
        free(t);
        return r;
    }
    *out = t;
    return 0;
}

/* Free a table and the data clusters it points to. */
static void table_free_clusters(struct bds *bs, uint64_t off, uint32_t size)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t *t;
    if (table_load(bs, off, size, &t) < 0)
        return;
    for (uint32_t i = 0; i < size; i++)
        if (t[i] & BME_TE_OFFSET)
            qcow2_free_clusters(bs, t[i] & BME_TE_OFFSET, s->cluster_size, QCOW2_DISCARD_ALWAYS);
    qcow2_free_clusters(bs, off, (uint64_t)size * 8, QCOW2_DISCARD_OTHER);
    free(t);
}

static int load_data(struct bds *bs, struct bm_mem *m, const uint64_t *t, uint32_t tsize)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_bitmaps *b = s->bitmaps;
    int64_t flen = blk_getlength(bs->file);
    uint64_t cap = (flen > 0 ? (uint64_t)flen : 0) + BM_MEM_SLACK;

    if (m->nchunks != tsize || m->nchunks > BME_MAX_TABLE_SIZE)
        return -EINVAL;
    for (uint32_t i = 0; i < tsize; i++) {
        uint64_t off = t[i] & BME_TE_OFFSET;
        if (!off) {
            if (t[i] & BME_TE_ALL_ONES)
                m->chunk[i] = BM_ONES;
            continue;
        }
        if (b->loaded + s->cluster_size > cap)
            return -ENOMEM;
        uint8_t *p = malloc(s->cluster_size);
        if (!p)
            return -ENOMEM;
        int r = blk_pread(bs->file, off, s->cluster_size, p);
        if (r < 0) {
            free(p);
            return r;
        }
        chunk_mask_tail(s, m, i, p);
        if (buffer_is_zero(p, s->cluster_size)) {
            free(p);
            continue;
        }
        b->loaded += s->cluster_size;
        m->chunk[i] = p;
    }
    return 0;
}

/* Write m's data clusters and table; fills *tbl_off / *tbl_size. */
static int store_bitmap(struct bds *bs, struct bm_mem *m, uint64_t *tbl_off, uint32_t *tbl_size)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t n = m->nchunks, *t = NULL;
    uint8_t *buf = NULL, *raw = NULL;
    int64_t off;
    int r = 0;

    if (n > BME_MAX_TABLE_SIZE || n * s->cluster_size > BME_MAX_PHYS_SIZE)
        return -EINVAL;
    t = calloc(n ? n : 1, sizeof(*t));
    buf = malloc(s->cluster_size);
    if (!t || !buf) {
        r = -ENOMEM;
        goto fail;
    }
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *src = m->chunk[i];
        if (!src || (src != BM_ONES && buffer_is_zero(src, s->cluster_size)))
            continue;
        if (src == BM_ONES) {
            memset(buf, 0xff, s->cluster_size);
            chunk_mask_tail(s, m, i, buf);
            src = buf;
        }
        off = qcow2_alloc_clusters(bs, s->cluster_size);
        if (off < 0) {
            r = (int)off;
            goto fail;
        }
        t[i] = (uint64_t)off;
        r = blk_pwrite(bs->file, (uint64_t)off, s->cluster_size, src, 0);
        if (r < 0)
            goto fail;
    }
    raw = malloc(n * 8);
    if (!raw) {
        r = -ENOMEM;
        goto fail;
    }
    for (uint64_t i = 0; i < n; i++)
        put_be64(raw + 8 * i, t[i]);
    off = qcow2_alloc_clusters(bs, n * 8);
    if (off < 0) {
        r = (int)off;
        goto fail;
    }
    r = blk_pwrite(bs->file, (uint64_t)off, n * 8, raw, 0);
    if (r < 0) {
        qcow2_free_clusters(bs, (uint64_t)off, n * 8, QCOW2_DISCARD_OTHER);
        goto fail;
    }
    *tbl_off = (uint64_t)off;
    *tbl_size = (uint32_t)n;
    free(raw);
    free(buf);
    free(t);
    return 0;

fail:
    for (uint64_t i = 0; t && i < n; i++)
        if (t[i])
            qcow2_free_clusters(bs, t[i], s->cluster_size, QCOW2_DISCARD_ALWAYS);
    free(raw);
    free(buf);
    free(t);
    return r;
}

/* ------------------------------------------------------------ open / close */

int qcow2_bitmaps_load(struct bds *bs, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_bitmaps *b;
    bool needs_update = false;
    int r;

    if (!s->nb_bitmaps)
        return 0;
    b = state_get(s);
    if (!b)
        return -ENOMEM;
    r = dir_load(bs, &b->dir, &b->ndir, err);
    if (r < 0)
        return r;
    for (uint32_t i = 0; i < b->ndir; i++) {
        struct bm_dirent *de = &b->dir[i];
        struct bm_mem *m = mem_new(s, de->name, de->gbits, bs->total_size);
        uint64_t *t = NULL;

        if (!m || mem_append(s, m) < 0) {
            mem_free(m);
            return err_set(err, ENOMEM, "Could not allocate bitmap '%s'", de->name);
        }
        m->enabled = de->flags & BME_FLAG_AUTO;
        m->readonly = !s->writable;
        if (de->flags & BME_FLAG_IN_USE) {
            m->inconsistent = true;
            continue;
        }
        r = table_load(bs, de->tbl_off, de->tbl_size, &t);
        if (r < 0)
            return err_set_errno(err, -r, "Could not read bitmap_table table from image for bitmap '%s'",
                                 de->name);
        r = load_data(bs, m, t, de->tbl_size);
        free(t);
        if (r < 0)
            return err_set_errno(err, -r, "Could not read bitmap '%s' from image", de->name);
        /* the mirror follows the disk: only a writable image gets the flag */
        if (s->writable) {
            de->flags |= BME_FLAG_IN_USE;
            needs_update = true;
        }
    }
    if (needs_update && s->writable) {
        r = dir_update_in_place(bs);
        if (r < 0)
            return err_set_errno(err, -r, "Can't update bitmap directory");
    }
    return 0;
}

static bool constraints_ok(struct bds *bs, const char *name, unsigned gbits, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t bytes;

    if (gbits > BME_MAX_GRAN_BITS) {
        err_set(err, EINVAL, "Granularity exceeds maximum (%llu bytes)", 1ULL << BME_MAX_GRAN_BITS);
        return false;
    }
    if (gbits < BME_MIN_GRAN_BITS) {
        err_set(err, EINVAL, "Granularity is under minimum (%llu bytes)", 1ULL << BME_MIN_GRAN_BITS);
        return false;
    }
    bytes = bm_bytes(bs->total_size, gbits);
    if (bytes > BME_MAX_PHYS_SIZE || bytes > BME_MAX_TABLE_SIZE * s->cluster_size) {
        err_set(err, EINVAL, "Too much space will be occupied by the bitmap. Use larger granularity");
        return false;
    }
    if (strlen(name) > BME_MAX_NAME_SIZE) {
        err_set(err, EINVAL, "Name length exceeds maximum (%u characters)", BME_MAX_NAME_SIZE);
        return false;
    }
    return true;
}

/* Store every consistent, writable bitmap (qemu's
 * qcow2_store_persistent_dirty_bitmaps at close). */
int qcow2_bitmaps_store(struct bds *bs, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_bitmaps *b = s->bitmaps;
    struct bm_dirent *d = NULL;
    struct bm_mem **owner = NULL;
    struct { uint64_t off; uint32_t size; } *drop = NULL;
    uint32_t n, ndrop = 0;
    uint64_t dsize = s->bitmap_dir_size;
    bool need_write = false;
    int r;

    if (!b || !s->writable)
        return 0;
    n = b->ndir;
    r = dir_copy(b->dir, n, &d);
    if (r < 0)
        return r;
    owner = calloc(n + b->nmem + 1, sizeof(*owner));
    drop = calloc(b->nmem + 1, sizeof(*drop));
    if (!owner || !drop) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t k = b->nmem; k-- > 0;) {
        struct bm_mem *m = b->mem[k];
        int i;
        if (m->inconsistent || m->readonly)
            continue;
        need_write = true;
        if (!constraints_ok(bs, m->name, m->gbits, err)) {
            err_prefix(err, "Bitmap '%s' doesn't satisfy the constraints: ", m->name);
            r = -EINVAL;
            goto out;
        }
        i = dir_find(d, n, m->name);
        if (i < 0) {
            if (n + 1 > BME_MAX_BITMAPS) {
                r = err_set(err, EINVAL, "Too many persistent bitmaps");
                goto out;
            }
            dsize += entry_size(strlen(m->name));
            if (dsize > BME_MAX_DIR_SIZE) {
                r = err_set(err, EINVAL, "Bitmap directory is too large");
                goto out;
            }
            struct bm_dirent *nd = realloc(d, (n + 1) * sizeof(*d));
            if (!nd) {
                r = -ENOMEM;
                goto out;
            }
            d = nd;
            memset(&d[n], 0, sizeof(d[n]));
            d[n].name = strdup(m->name);
            if (!d[n].name) {
                r = -ENOMEM;
                goto out;
            }
            i = (int)n++;
        } else {
            if (!(d[i].flags & BME_FLAG_IN_USE)) {
                r = err_set(err, EINVAL, "Bitmap '%s' already exists in the image", m->name);
                goto out;
            }
            drop[ndrop].off = d[i].tbl_off;
            drop[ndrop].size = d[i].tbl_size;
            ndrop++;
            d[i].tbl_off = 0;
            d[i].tbl_size = 0;
        }
        d[i].flags = m->enabled ? BME_FLAG_AUTO : 0;
        d[i].gbits = m->gbits;
        owner[i] = m;
    }
    if (!need_write) {
        r = 0;
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!owner[i])
            continue;
        r = store_bitmap(bs, owner[i], &d[i].tbl_off, &d[i].tbl_size);
        if (r < 0) {
            err_set_errno(err, -r, "Failed to write bitmap '%s' to file", owner[i]->name);
            goto undo;
        }
    }
    r = dir_replace(bs, d, n);
    if (r < 0) {
        err_set_errno(err, -r, "Failed to update bitmap extension");
        goto undo;
    }
    d = NULL;
    for (uint32_t k = 0; k < ndrop; k++)
        table_free_clusters(bs, drop[k].off, drop[k].size);
    r = 0;
    goto out;

undo:
    for (uint32_t i = 0; i < n; i++)
        if (owner[i] && d[i].tbl_off)
            table_free_clusters(bs, d[i].tbl_off, d[i].tbl_size);
out:
    dir_free(d, n);
    free(owner);
    free(drop);
    return r;
}

int qcow2_bitmaps_close(struct bds *bs)
{
    struct err e;
    err_init(&e);
    return qcow2_bitmaps_store(bs, &e);
}

/* ------------------------------------------------------------ guest writes */

void qcow2_bitmap_note_write(struct bds *bs, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_bitmaps *b = s->bitmaps;
    for (size_t i = 0; b && i < b->nmem; i++) {
        struct bm_mem *m = b->mem[i];
        if (m->enabled && !m->inconsistent && !m->readonly)
            (void)mem_set_range(s, m, off, len);
    }
}

static int check_usable(const struct bm_mem *m, bool allow_ro, struct err *err)
{
    if (!allow_ro && m->readonly)
        return err_set(err, EPERM, "Bitmap '%s' is readonly and cannot be modified", m->name);
    if (m->inconsistent)
        return err_set(err, EINVAL, "Bitmap '%s' is inconsistent and cannot be used\n"
                       "Try block-dirty-bitmap-remove to delete this bitmap from disk", m->name);
    return 0;
}

int qcow2_bitmaps_truncate_check(struct bds *bs, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_bitmaps *b = s->bitmaps;
    if (!s->nb_bitmaps || !b)
        return 0;
    for (uint32_t i = 0; i < b->ndir; i++) {
        struct bm_mem *m = mem_find(s, b->dir[i].name);
        if (!m)
            return err_set(err, ENOTSUP, "Cannot resize qcow2 with persistent bitmaps that were not loaded into memory");
        if (check_usable(m, false, err) < 0)
            return -ENOTSUP;
    }
    return 0;
}

void qcow2_bitmaps_resize(struct bds *bs, uint64_t size)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_bitmaps *b = s->bitmaps;
    for (size_t i = 0; b && i < b->nmem; i++)
        (void)mem_resize(s, b->mem[i], size);
}

/* ------------------------------------------------------------ info, check, measure */

void qcow2_bitmaps_info(struct bds *bs, json_t *o)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_bitmaps *b = s->bitmaps;
    json_t *a;

    if (!s->nb_bitmaps || !b || !b->ndir)
        return;
    a = json_array();
    for (uint32_t i = 0; i < b->ndir; i++) {
        json_t *e = json_object(), *f = json_array();
        json_object_set_new(e, "name", json_string(b->dir[i].name));
        json_object_set_new(e, "granularity", json_integer((json_int_t)(1ULL << b->dir[i].gbits)));
        if (b->dir[i].flags & BME_FLAG_IN_USE)
            json_array_append_new(f, json_string("in-use"));
        if (b->dir[i].flags & BME_FLAG_AUTO)
            json_array_append_new(f, json_string("auto"));
        json_object_set_new(e, "flags", f);
        json_array_append_new(a, e);
    }
    json_object_set_new(o, "bitmaps", a);
}

int qcow2_check_bitmaps_refcounts(struct bds *bs, struct blk_check_result *res,
                                  qcow2_check_inc_fn inc, void *opaque)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct bm_dirent *d = NULL;
    uint32_t n = 0;
    int r;

    if (!s->nb_bitmaps)
        return 0;
    r = inc(bs, res, opaque, s->bitmap_dir_offset, s->bitmap_dir_size);
    if (r < 0)
        return r;
    if (dir_load(bs, &d, &n, NULL) < 0) {
        res->corruptions++;
        return -EINVAL;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint64_t *t = NULL;
        r = inc(bs, res, opaque, d[i].tbl_off, (uint64_t)d[i].tbl_size * 8);
        if (r < 0)
            break;
        r = table_load(bs, d[i].tbl_off, d[i].tbl_size, &t);
        if (r < 0) {
            res->corruptions++;
            break;
        }
        for (uint32_t k = 0; k < d[i].tbl_size; k++) {
            uint64_t off = t[k] & BME_TE_OFFSET;
            if (!off)
                continue;
            r = inc(bs, res, opaque, off, s->cluster_size);
            if (r < 0)
                break;
        }
        free(t);
        if (r < 0)
            break;
    }
    dir_free(d, n);
    return r;
}

bool qcow2_bitmaps_supported(struct bds *bs)
{
    return bs->drv == &qcow2_driver && qcow2_st(bs)->version >= 3;
}

uint64_t qcow2_bitmaps_size(struct bds *in, uint64_t cluster_size)
{
    struct qcow2_state *s;
    uint64_t total = 0, dir = 0;

    if (!qcow2_bitmaps_supported(in) || !(s = qcow2_st(in))->bitmaps)
        return 0;
    for (size_t i = 0; i < s->bitmaps->nmem; i++) {
        const struct bm_mem *m = s->bitmaps->mem[i];
        uint64_t cl = div_round_up_u64(bm_bytes(m->size, m->gbits), cluster_size);
        total += cl * cluster_size + align_up_u64(cl * 8, cluster_size);
        dir += entry_size(strlen(m->name));
    }
    return total + align_up_u64(dir, cluster_size);
}

/* ------------------------------------------------------------ bitmap ops */

static struct bm_mem *lookup(struct bds *bs, const char *name, struct err *err)
{
    struct bm_mem *m = bs->drv == &qcow2_driver ? mem_find(qcow2_st(bs), name) : NULL;
    if (!m)
        err_set(err, ENOENT, "Dirty bitmap '%s' not found", name);
    return m;
}

static bool bm_supported(struct bds *bs)
{
    return qcow2_bitmaps_supported(bs);
}

static int bm_add(struct bds *bs, const char *name, uint32_t granularity, bool disabled,
                  struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_bitmaps *b = s->bitmaps;
    unsigned gbits = 0;
    uint64_t dsize = 0;
    size_t count = 0;
    char nn[16];
    struct bm_mem *m;

    if (!name || !*name)
        return err_set(err, EINVAL, "Bitmap name cannot be empty");
    if (!granularity)
        granularity = (uint32_t)min_u64(65536, max_u64(4096, s->cluster_size));
    while (!((granularity >> gbits) & 1))
        gbits++;
    if (mem_find(s, name))
        return err_set(err, EEXIST, "Bitmap already exists: %s", name);
    if (s->version < 3) {
        err_set(err, ENOTSUP, "Cannot store dirty bitmaps in qcow2 v2 files");
        goto fail;
    }
    if (!constraints_ok(bs, name, gbits, err))
        goto fail;
    for (size_t i = 0; b && i < b->nmem; i++) {
        count++;
        dsize += entry_size(strlen(b->mem[i]->name));
    }
    count++;
    dsize += entry_size(strlen(name));
    if (count > BME_MAX_BITMAPS) {
        err_set(err, EINVAL, "Maximum number of persistent bitmaps is already reached");
        goto fail;
    }
    if (dsize > BME_MAX_DIR_SIZE) {
        err_set(err, EINVAL, "Not enough space in the bitmap directory");
        goto fail;
    }
    m = mem_new(s, name, gbits, bs->total_size);
    if (!m || mem_append(s, m) < 0) {
        mem_free(m);
        return err_set(err, ENOMEM, "Could not allocate bitmap '%s'", name);
    }
    m->enabled = !disabled;
    return 0;

fail:
    err_prefix(err, "Can't make bitmap '%s' persistent in '%s': ", name, node_name(nn));
    return -EINVAL;
}

static int bm_remove(struct bds *bs, const char *name, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_bitmaps *b = s->bitmaps;
    struct bm_mem *m = lookup(bs, name, err);
    int r, i;

    if (!m)
        return -ENOENT;
    if (m->readonly)
        return err_set(err, EPERM, "Bitmap '%s' is readonly and cannot be modified", name);
    if (s->nb_bitmaps && (i = dir_find(b->dir, b->ndir, name)) >= 0) {
        struct bm_dirent *d, gone = b->dir[i];
        r = dir_copy(b->dir, b->ndir, &d);
        if (r < 0)
            return err_set_errno(err, -r, "Failed to update bitmap extension");
        free(d[i].name);
        memmove(d + i, d + i + 1, (b->ndir - (uint32_t)i - 1) * sizeof(*d));
        r = dir_replace(bs, d, b->ndir - 1);
        if (r < 0) {
            dir_free(d, b->ndir - 1);
            return err_set_errno(err, -r, "Failed to update bitmap extension");
        }
        table_free_clusters(bs, gone.tbl_off, gone.tbl_size);
    }
    mem_release(s, m);
    return 0;
}

static int bm_clear(struct bds *bs, const char *name, struct err *err)
{
    struct bm_mem *m = lookup(bs, name, err);
    if (!m)
        return -ENOENT;
    if (check_usable(m, false, err) < 0)
        return -EINVAL;
    mem_clear(m);
    return 0;
}

static int bm_enable(struct bds *bs, const char *name, bool enable, struct err *err)
{
    struct bm_mem *m = lookup(bs, name, err);
    if (!m)
        return -ENOENT;
    if (check_usable(m, true, err) < 0)
        return -EINVAL;
    m->enabled = enable;
    return 0;
}

static int bm_merge(struct bds *bs, const char *dst, struct bds *src_bs, const char *src,
                    struct err *err)
{
    struct bm_mem *d = lookup(bs, dst, err), *sm;
    int r;

    if (!d)
        return -ENOENT;
    sm = lookup(src_bs, src, err);
    if (!sm)
        return -ENOENT;
    if (check_usable(d, false, err) < 0 || check_usable(sm, true, err) < 0)
        return -EINVAL;
    if (d->size != sm->size)
        return err_set(err, EINVAL, "Bitmaps are of different sizes (destination size is %" PRId64
                       ", source size is %" PRId64 ") and can't be merged",
                       (int64_t)d->size, (int64_t)sm->size);
    r = mem_merge(qcow2_st(bs), d, qcow2_st(src_bs), sm);
    if (r < 0)
        return err_set_errno(err, -r, "Could not merge bitmaps");
    return 0;
}

static int bm_list(struct bds *bs, struct blk_bitmap_info **list, struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    struct qcow2_bitmaps *b = s->bitmaps;
    size_t n = b ? b->nmem : 0;
    struct blk_bitmap_info *l = calloc(n ? n : 1, sizeof(*l));

    if (!l)
        return err_set(err, ENOMEM, "Could not list bitmaps");
    /* qemu's order: newest first */
    for (size_t k = 0; k < n; k++) {
        const struct bm_mem *m = b->mem[n - 1 - k];
        snprintf(l[k].name, sizeof(l[k].name), "%s", m->name);
        l[k].granularity = (uint32_t)(1ULL << m->gbits);
        l[k].enabled = m->enabled;
        l[k].inconsistent = m->inconsistent;
    }
    *list = l;
    return (int)n;
}

const struct blk_bitmap_ops qcow2_bitmap_ops = {
    .supported = bm_supported,
    .list = bm_list,
    .add = bm_add,
    .remove = bm_remove,
    .clear = bm_clear,
    .enable = bm_enable,
    .merge = bm_merge,
};
