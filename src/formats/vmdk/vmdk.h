/* VMDK driver internals shared by vmdk.c (descriptor, open, I/O dispatch),
 * vmdk-sparse.c (hosted sparse extents), vmdk-stream.c (compressed grains)
 * and vmdk-create.c. Spec: VMware "Virtual Disk Format 1.1".
 *
 * All sizes kept in struct vmdk_extent are validated when the extent is
 * added (vmdk_add_extent): cluster_sectors <= 2^21, l2_size <= 4096,
 * l1_size <= 32 Mi, sectors * 512 fits in int64. */
#ifndef QIMG_FORMATS_VMDK_H
#define QIMG_FORMATS_VMDK_H

#include <stdbool.h>
#include <stdint.h>

#include "block/driver.h"

#define VMDK_SECTOR             512ULL
#define VMDK_DESC_SIZE          (20 * 512)     /* descriptor area scanned for CIDs */
#define VMDK_DESC_MAX           ((1 << 20) - 1) /* bytes of a descriptor file read */
#define VMDK_L2_CACHE_SIZE      16
#define VMDK_MAX_EXTENTS        1024           /* ours: bounds files opened per image */
#define VMDK_MAX_GRAIN_SECTORS  0x200000ULL    /* qemu: 1 GiB grains are "corrupt" */
#define VMDK_MAX_L1_SIZE        (32u * 1024 * 1024)
#define VMDK_EXTENT_MAX_SECTORS (1ULL << 32)   /* GTEs are 32-bit sector numbers */
/* Compressed grains are decompressed whole; bound the buffers (ours). */
#define VMDK_MAX_COMPRESSED_GRAIN (64ULL << 20)

#define VMDK3_MAGIC 0x434f5744u   /* "COWD" read big-endian */
#define VMDK4_MAGIC 0x4b444d56u   /* "KDMV" read big-endian */

#define VMDK4_FLAG_NL_DETECT  (1u << 0)
#define VMDK4_FLAG_RGD        (1u << 1)
#define VMDK4_FLAG_ZERO_GRAIN (1u << 2)
#define VMDK4_FLAG_COMPRESS   (1u << 16)
#define VMDK4_FLAG_MARKER     (1u << 17)
#define VMDK4_COMPRESSION_DEFLATE 1
#define VMDK4_GD_AT_END       UINT64_MAX
#define VMDK_GTE_ZEROED       1u

#define VMDK_MARKER_EOS    0
#define VMDK_MARKER_GT     1
#define VMDK_MARKER_GD     2
#define VMDK_MARKER_FOOTER 3

/* Grain marker in front of a compressed grain: lba u64, size u32. */
#define VMDK_GRAIN_MARKER_SIZE 12

/* Results of a grain lookup (negative values are -errno). */
enum { VMDK_OK = 0, VMDK_UNALLOC = 1, VMDK_ZEROED = 2, VMDK_ERROR = 3 };

struct vmdk_extent {
    struct bds *file;           /* bs->file, or a node this extent owns */
    bool own_file;
    bool flat;
    bool compressed;
    bool has_marker;
    bool has_zero_grain;
    int version;
    char *type;                 /* extent type from the descriptor, NULL when monolithic */
    uint64_t sectors;           /* size of the extent */
    uint64_t end_sector;        /* first guest sector after this extent */
    uint64_t flat_start_offset; /* bytes, flat extents */
    uint64_t l1_table_offset;   /* bytes */
    uint64_t l1_backup_table_offset;
    uint32_t *l1_table;
    uint32_t *l1_backup_table;
    uint32_t l1_size;
    uint64_t l1_entry_sectors;
    uint32_t l2_size;
    uint32_t *l2_cache;         /* VMDK_L2_CACHE_SIZE tables of l2_size entries (host order) */
    uint32_t l2_cache_offsets[VMDK_L2_CACHE_SIZE];
    uint32_t l2_cache_counts[VMDK_L2_CACHE_SIZE];
    uint64_t cluster_sectors;   /* grain size; whole extent when flat */
    uint64_t next_cluster_sector;
    /* seSparse extents (vmdk-sesparse.c): 64-bit tables, read-only */
    bool sesparse;
    uint64_t *se_l1;            /* grain directory, host order */
    uint32_t se_l1_avail;       /* entries of it inside the file (the rest read 0) */
    uint64_t *se_l2;            /* one cached grain table */
    uint64_t se_l2_offset;      /* its sector, UINT64_MAX = none */
    uint64_t se_tables_offset;  /* sectors */
    uint64_t se_grains_offset;  /* sectors */
};

struct vmdk_state {
    uint64_t desc_offset;       /* where CID lines live: 0x200 (sparse) or 0 (descriptor file) */
    bool cid_updated;
    bool cid_checked;
    uint32_t cid;
    uint32_t parent_cid;
    int num_extents;
    struct vmdk_extent *extents;
    char *create_type;
};

/* Where a lookup found its GTE, for updating it. */
struct vmdk_meta {
    uint32_t l1_index;
    uint32_t l2_index;
    uint32_t l2_offset;         /* sectors */
    bool new_allocation;
    uint32_t *l2_cache_entry;
};

/* vmdk.c */
char *vmdk_read_desc(struct bds *file, uint64_t offset, struct err *err);
int vmdk_open_desc_file(struct bds *bs, int flags, const char *buf, int depth, struct err *err);
bool vmdk_cid_valid(struct bds *bs);

/* vmdk-sparse.c */
int vmdk_add_extent(struct bds *bs, struct bds *file, bool own, bool flat, uint64_t sectors,
                    uint64_t l1_offset, uint64_t l1_backup_offset, uint64_t l1_size,
                    uint64_t l2_size, uint64_t cluster_sectors, struct vmdk_extent **out,
                    struct err *err);
void vmdk_extent_release(struct vmdk_extent *e);
int vmdk_open_sparse(struct bds *bs, struct bds *file, bool own, int flags, const char *buf,
                     int depth, struct err *err);
int vmdk_get_cluster(struct bds *bs, struct vmdk_extent *e, struct vmdk_meta *m, uint64_t offset,
                     bool allocate, uint64_t *cluster_offset, uint64_t skip_start,
                     uint64_t skip_end);
int vmdk_l2_update(struct vmdk_extent *e, struct vmdk_meta *m, uint32_t value);

/* vmdk-sesparse.c */
int vmdk_open_sesparse(struct bds *bs, struct bds *file, int flags, struct err *err);
int vmdk_sesparse_get_cluster(struct vmdk_extent *e, uint64_t offset, uint64_t *cluster_offset);

/* vmdk-stream.c */
int vmdk_read_compressed(struct vmdk_extent *e, uint64_t cluster_offset,
                         uint64_t offset_in_cluster, uint64_t len, void *buf);
/* zlib-compress one grain's data (thread-safe); -ENOSPC if cap is short. */
long vmdk_compress_grain(int level, const void *buf, size_t len, void *dst, size_t cap);
/* Write a grain with its marker; payload/plen, when given, is the grain
 * already compressed by vmdk_compress_grain(). */
int vmdk_write_compressed(struct vmdk_extent *e, uint64_t cluster_offset, uint64_t guest_offset,
                          uint64_t len, const void *buf, const void *payload, long plen,
                          int level);
int vmdk_read_footer(struct bds *file, uint8_t header[512], struct err *err);

/* vmdk-create.c */
extern const struct opt_desc vmdk_create_opts[];
int vmdk_create(const char *filename, struct kvopts *opts, struct err *err);
/* The CID of an opened vmdk node (for create's parentCID). */
int vmdk_node_cid(struct bds *bs, uint32_t *cid);

#endif
