/* Unit tests for the vhdx decode helpers: CRC-32C against published
 * vectors (RFC 3720 B.4 and the classic "123456789" check value), checksum
 * fields read as zero, Microsoft-style GUID byte order, header round trip,
 * and the BAT entry arithmetic (chunk ratio, sector-bitmap interleave,
 * qemu's 32-bit entry count). */
#include <string.h>

#include "formats/vhdx/vhdx.h"
#include "tap.h"
#include "util/endian.h"

static void test_crc32c(void)
{
    uint8_t buf[48];

    is_uint(vhdx_crc32c("123456789", 9), 0xE3069283u, "crc32c check value of \"123456789\"");
    is_uint(vhdx_crc32c("", 0), 0u, "crc32c of nothing is 0");
    memset(buf, 0, 32);
    is_uint(vhdx_crc32c(buf, 32), 0x8A9136AAu, "crc32c of 32 zero bytes (RFC 3720)");
    memset(buf, 0xff, 32);
    is_uint(vhdx_crc32c(buf, 32), 0x62A8AB43u, "crc32c of 32 0xff bytes (RFC 3720)");
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    is_uint(vhdx_crc32c(buf, 32), 0x46DD794Eu, "crc32c of 0..31 (RFC 3720)");
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    is_uint(vhdx_crc32c(buf, 32), 0x113FDB5Cu, "crc32c of 31..0 (RFC 3720)");
    /* iSCSI SCSI Read (10) command PDU from RFC 3720 B.4 */
    static const uint8_t pdu[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    is_uint(vhdx_crc32c(pdu, sizeof(pdu)), 0xD9963A56u, "crc32c of the RFC 3720 read PDU");

    /* Incremental updates give the same result as one pass. */
    uint32_t c = vhdx_crc32c_update(~0u, "1234", 4);
    c = vhdx_crc32c_update(c, "56789", 5);
    is_uint(~c, 0xE3069283u, "crc32c in two pieces");
}

static void test_checksum_field(void)
{
    uint8_t buf[64];

    for (int i = 0; i < 64; i++)
        buf[i] = (uint8_t)(i * 7);
    vhdx_checksum_set(buf, sizeof(buf), 4);
    ok(vhdx_checksum_ok(buf, sizeof(buf), 4), "a stored checksum validates");
    uint8_t copy[64];
    memcpy(copy, buf, sizeof(copy));
    memset(copy + 4, 0, 4);
    is_uint(get_le32(buf + 4), vhdx_crc32c(copy, sizeof(copy)), "checksum is over the field as zero");
    buf[40] ^= 1;
    ok(!vhdx_checksum_ok(buf, sizeof(buf), 4), "a flipped bit fails the checksum");
    ok(!vhdx_checksum_ok(buf, 6, 4), "a field past the buffer never validates");
}

static void test_guid(void)
{
    /* The BAT region GUID 2DC27766-F623-4200-9D64-115E9BFD4A08 on disk. */
    static const uint8_t disk[16] = { 0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
                                      0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08 };
    struct vhdx_guid g, r;
    uint8_t out[16];

    vhdx_guid_decode(disk, &g);
    is_uint(g.d1, 0x2dc27766u, "guid data1 is little-endian");
    is_uint(g.d2, 0xf623u, "guid data2 is little-endian");
    is_uint(g.d3, 0x4200u, "guid data3 is little-endian");
    is_uint(g.d4[0], 0x9du, "guid data4 keeps byte order");
    ok(vhdx_guid_eq(&g, &vhdx_bat_guid), "decoded GUID equals the BAT region GUID");
    ok(!vhdx_guid_eq(&g, &vhdx_metadata_guid), "and not the metadata GUID");
    vhdx_guid_encode(out, &g);
    ok(!memcmp(out, disk, 16), "guid encode is the inverse of decode");
    ok(vhdx_guid_generate(&r) == 0, "guid generate succeeds");
    vhdx_guid_encode(out, &r);
    is_uint(out[6] >> 4, 4u, "generated guid is version 4");
    is_uint(out[8] >> 6, 2u, "generated guid has the RFC 4122 variant");
    ok(!vhdx_guid_is_zero(&r), "generated guid is not zero");
}

static void test_header(void)
{
    uint8_t buf[VHDX_HEADER_STRUCT_SIZE];
    struct vhdx_header h = {
        .signature = VHDX_HEADER_SIGNATURE, .sequence_number = 0x1122334455667788ULL,
        .log_version = 0, .version = 1, .log_length = 1048576, .log_offset = 1048576,
    };
    struct vhdx_header d;

    h.log_guid = vhdx_page83_guid;
    vhdx_header_encode(buf, &h);
    ok(!memcmp(buf, "head", 4), "header signature is \"head\" on disk");
    is_uint(get_le64(buf + 72), 1048576u, "log offset at byte 72");
    vhdx_header_decode(buf, &d);
    ok(d.signature == h.signature && d.sequence_number == h.sequence_number &&
       vhdx_guid_eq(&d.log_guid, &h.log_guid) && d.log_length == h.log_length &&
       d.log_offset == h.log_offset && d.version == 1 && d.log_version == 0,
       "header round trip");
}

static void test_bat_math(void)
{
    is_uint(vhdx_chunk_ratio(512, 1u << 20), 4096u, "chunk ratio for 1 MiB blocks");
    is_uint(vhdx_chunk_ratio(512, 8u << 20), 512u, "chunk ratio for 8 MiB blocks");
    is_uint(vhdx_chunk_ratio(512, 256u << 20), 16u, "chunk ratio for 256 MiB blocks");
    is_uint(vhdx_chunk_ratio(4096, 32u << 20), 1024u, "chunk ratio with 4 KiB sectors");

    /* 8 MiB blocks: chunk ratio 512 (2^9). */
    is_uint(vhdx_bat_index(0, 9), 0u, "block 0 is entry 0");
    is_uint(vhdx_bat_index(511, 9), 511u, "last block of chunk 0 is entry 511");
    is_uint(vhdx_bat_index(512, 9), 513u, "a sector bitmap entry follows 512 blocks");
    is_uint(vhdx_bat_index(1024, 9), 1026u, "two bitmap entries before block 1024");

    is_uint(vhdx_bat_entries(20u << 20, 8u << 20, 9), 3u, "20 MiB in 8 MiB blocks: 3 entries");
    is_uint(vhdx_bat_entries(512ull << 23, 8u << 20, 9), 512u, "exactly one chunk: no bitmap entry");
    is_uint(vhdx_bat_entries(513ull << 23, 8u << 20, 9), 514u, "one block more: a bitmap entry");
    is_uint(vhdx_bat_entries(1000, 8u << 20, 9), 1u, "a partial block counts");
    is_uint(vhdx_bat_entries(0, 8u << 20, 9), 0x7fffffu, "a 0-byte disk wraps as in qemu");

    uint64_t e = (9ULL << 20) | VHDX_PAYLOAD_FULLY_PRESENT;
    is_uint(vhdx_bat_state(e), VHDX_PAYLOAD_FULLY_PRESENT, "entry state in bits 0-2");
    is_uint(vhdx_bat_offset(e), 9u << 20, "entry offset in MiB units, bits 20-63");
    is_uint(vhdx_bat_offset(e | 0xff8), 9u << 20, "reserved bits are not offset");
}

int main(void)
{
    test_crc32c();
    test_checksum_field();
    test_guid();
    test_header();
    test_bat_math();
    return done_testing();
}
