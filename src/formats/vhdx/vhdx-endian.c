/* VHDX decode helpers: CRC-32C, Microsoft-style GUIDs and the field-by-field
 * codecs of the header (§2.2.2), region table entry (§2.2.3), metadata table
 * entry (§2.6.1.2), log entry header and descriptors (§2.3.1), plus the BAT
 * entry arithmetic of §2.5.
 *
 * The CRC is the Castagnoli polynomial (reflected 0x82F63B78) with initial
 * value ~0 and final inversion; checksummed structures are summed with their
 * own checksum field read as zero. */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "formats/vhdx/vhdx.h"
#include "util/endian.h"

const struct vhdx_guid vhdx_bat_guid = {
    0x2dc27766, 0xf623, 0x4200, { 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08 } };
const struct vhdx_guid vhdx_metadata_guid = {
    0x8b7ca206, 0x4790, 0x4b9a, { 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e } };
const struct vhdx_guid vhdx_file_param_guid = {
    0xcaa16737, 0xfa36, 0x4d43, { 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b } };
const struct vhdx_guid vhdx_virtual_size_guid = {
    0x2fa54224, 0xcd1b, 0x4876, { 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8 } };
const struct vhdx_guid vhdx_page83_guid = {
    0xbeca12ab, 0xb2e6, 0x4523, { 0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46 } };
const struct vhdx_guid vhdx_logical_sector_guid = {
    0x8141bf1d, 0xa96f, 0x4709, { 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f } };
const struct vhdx_guid vhdx_phys_sector_guid = {
    0xcda348c7, 0x445d, 0x4471, { 0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56 } };
const struct vhdx_guid vhdx_parent_locator_guid = {
    0xa8d35f2d, 0xb30b, 0x454d, { 0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c } };
const struct vhdx_guid vhdx_parent_vhdx_guid = {
    0xb04aefb7, 0xd19e, 0x4a81, { 0xb7, 0x89, 0x25, 0xb8, 0xe9, 0x44, 0x59, 0x13 } };

/* ------------------------------------------------------------ CRC-32C */

static uint32_t crc_table[256];
static bool crc_table_ready;

static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
    crc_table_ready = true;
}

