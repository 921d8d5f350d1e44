/* VHDX: on-disk constants, decoded structures and the helpers shared by
 * vhdx.c (open, read, write, create, check), vhdx-log.c (log replay) and
 * vhdx-endian.c (CRC-32C, GUIDs, header/entry decoding).
 *
 * Spec: Microsoft "VHDX Format Specification v1.00" (MS-VHDX). All integers
 * on disk are little-endian; GUIDs are stored Microsoft-style (first three
 * fields little-endian, the last eight bytes as they are). Nothing here is
 * cast onto a buffer: every structure is decoded field by field. */
#ifndef QIMG_FORMATS_VHDX_H
#define QIMG_FORMATS_VHDX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VHDX_KiB                    1024ULL
#define VHDX_MiB                    (1024ULL * 1024)

/* §2.1 header section: the first 1 MiB, five 64 KiB structures. */
#define VHDX_HEADER_BLOCK_SIZE      (64 * VHDX_KiB)
#define VHDX_FILE_ID_OFFSET         0
#define VHDX_HEADER1_OFFSET         (1 * VHDX_HEADER_BLOCK_SIZE)
#define VHDX_HEADER2_OFFSET         (2 * VHDX_HEADER_BLOCK_SIZE)
#define VHDX_REGION_TABLE1_OFFSET   (3 * VHDX_HEADER_BLOCK_SIZE)
#define VHDX_REGION_TABLE2_OFFSET   (4 * VHDX_HEADER_BLOCK_SIZE)
#define VHDX_HEADER_SECTION_END     VHDX_MiB

/* §2.2.2 header: 80 bytes used, CRC over the first 4 KiB. */
#define VHDX_HEADER_SIZE            (4 * VHDX_KiB)
#define VHDX_HEADER_STRUCT_SIZE     80
#define VHDX_HEADER_SIGNATURE       0x64616568u      /* "head" */

/* §2.2.3 region table: 16-byte header, 32-byte entries, CRC over 64 KiB. */
#define VHDX_REGION_SIGNATURE       0x69676572u      /* "regi" */
#define VHDX_REGION_HDR_SIZE        16
#define VHDX_REGION_ENTRY_SIZE      32
#define VHDX_REGION_MAX_ENTRIES     2047
#define VHDX_REGION_ENTRY_REQUIRED  0x01u

/* §2.3 log. */
#define VHDX_LOG_SECTOR_SIZE        (4 * VHDX_KiB)
#define VHDX_LOG_MIN_SIZE           VHDX_MiB
#define VHDX_LOG_HDR_SIZE           64
#define VHDX_LOG_DESC_SIZE          32
#define VHDX_LOG_SIGNATURE          0x65676f6cu      /* "loge" */
#define VHDX_LOG_DESC_SIGNATURE     0x63736564u      /* "desc" */
#define VHDX_LOG_ZERO_SIGNATURE     0x6f72657au      /* "zero" */
#define VHDX_LOG_DATA_SIGNATURE     0x61746164u      /* "data" */
#define VHDX_DEFAULT_LOG_SIZE       VHDX_MiB

/* §2.5 BAT. */
#define VHDX_PAYLOAD_NOT_PRESENT        0
#define VHDX_PAYLOAD_UNDEFINED          1
#define VHDX_PAYLOAD_ZERO               2
#define VHDX_PAYLOAD_UNMAPPED           3
#define VHDX_PAYLOAD_UNMAPPED_V095      5
#define VHDX_PAYLOAD_FULLY_PRESENT      6
#define VHDX_PAYLOAD_PARTIALLY_PRESENT  7
#define VHDX_SB_NOT_PRESENT             0
#define VHDX_SB_PRESENT                 6
#define VHDX_BAT_STATE_MASK             0x7ULL
#define VHDX_BAT_OFFSET_MASK            0xFFFFFFFFFFF00000ULL
#define VHDX_MAX_SECTORS_PER_BLOCK      (1ULL << 23)

