/* qcow2 runtime options (the node's options, from --image-opts or a json:
 * filename): lazy-refcounts, pass-discard-*, overlap-check[.*] and the
 * metadata cache sizes, validated as qemu 7.2 validates them when it opens
 * the image (its qcow2_runtime_opts list, then the cache size rules), with
 * its messages.
 *
 * qimg sizes its caches itself and its overlap checks are fixed, so those
 * options are only validated; lazy-refcounts and pass-discard-* take
 * effect. */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "formats/qcow2/qcow2.h"

#define MIN_CLUSTER_BITS 9
#define MIN_L2_CACHE_ENTRIES 2      /* qemu's minimums, in entries */
#define MIN_REFCOUNT_CACHE_ENTRIES 4
#define DEFAULT_L2_CACHE_MAX ((uint64_t)32 << 20)

enum opt_kind { K_BOOL, K_STRING, K_SIZE, K_NUMBER };

/* qemu's qcow2_runtime_opts, in its order */
static const struct {
    const char *name;
    enum opt_kind kind;
} runtime_opts[] = {
    { "lazy-refcounts", K_BOOL },
    { "pass-discard-request", K_BOOL },
    { "pass-discard-snapshot", K_BOOL },
    { "pass-discard-other", K_BOOL },
    { "overlap-check", K_STRING },
    { "overlap-check.template", K_STRING },
    { "overlap-check.main-header", K_BOOL },
    { "overlap-check.active-l1", K_BOOL },
    { "overlap-check.active-l2", K_BOOL },
    { "overlap-check.refcount-table", K_BOOL },
    { "overlap-check.refcount-block", K_BOOL },
    { "overlap-check.snapshot-table", K_BOOL },
    { "overlap-check.inactive-l1", K_BOOL },
    { "overlap-check.inactive-l2", K_BOOL },
    { "overlap-check.bitmap-directory", K_BOOL },
    { "cache-size", K_SIZE },
    { "l2-cache-size", K_SIZE },
    { "l2-cache-entry-size", K_SIZE },
    { "refcount-cache-size", K_SIZE },
    { "cache-clean-interval", K_NUMBER },
};

/* Every value parses as its type (qemu_opts_absorb_qdict). */
static int check_types(const struct kvopts *opts, struct err *err)
{
    for (size_t i = 0; i < sizeof(runtime_opts) / sizeof(runtime_opts[0]); i++) {
        const char *v = kvopts_get(opts, runtime_opts[i].name);
        uint64_t n;
        bool b;
        int r = 0;

        if (!v)
            continue;
        switch (runtime_opts[i].kind) {
        case K_BOOL:
            r = kvopts_parse_bool(runtime_opts[i].name, v, &b, err);
            break;
        case K_SIZE:
            r = kvopts_parse_size(runtime_opts[i].name, v, &n, err);
            break;
        case K_NUMBER:
            r = kvopts_parse_number(runtime_opts[i].name, v, &n, err);
            break;
        case K_STRING:
            break;
        }
        if (r < 0)
            return r;
    }
    return 0;
}

/* qemu's read_cache_sizes(): the combinations it refuses, and the L2 entry
 * size it would use. Only the errors matter here. */
