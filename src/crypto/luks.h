/* LUKS1 volumes as qemu 7.2 reads and writes them: header codec, unlocking
 * a key slot with a passphrase, creating a volume, adding and erasing key
 * slots, and payload sector encryption. Used by the luks format driver and
 * by qcow2's encrypt.format=luks: all I/O goes through caller callbacks
 * whose offsets are relative to the start of the LUKS header. */
#ifndef QIMG_CRYPTO_LUKS_H
#define QIMG_CRYPTO_LUKS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "util/err.h"
#include "util/kvopts.h"

#define LUKS_SECTOR_SIZE 512u
#define LUKS_NUM_SLOTS 8
#define LUKS_HEADER_SIZE 592u          /* phdr with its 8 key slots */
#define LUKS_KEY_SLOT_OFFSET 4096u     /* key material starts here */
#define LUKS_STRIPES 4000u
#define LUKS_SALT_LEN 32
#define LUKS_DIGEST_LEN 20
#define LUKS_UUID_LEN 40
#define LUKS_SLOT_ENABLED 0x00AC71F3u
#define LUKS_SLOT_DISABLED 0x0000DEADu
#define LUKS_DEFAULT_ITER_TIME 2000

struct luks_slot {
    uint32_t active, iterations;
    uint8_t salt[LUKS_SALT_LEN];
    uint32_t key_offset_sector, stripes;
};

/* The on-disk header, decoded to host order. Strings are NUL-terminated
 * after luks_header_decode() (it refuses fields without a NUL). */
struct luks_header {
    uint16_t version;
    char cipher_name[32], cipher_mode[32], hash_spec[32];
    uint32_t payload_offset_sector, master_key_len;
    uint8_t mk_digest[LUKS_DIGEST_LEN], mk_salt[LUKS_SALT_LEN];
    uint32_t mk_iterations;
    uint8_t uuid[LUKS_UUID_LEN];
    struct luks_slot slots[LUKS_NUM_SLOTS];
};

/* Magic and version 1 present (qemu's probe). */
bool luks_probe(const uint8_t *buf, size_t len);
/* Decode and sanity-check (qemu's load + check): every message is qemu's. */
int luks_header_decode(const uint8_t *buf, size_t len, struct luks_header *h, struct err *err);
void luks_header_encode(const struct luks_header *h, uint8_t out[LUKS_HEADER_SIZE]);

typedef int (*luks_read_fn)(void *opaque, uint64_t off, void *buf, size_t len, struct err *err);
typedef int (*luks_write_fn)(void *opaque, uint64_t off, const void *buf, size_t len,
                             struct err *err);
/* Called once during create with the header length (= payload offset). */
typedef int (*luks_init_fn)(void *opaque, uint64_t header_len, struct err *err);

struct luks;

/* Open: read and check the header; unless no_io, unlock the master key
 * with password (NUL-terminated, as qemu uses its UTF-8 string). */
struct luks *luks_open(luks_read_fn rd, void *opaque, const char *password, bool no_io,
                       struct err *err);
void luks_free(struct luks *l);
uint64_t luks_payload_offset(const struct luks *l);
const struct luks_header *luks_get_header(const struct luks *l);
/* In-place payload encryption; offset and len are multiples of 512 and
 * relative to the payload (the IV sector is offset / 512). */
int luks_encrypt(const struct luks *l, uint64_t offset, uint8_t *buf, size_t len, struct err *err);
int luks_decrypt(const struct luks *l, uint64_t offset, uint8_t *buf, size_t len, struct err *err);
/* qapi QCryptoBlockInfoLUKS, keys in declaration order. */
json_t *luks_info_json(const struct luks *l);

/* Creation parameters (qapi QCryptoBlockCreateOptionsLUKS). */
struct luks_create_opts {
    const char *key_secret;            /* secret id, or NULL */
    enum crypto_cipher_alg cipher_alg;
    enum crypto_cipher_mode cipher_mode;
    enum crypto_ivgen_alg ivgen_alg;
    bool has_ivgen_hash_alg;
    enum crypto_hash ivgen_hash_alg;
    enum crypto_hash hash_alg;
    uint64_t iter_time;
};
/* Fill from options "<prefix>cipher-alg" etc. with qemu's defaults and
 * its "Parameter '...' does not accept value '...'" messages. The strings
 * stay owned by opts. */
int luks_create_opts_parse(const struct kvopts *opts, const char *prefix,
                           struct luks_create_opts *out, struct err *err);
/* Create a volume: looks the secret up (util/secret.h), builds the header
 * and key slot 0, calls init(header_len) and then writes the header and
 * key material through wr. Returns the opened volume. */
struct luks *luks_create(const struct luks_create_opts *o, const char *prefix, luks_init_fn init,
                         luks_write_fn wr, void *opaque, struct err *err);
/* The payload offset a volume with these options gets (qemu computes it
 * by a full dry-run create, secret included, and so do we). */
int luks_payload_size(const struct luks_create_opts *o, const char *prefix, uint64_t *len,
                      struct err *err);

/* qapi QCryptoBlockAmendOptionsLUKS. */
struct luks_amend_opts {
    bool active;                       /* state */
    bool has_keyslot;
    int64_t keyslot;
    const char *new_secret, *old_secret, *secret;
    bool has_iter_time;
    uint64_t iter_time;
};
/* Add (state=active) or erase (state=inactive) key slots. open_secret is
 * the id the volume was opened with. Messages are qemu's. */
int luks_amend(struct luks *l, luks_read_fn rd, luks_write_fn wr, void *opaque,
               const struct luks_amend_opts *o, const char *open_secret, bool force,
               struct err *err);

#endif