/* §2.6 metadata region. */
#define VHDX_METADATA_SIGNATURE         0x617461646174656DULL   /* "metadata" */
#define VHDX_METADATA_TABLE_SIZE        (64 * VHDX_KiB)
#define VHDX_METADATA_HDR_SIZE          32
#define VHDX_METADATA_ENTRY_SIZE        32
#define VHDX_METADATA_MAX_ENTRIES       2047
#define VHDX_META_IS_USER               0x01u
#define VHDX_META_IS_VIRTUAL_DISK       0x02u
#define VHDX_META_IS_REQUIRED           0x04u
#define VHDX_PARAMS_LEAVE_ALLOCATED     0x01u
#define VHDX_PARAMS_HAS_PARENT          0x02u
#define VHDX_BLOCK_SIZE_MIN             VHDX_MiB
#define VHDX_BLOCK_SIZE_MAX             (256 * VHDX_MiB)
#define VHDX_MAX_IMAGE_SIZE             (64ULL * 1024 * 1024 * VHDX_MiB)   /* 64 TiB */

struct vhdx_guid {
    uint32_t d1;
    uint16_t d2, d3;
    uint8_t d4[8];
};

/* The well-known GUIDs (region and metadata item identifiers). */
extern const struct vhdx_guid vhdx_bat_guid, vhdx_metadata_guid, vhdx_file_param_guid,
    vhdx_virtual_size_guid, vhdx_page83_guid, vhdx_logical_sector_guid,
    vhdx_phys_sector_guid, vhdx_parent_locator_guid, vhdx_parent_vhdx_guid;

struct vhdx_header {
    uint32_t signature, checksum;
    uint64_t sequence_number;
    struct vhdx_guid file_write_guid, data_write_guid, log_guid;
    uint16_t log_version, version;
    uint32_t log_length;
    uint64_t log_offset;
};

struct vhdx_region_entry {
    struct vhdx_guid guid;
    uint64_t file_offset;
    uint32_t length, data_bits;
};

struct vhdx_metadata_entry {
    struct vhdx_guid item_id;
    uint32_t offset, length, data_bits;
};

struct vhdx_log_entry_header {
    uint32_t signature, checksum, entry_length, tail;
    uint64_t sequence_number;
    uint32_t descriptor_count;
    struct vhdx_guid log_guid;
    uint64_t flushed_file_offset, last_file_offset;
};

struct vhdx_log_desc {
    uint32_t signature;
    uint32_t trailing_bytes;    /* raw bytes 4092..4095 of the sector (data desc) */
    uint64_t leading_bytes;     /* raw bytes 0..7 (data desc), or zero_length */
    uint64_t file_offset;
    uint64_t sequence_number;
    uint8_t raw_leading[8], raw_trailing[4];
};

/* --- vhdx-endian.c: CRC-32C (Castagnoli, reflected 0x82F63B78) --- */

/* Raw register update: no pre- or post-inversion. */
uint32_t vhdx_crc32c_update(uint32_t crc, const void *buf, size_t len);
/* The standard CRC-32C of buf (initial ~0, final ~0). */
uint32_t vhdx_crc32c(const void *buf, size_t len);
/* CRC-32C of buf with the 4 bytes at crc_off read as zero (buf untouched). */
uint32_t vhdx_checksum(const uint8_t *buf, size_t len, size_t crc_off);
bool vhdx_checksum_ok(const uint8_t *buf, size_t len, size_t crc_off);
/* Compute and store the checksum at crc_off. */
void vhdx_checksum_set(uint8_t *buf, size_t len, size_t crc_off);

/* --- GUIDs --- */
void vhdx_guid_decode(const uint8_t *p, struct vhdx_guid *g);
void vhdx_guid_encode(uint8_t *p, const struct vhdx_guid *g);
bool vhdx_guid_eq(const struct vhdx_guid *a, const struct vhdx_guid *b);
bool vhdx_guid_is_zero(const struct vhdx_guid *g);
/* A random (version 4) GUID; returns 0 or -errno. */
int vhdx_guid_generate(struct vhdx_guid *g);

/* --- structure codecs (p must hold the structure's on-disk size) --- */
void vhdx_header_decode(const uint8_t *p, struct vhdx_header *h);
void vhdx_header_encode(uint8_t *p, const struct vhdx_header *h);   /* checksum as given */
void vhdx_region_entry_decode(const uint8_t *p, struct vhdx_region_entry *e);
void vhdx_region_entry_encode(uint8_t *p, const struct vhdx_region_entry *e);
void vhdx_metadata_entry_decode(const uint8_t *p, struct vhdx_metadata_entry *e);
void vhdx_metadata_entry_encode(uint8_t *p, const struct vhdx_metadata_entry *e);
void vhdx_log_entry_header_decode(const uint8_t *p, struct vhdx_log_entry_header *h);
void vhdx_log_desc_decode(const uint8_t *p, struct vhdx_log_desc *d);