static int check_cache_sizes(const struct qcow2_state *s, uint64_t virtual_size,
                             const struct kvopts *opts, struct err *err)
{
    bool combined_set = kvopts_has(opts, "cache-size");
    bool l2_set = kvopts_has(opts, "l2-cache-size");
    bool rc_set = kvopts_has(opts, "refcount-cache-size");
    bool entry_set = kvopts_has(opts, "l2-cache-entry-size");
    uint64_t combined, l2_max, rc, entry, l2, max_l2_cache, entries;
    uint64_t min_rc = (uint64_t)MIN_REFCOUNT_CACHE_ENTRIES * s->cluster_size;
    int r;

    if ((r = kvopts_get_size(opts, "cache-size", 0, &combined, err)) < 0 ||
        (r = kvopts_get_size(opts, "l2-cache-size", DEFAULT_L2_CACHE_MAX, &l2_max, err)) < 0 ||
        (r = kvopts_get_size(opts, "refcount-cache-size", 0, &rc, err)) < 0 ||
        (r = kvopts_get_size(opts, "l2-cache-entry-size", s->cluster_size, &entry, err)) < 0)
        return r;

    /* the L2 tables that map the whole disk, in whole clusters */
    entries = virtual_size / s->cluster_size + (virtual_size % s->cluster_size != 0);
    max_l2_cache = entries * s->l2_entry_size;      /* entries < 2^55, no overflow */
    max_l2_cache = (max_l2_cache + s->cluster_size - 1) / s->cluster_size * s->cluster_size;
    l2 = min_u64(max_l2_cache, l2_max);

    if (combined_set) {
        if (l2_set && rc_set)
            return err_set(err, EINVAL, "cache-size, l2-cache-size and refcount-cache-size "
                           "may not be set at the same time");
        if (l2_set && l2_max > combined)
            return err_set(err, EINVAL, "l2-cache-size may not exceed cache-size");
        if (rc > combined)
            return err_set(err, EINVAL, "refcount-cache-size may not exceed cache-size");
        if (l2_set) {
            rc = combined - l2;
        } else if (rc_set) {
            l2 = combined - rc;
        } else if (combined >= max_l2_cache && combined - max_l2_cache >= min_rc) {
            l2 = max_l2_cache;
            rc = combined - l2;
        } else {
            rc = min_u64(combined, min_rc);
            l2 = combined - rc;
        }
    }
    if (l2 < max_l2_cache && !entry_set)
        entry = min_u64(s->cluster_size, 4096);
    if (entry < (1u << MIN_CLUSTER_BITS) || entry > s->cluster_size || (entry & (entry - 1)))
        return err_set(err, EINVAL, "L2 cache entry size must be a power of two between %d "
                       "and the cluster size (%llu)", 1 << MIN_CLUSTER_BITS,
                       (unsigned long long)s->cluster_size);
    if (max_u64(l2 / entry, MIN_L2_CACHE_ENTRIES) > INT_MAX)
        return err_set(err, EINVAL, "L2 cache size too big");
    if (max_u64(rc / s->cluster_size, MIN_REFCOUNT_CACHE_ENTRIES) > INT_MAX)
        return err_set(err, EINVAL, "Refcount cache size too big");
    return 0;
}

static int check_overlap(const struct kvopts *opts, struct err *err)
{
    static const char *const templates[] = { "none", "constant", "cached", "all" };
    const char *oc = kvopts_get(opts, "overlap-check");
    const char *tmpl = kvopts_get(opts, "overlap-check.template");

    if (oc && tmpl && strcmp(oc, tmpl))
        return err_set(err, EINVAL, "Conflicting values for qcow2 options 'overlap-check' "
                       "('%s') and 'overlap-check.template' ('%s')", oc, tmpl);
    if (!oc)
        oc = tmpl;
    if (!oc)
        return 0;
    for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]); i++)
        if (!strcmp(oc, templates[i]))
            return 0;
    return err_set(err, EINVAL, "Unsupported value '%s' for qcow2 option 'overlap-check'. "
                   "Allowed are any of the following: none, constant, cached, all", oc);
}

int qcow2_runtime_options(struct bds *bs, const struct kvopts *opts, uint64_t virtual_size,
                          struct err *err)
{
    struct qcow2_state *s = qcow2_st(bs);
    uint64_t interval;
    bool lazy, pass;
    int r;

    if (!opts)
        return 0;
    if ((r = check_types(opts, err)) < 0 ||
        (r = check_cache_sizes(s, virtual_size, opts, err)) < 0 ||
        (r = kvopts_get_number(opts, "cache-clean-interval", 0, &interval, err)) < 0)
        return r;
    if (interval > UINT_MAX)
        return err_set(err, EINVAL, "Cache clean interval too big");

    if ((r = kvopts_get_bool(opts, "lazy-refcounts",
                             s->compat & QCOW2_COMPAT_LAZY_REFCOUNTS, &lazy, err)) < 0)
        return r;
    if (lazy && s->version < 3)
        return err_set(err, EINVAL, "Lazy refcounts require a qcow2 image with at least "
                       "qemu 1.1 compatibility level");
    s->use_lazy_refcounts = lazy;

    if ((r = check_overlap(opts, err)) < 0)
        return r;

    /* "request" keeps its default when absent (see qcow2_open) */
    if ((r = kvopts_get_bool(opts, "pass-discard-request",
                             s->discard_pass[QCOW2_DISCARD_REQUEST], &pass, err)) < 0)
        return r;
    s->discard_pass[QCOW2_DISCARD_REQUEST] = pass;
    if ((r = kvopts_get_bool(opts, "pass-discard-snapshot", true, &pass, err)) < 0)
        return r;
    s->discard_pass[QCOW2_DISCARD_SNAPSHOT] = pass;
    if ((r = kvopts_get_bool(opts, "pass-discard-other", false, &pass, err)) < 0)
        return r;
    s->discard_pass[QCOW2_DISCARD_OTHER] = pass;
    return 0;
}
