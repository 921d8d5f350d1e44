/* The explicit, ordered table of drivers. A new format is one row here
 * (probe order matters only for ties: the highest score wins, the earlier
 * row wins a tie). */
#include <string.h>

#include "config.h"

#include "block/driver.h"
#include "block/internal.h"
#include "block/registry.h"

extern const struct blk_driver file_driver;
extern const struct blk_driver mem_driver;
extern const struct blk_driver raw_driver;
extern const struct blk_driver qed_driver;
extern const struct blk_driver qcow_driver;
extern const struct blk_driver parallels_driver;
extern const struct blk_driver qcow2_driver;
extern const struct blk_driver vhdx_driver;
extern const struct blk_driver vmdk_driver;
extern const struct blk_driver vdi_driver;
extern const struct blk_driver vpc_driver;
extern const struct blk_driver dmg_driver;
extern const struct blk_driver bochs_driver;
extern const struct blk_driver cloop_driver;
extern const struct blk_driver luks_driver;
#ifdef HAVE_LIBNBD
extern const struct blk_driver nbd_driver;
#endif
#ifdef HAVE_LIBCURL
extern const struct blk_driver http_driver;
extern const struct blk_driver https_driver;
#endif

/* What a node becomes when a reopen failed: every operation is ENOTSUP. */
const struct blk_driver blk_dead_driver = {
    .name = "dead",
    .kind = BLK_KIND_FORMAT,
};

static const struct blk_driver *const drivers[] = {
    &mem_driver,        /* in-memory, for tests and fuzzers (protocols/mem.h); first, so
                           its exclusive mode claims every name */
    &file_driver,
    &raw_driver,
    &qed_driver,
    &qcow_driver,
    &parallels_driver,
    &qcow2_driver,
    &vhdx_driver,
    &vmdk_driver,
    &vdi_driver,
    &vpc_driver,
    &dmg_driver,        /* before cloop: both score 2, qemu tries dmg first */
    &bochs_driver,
    &cloop_driver,
    &luks_driver,
#ifdef HAVE_LIBNBD
    &nbd_driver,
#endif
#ifdef HAVE_LIBCURL
    &http_driver,
    &https_driver,
#endif
};

const struct blk_driver *const *blk_drivers(size_t *n)
{
    *n = sizeof(drivers) / sizeof(drivers[0]);
    return drivers;
}

const struct blk_driver *blk_find_format(const char *name)
{
    size_t n;
    const struct blk_driver *const *d = blk_drivers(&n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(d[i]->name, name))
            return d[i];
    return NULL;
}

const struct blk_driver *blk_find_protocol_for(const char *filename)
{
    size_t n;
    const struct blk_driver *const *d = blk_drivers(&n);
    for (size_t i = 0; i < n; i++)
        if (d[i]->kind == BLK_KIND_PROTOCOL && d[i]->claims && d[i]->claims(filename))
            return d[i];
    return &file_driver;
}

const struct blk_driver *blk_probe_format(const uint8_t *head, size_t len, const char *filename)
{
    size_t n;
    const struct blk_driver *const *d = blk_drivers(&n);
    const struct blk_driver *best = NULL;
    int best_score = 0;

    for (size_t i = 0; i < n; i++) {
        if (d[i]->kind != BLK_KIND_FORMAT || !d[i]->probe)
            continue;
        int score = d[i]->probe(head, len, filename);
        if (score > best_score) {
            best_score = score;
            best = d[i];
        }
    }
    return best;
}

const char *blk_driver_name(const struct blk_driver *drv) { return drv->name; }
const struct opt_desc *blk_driver_create_opts(const struct blk_driver *drv) { return drv->create_opts; }
const struct opt_desc *blk_driver_amend_opts(const struct blk_driver *drv) { return drv->amend_opts; }
bool blk_driver_can_create(const struct blk_driver *drv) { return drv->create != NULL; }
bool blk_driver_supports_backing(const struct blk_driver *drv) { return drv->supports_backing; }
bool blk_driver_is_format(const struct blk_driver *drv) { return drv->kind == BLK_KIND_FORMAT; }
bool blk_driver_can_compress(const struct blk_driver *drv) { return drv->supports_compressed_writes; }