/* --- BAT entry math --- */

/* Payload blocks per sector-bitmap block: 2^23 * logical_sector / block. */
uint64_t vhdx_chunk_ratio(uint32_t logical_sector_size, uint32_t block_size);
/* Number of BAT entries for a disk without parent, computed as qemu 7.2
 * does in 32-bit arithmetic (so a 0-byte disk has a huge BAT). */
uint32_t vhdx_bat_entries(uint64_t disk_size, uint32_t block_size, unsigned chunk_ratio_bits);
/* Index of the BAT entry of payload block `block` (a sector-bitmap entry
 * follows every 2^chunk_ratio_bits payload entries). */
static inline uint64_t vhdx_bat_index(uint64_t block, unsigned chunk_ratio_bits)
{
    return block + (block >> chunk_ratio_bits);
}
static inline unsigned vhdx_bat_state(uint64_t entry) { return (unsigned)(entry & VHDX_BAT_STATE_MASK); }
static inline uint64_t vhdx_bat_offset(uint64_t entry) { return entry & VHDX_BAT_OFFSET_MASK; }
static inline unsigned vhdx_ctz64(uint64_t v) { return v ? (unsigned)__builtin_ctzll(v) : 64; }

/* --- driver state (vhdx.c, vhdx-log.c) --- */

struct vhdx_range {
    uint64_t start, end;
};

struct vhdx_log {
    uint64_t offset;            /* file offset of the circular log */
    uint64_t length;            /* bytes, multiple of 1 MiB */
    uint64_t read, write;       /* positions inside the log */
    uint64_t sequence;          /* next entry's sequence number (0: none yet) */
    uint64_t tail;              /* start of the oldest entry still needed */
};

struct vhdx_state {
    struct vhdx_header headers[2];
    int curr_header;
    struct vhdx_guid session_guid;
    bool first_visible_write;
    bool log_replayed_on_open;
    struct vhdx_log log;

    struct vhdx_region_entry bat_rt, metadata_rt;
    struct vhdx_range *regions;     /* log + region table entries, in order */
    size_t n_regions;

    uint32_t block_size, block_size_bits;
    uint32_t file_param_bits;
    uint32_t logical_sector_size, physical_sector_size;
    uint64_t virtual_disk_size;
    uint64_t chunk_ratio;
    unsigned chunk_ratio_bits;
    struct vhdx_guid page83;

    uint32_t bat_entries;
    /* Host-endian copy of the BAT's first bat_loaded entries: those the
     * file holds (a region may run past its end, which reads as zeros) and
     * any a write set since; the others are 0 (not present). */
    uint64_t *bat;
    uint32_t bat_loaded;

    /* Differencing images (read-only, beyond qemu 7.2): the parent comes
     * from the parent locator; sb holds the sector bitmap bytes of one
     * payload block (sb_offset: their file offset, UINT64_MAX = none). */
    bool diff;
    uint8_t *sb;
    uint64_t sb_offset;
};

struct bds;
struct err;

/* vhdx.c: write both headers the way the spec updates them (the inactive
 * one gets the next sequence number, twice), optionally with a new data
 * write GUID and log GUID. */
int vhdx_update_headers(struct bds *bs, struct vhdx_state *s, bool new_data_guid,
                        const struct vhdx_guid *log_guid);
/* vhdx.c: the host file length rounded up to 512 as qemu reports it. */
int64_t vhdx_file_length(struct bds *bs);

/* vhdx-log.c: look for an active log sequence; replay it when the node is
 * writable (*replayed = true), refuse a read-only open of a dirty log. */
int vhdx_log_parse(struct bds *bs, struct vhdx_state *s, bool *replayed, struct err *err);

/* vhdx-log.c: journal `length` bytes of metadata destined for file offset
 * `offset` as one log entry, then replay it at once (qemu's only way of
 * updating the BAT). */
int vhdx_log_write_and_flush(struct bds *bs, struct vhdx_state *s, const void *data,
                             uint32_t length, uint64_t offset);
/* vhdx.c: the first guest-visible change updates both headers. */
int vhdx_user_visible_write(struct bds *bs, struct vhdx_state *s);

#endif