uint32_t vhdx_crc32c_update(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    /* Filling the table twice from two threads writes the same values. */
    if (!__atomic_load_n(&crc_table_ready, __ATOMIC_ACQUIRE))
        crc_table_init();
    while (len--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

uint32_t vhdx_crc32c(const void *buf, size_t len)
{
    return ~vhdx_crc32c_update(~0u, buf, len);
}

uint32_t vhdx_checksum(const uint8_t *buf, size_t len, size_t crc_off)
{
    static const uint8_t zero[4];
    uint32_t c = ~0u;

    if (crc_off + 4 > len)
        return ~vhdx_crc32c_update(c, buf, len);
    c = vhdx_crc32c_update(c, buf, crc_off);
    c = vhdx_crc32c_update(c, zero, 4);
    c = vhdx_crc32c_update(c, buf + crc_off + 4, len - crc_off - 4);
    return ~c;
}

bool vhdx_checksum_ok(const uint8_t *buf, size_t len, size_t crc_off)
{
    return crc_off + 4 <= len && vhdx_checksum(buf, len, crc_off) == get_le32(buf + crc_off);
}

void vhdx_checksum_set(uint8_t *buf, size_t len, size_t crc_off)
{
    put_le32(buf + crc_off, vhdx_checksum(buf, len, crc_off));
}

/* ------------------------------------------------------------ GUIDs */

void vhdx_guid_decode(const uint8_t *p, struct vhdx_guid *g)
{
    g->d1 = get_le32(p);
    g->d2 = get_le16(p + 4);
    g->d3 = get_le16(p + 6);
    memcpy(g->d4, p + 8, 8);
}

void vhdx_guid_encode(uint8_t *p, const struct vhdx_guid *g)
{
    put_le32(p, g->d1);
    put_le16(p + 4, g->d2);
    put_le16(p + 6, g->d3);
    memcpy(p + 8, g->d4, 8);
}

bool vhdx_guid_eq(const struct vhdx_guid *a, const struct vhdx_guid *b)
{
    return a->d1 == b->d1 && a->d2 == b->d2 && a->d3 == b->d3 && !memcmp(a->d4, b->d4, 8);
}

bool vhdx_guid_is_zero(const struct vhdx_guid *g)
{
    static const struct vhdx_guid zero;
    return vhdx_guid_eq(g, &zero);
}

int vhdx_guid_generate(struct vhdx_guid *g)
{
    uint8_t b[16];
    size_t got = 0;

    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    /* RFC 4122 version 4, variant 1, on the bytes as they are stored. */
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    vhdx_guid_decode(b, g);
    return 0;
}

/* ------------------------------------------------------------ codecs */

void vhdx_header_decode(const uint8_t *p, struct vhdx_header *h)
{
    h->signature = get_le32(p);
    h->checksum = get_le32(p + 4);
    h->sequence_number = get_le64(p + 8);
    vhdx_guid_decode(p + 16, &h->file_write_guid);
    vhdx_guid_decode(p + 32, &h->data_write_guid);
    vhdx_guid_decode(p + 48, &h->log_guid);
    h->log_version = get_le16(p + 64);
    h->version = get_le16(p + 66);
    h->log_length = get_le32(p + 68);
    h->log_offset = get_le64(p + 72);
}

void vhdx_header_encode(uint8_t *p, const struct vhdx_header *h)
{
    put_le32(p, h->signature);
    put_le32(p + 4, h->checksum);
    put_le64(p + 8, h->sequence_number);
    vhdx_guid_encode(p + 16, &h->file_write_guid);
    vhdx_guid_encode(p + 32, &h->data_write_guid);
    vhdx_guid_encode(p + 48, &h->log_guid);
    put_le16(p + 64, h->log_version);
    put_le16(p + 66, h->version);
    put_le32(p + 68, h->log_length);
    put_le64(p + 72, h->log_offset);
}

void vhdx_region_entry_decode(const uint8_t *p, struct vhdx_region_entry *e)
{
    vhdx_guid_decode(p, &e->guid);
    e->file_offset = get_le64(p + 16);
    e->length = get_le32(p + 24);
    e->data_bits = get_le32(p + 28);
}

void vhdx_region_entry_encode(uint8_t *p, const struct vhdx_region_entry *e)
{
    vhdx_guid_encode(p, &e->guid);
    put_le64(p + 16, e->file_offset);
    put_le32(p + 24, e->length);
    put_le32(p + 28, e->data_bits);
}

void vhdx_metadata_entry_decode(const uint8_t *p, struct vhdx_metadata_entry *e)
{
    vhdx_guid_decode(p, &e->item_id);
    e->offset = get_le32(p + 16);
    e->length = get_le32(p + 20);
    e->data_bits = get_le32(p + 24);
}

void vhdx_metadata_entry_encode(uint8_t *p, const struct vhdx_metadata_entry *e)
{
    vhdx_guid_encode(p, &e->item_id);
    put_le32(p + 16, e->offset);
    put_le32(p + 20, e->length);
    put_le32(p + 24, e->data_bits);
    put_le32(p + 28, 0);
}

void vhdx_log_entry_header_decode(const uint8_t *p, struct vhdx_log_entry_header *h)
{
    h->signature = get_le32(p);
    h->checksum = get_le32(p + 4);
    h->entry_length = get_le32(p + 8);
    h->tail = get_le32(p + 12);
    h->sequence_number = get_le64(p + 16);
    h->descriptor_count = get_le32(p + 24);
    vhdx_guid_decode(p + 32, &h->log_guid);
    h->flushed_file_offset = get_le64(p + 48);
    h->last_file_offset = get_le64(p + 56);
}

void vhdx_log_desc_decode(const uint8_t *p, struct vhdx_log_desc *d)
{
    d->signature = get_le32(p);
    d->trailing_bytes = get_le32(p + 4);
    d->leading_bytes = get_le64(p + 8);
    d->file_offset = get_le64(p + 16);
    d->sequence_number = get_le64(p + 24);
    memcpy(d->raw_trailing, p + 4, 4);
    memcpy(d->raw_leading, p + 8, 8);
}

/* ------------------------------------------------------------ BAT math */

uint64_t vhdx_chunk_ratio(uint32_t logical_sector_size, uint32_t block_size)
{
    if (!block_size)
        return 0;
    return VHDX_MAX_SECTORS_PER_BLOCK * (uint64_t)logical_sector_size / block_size;
}

uint32_t vhdx_bat_entries(uint64_t disk_size, uint32_t block_size, unsigned chunk_ratio_bits)
{
    /* qemu keeps these counts in uint32_t: a 0-byte disk wraps to
     * (2^32 - 1) >> bits bitmap entries; images it made that way must open. */
    uint32_t data_blocks = (uint32_t)(disk_size / block_size + (disk_size % block_size != 0));
    uint32_t bitmaps = chunk_ratio_bits >= 32 ? 0 : (uint32_t)(data_blocks - 1) >> chunk_ratio_bits;
    return data_blocks + bitmaps;
}
