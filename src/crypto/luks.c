/* LUKS1 (cryptsetup "LUKS On-Disk Format Specification" 1.2.1: "2 PHDR
 * Layout", "3 Key slots", "4 AF-Splitter"), with qemu 7.2's choices
 * (crypto/block-luks.c facts): key material areas are aligned to the
 * 4 KiB header (cryptsetup's layout), the master key digest uses
 * iterations benchmarked for iter-time / 8, slot iterations for iter-time,
 * each with a floor of 1000; slot material is encrypted with the volume's
 * cipher/mode/ivgen keyed by the PBKDF2 of the passphrase, 512-byte sectors
 * numbered from 0 at the slot's start.
 *
 * Invariants after luks_header_decode(): strings are NUL-terminated,
 * every slot has 4000 stripes and lies between the header and the payload.
 * After parsing the cipher spec, master_key_len is one of the valid key
 * sizes (<= 64), so every allocation below is small. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/luks.h"
#include "util/ckd.h"
#include "util/endian.h"
#include "util/secret.h"

static const uint8_t luks_magic[6] = { 'L', 'U', 'K', 'S', 0xBA, 0xBE };

/* phdr field offsets. */
enum {
    H_MAGIC = 0, H_VERSION = 6, H_CIPHER_NAME = 8, H_CIPHER_MODE = 40, H_HASH_SPEC = 72,
    H_PAYLOAD = 104, H_KEY_BYTES = 108, H_MK_DIGEST = 112, H_MK_SALT = 132, H_MK_ITERS = 164,
    H_UUID = 168, H_SLOTS = 208, SLOT_SIZE = 48,
};

struct luks {
    struct luks_header h;
    enum crypto_cipher_alg cipher_alg, ivgen_cipher_alg;
    enum crypto_cipher_mode cipher_mode;
    enum crypto_ivgen_alg ivgen_alg;
    enum crypto_hash ivgen_hash_alg, hash_alg;
    bool has_ivgen_hash;
    struct crypto_cipher *cipher;     /* payload cipher, NULL when opened without I/O */
    struct crypto_ivgen *ivgen;
};

bool luks_probe(const uint8_t *buf, size_t len)
{
    return len >= H_CIPHER_NAME && !memcmp(buf, luks_magic, sizeof(luks_magic)) &&
           get_be16(buf + H_VERSION) == 1;
}

/* Sectors of one slot's key material, rounded up to the header size as
 * cryptsetup lays it out. */
static uint64_t splitkey_sectors(uint32_t key_len, uint32_t stripes)
{
    uint64_t s = div_round_up_u64((uint64_t)key_len * stripes, LUKS_SECTOR_SIZE);
    return align_up_u64(s, LUKS_KEY_SLOT_OFFSET / LUKS_SECTOR_SIZE);
}

int luks_header_decode(const uint8_t *buf, size_t len, struct luks_header *h, struct err *err)
{
    const uint64_t hdr_sectors = LUKS_KEY_SLOT_OFFSET / LUKS_SECTOR_SIZE;

    if (len < LUKS_HEADER_SIZE || memcmp(buf, luks_magic, sizeof(luks_magic)))
        return err_set(err, EINVAL, "Volume is not in LUKS format");
    memset(h, 0, sizeof(*h));
    h->version = get_be16(buf + H_VERSION);
    memcpy(h->cipher_name, buf + H_CIPHER_NAME, 32);
    memcpy(h->cipher_mode, buf + H_CIPHER_MODE, 32);
    memcpy(h->hash_spec, buf + H_HASH_SPEC, 32);
    h->payload_offset_sector = get_be32(buf + H_PAYLOAD);
    h->master_key_len = get_be32(buf + H_KEY_BYTES);
    memcpy(h->mk_digest, buf + H_MK_DIGEST, LUKS_DIGEST_LEN);
    memcpy(h->mk_salt, buf + H_MK_SALT, LUKS_SALT_LEN);
    h->mk_iterations = get_be32(buf + H_MK_ITERS);
    memcpy(h->uuid, buf + H_UUID, LUKS_UUID_LEN);
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        const uint8_t *p = buf + H_SLOTS + i * SLOT_SIZE;
        struct luks_slot *s = &h->slots[i];
        s->active = get_be32(p);
        s->iterations = get_be32(p + 4);
        memcpy(s->salt, p + 8, LUKS_SALT_LEN);
        s->key_offset_sector = get_be32(p + 40);
        s->stripes = get_be32(p + 44);
    }

    if (h->version != 1)
        return err_set(err, EINVAL, "LUKS version %" PRIu32 " is not supported",
                       (uint32_t)h->version);
    if (!memchr(h->cipher_name, 0, 32))
        return err_set(err, EINVAL, "LUKS header cipher name is not NUL terminated");
    if (!memchr(h->cipher_mode, 0, 32))
        return err_set(err, EINVAL, "LUKS header cipher mode is not NUL terminated");
    if (!memchr(h->hash_spec, 0, 32))
        return err_set(err, EINVAL, "LUKS header hash spec is not NUL terminated");
    if (h->payload_offset_sector < hdr_sectors)
        return err_set(err, EINVAL, "LUKS payload is overlapping with the header");
    if (h->mk_iterations == 0)
        return err_set(err, EINVAL, "LUKS key iteration count is zero");
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        const struct luks_slot *s1 = &h->slots[i];
        uint64_t start1 = s1->key_offset_sector;
        uint64_t len1 = splitkey_sectors(h->master_key_len, s1->stripes);

        if (s1->stripes != LUKS_STRIPES)
            return err_set(err, EINVAL, "Keyslot %d is corrupted (stripes %d != %d)", i,
                           (int)s1->stripes, (int)LUKS_STRIPES);
        if (s1->active != LUKS_SLOT_DISABLED && s1->active != LUKS_SLOT_ENABLED)
            return err_set(err, EINVAL, "Keyslot %d state (active/disable) is corrupted", i);
        if (s1->active == LUKS_SLOT_ENABLED && s1->iterations == 0)
            return err_set(err, EINVAL, "Keyslot %d iteration count is zero", i);
        if (start1 < hdr_sectors)
            return err_set(err, EINVAL, "Keyslot %d is overlapping with the LUKS header", i);
        if (start1 + len1 > h->payload_offset_sector)
            return err_set(err, EINVAL,
                           "Keyslot %d is overlapping with the encrypted payload", i);
        for (int j = i + 1; j < LUKS_NUM_SLOTS; j++) {
            const struct luks_slot *s2 = &h->slots[j];
            uint64_t start2 = s2->key_offset_sector;
            uint64_t len2 = splitkey_sectors(h->master_key_len, s2->stripes);
            if (start1 + len1 > start2 && start2 + len2 > start1)
                return err_set(err, EINVAL,
                               "Keyslots %d and %d are overlapping in the header", i, j);
        }
    }
    return 0;
}

void luks_header_encode(const struct luks_header *h, uint8_t out[LUKS_HEADER_SIZE])
{
    memset(out, 0, LUKS_HEADER_SIZE);
    memcpy(out + H_MAGIC, luks_magic, sizeof(luks_magic));
    put_be16(out + H_VERSION, h->version);
    memcpy(out + H_CIPHER_NAME, h->cipher_name, 32);
    memcpy(out + H_CIPHER_MODE, h->cipher_mode, 32);
    memcpy(out + H_HASH_SPEC, h->hash_spec, 32);
    put_be32(out + H_PAYLOAD, h->payload_offset_sector);
    put_be32(out + H_KEY_BYTES, h->master_key_len);
    memcpy(out + H_MK_DIGEST, h->mk_digest, LUKS_DIGEST_LEN);
    memcpy(out + H_MK_SALT, h->mk_salt, LUKS_SALT_LEN);
    put_be32(out + H_MK_ITERS, h->mk_iterations);
    memcpy(out + H_UUID, h->uuid, LUKS_UUID_LEN);
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        uint8_t *p = out + H_SLOTS + i * SLOT_SIZE;
        const struct luks_slot *s = &h->slots[i];
        put_be32(p, s->active);
        put_be32(p + 4, s->iterations);
        memcpy(p + 8, s->salt, LUKS_SALT_LEN);
        put_be32(p + 40, s->key_offset_sector);
        put_be32(p + 44, s->stripes);
    }
}

/* --- cipher spec --- */

/* LUKS cipher names and the qemu algorithms per key size. */
static const struct {
    const char *name;
    uint32_t key_bytes[3];
    enum crypto_cipher_alg alg[3];
} luks_ciphers[] = {
    { "aes", { 16, 24, 32 },
      { CRYPTO_CIPHER_AES_128, CRYPTO_CIPHER_AES_192, CRYPTO_CIPHER_AES_256 } },
    { "cast5", { 16, 0, 0 }, { CRYPTO_CIPHER_CAST5_128, 0, 0 } },
    { "serpent", { 16, 24, 32 },
      { CRYPTO_CIPHER_SERPENT_128, CRYPTO_CIPHER_SERPENT_192, CRYPTO_CIPHER_SERPENT_256 } },
    { "twofish", { 16, 24, 32 },
      { CRYPTO_CIPHER_TWOFISH_128, CRYPTO_CIPHER_TWOFISH_192, CRYPTO_CIPHER_TWOFISH_256 } },
};

static const char *luks_cipher_name(enum crypto_cipher_alg alg)
{
    for (size_t i = 0; i < sizeof(luks_ciphers) / sizeof(luks_ciphers[0]); i++)
        for (int j = 0; j < 3 && luks_ciphers[i].key_bytes[j]; j++)
            if (luks_ciphers[i].alg[j] == alg)
                return luks_ciphers[i].name;
    return NULL;
}

/* dm-crypt's ESSIV quirk: the ESSIV cipher takes the digest as its key,
 * so the cipher's size follows the hash (qemu's table). */
static int essiv_cipher(enum crypto_cipher_alg cipher, enum crypto_hash hash,
                        enum crypto_cipher_alg *out, struct err *err)
{
    size_t dlen = crypto_hash_len(hash);
    static const struct {
        enum crypto_cipher_alg first;
        const char *family;
    } fam[] = {
        { CRYPTO_CIPHER_AES_128, "AES" },
        { CRYPTO_CIPHER_SERPENT_128, "Serpent" },
        { CRYPTO_CIPHER_TWOFISH_128, "Twofish" },
    };

    if (dlen == crypto_cipher_key_len(cipher)) {
        *out = cipher;
        return 0;
    }
    for (size_t i = 0; i < sizeof(fam) / sizeof(fam[0]); i++) {
        if (cipher < fam[i].first || cipher > fam[i].first + 2)
            continue;
        for (int k = 0; k < 3; k++) {
            enum crypto_cipher_alg a = (enum crypto_cipher_alg)(fam[i].first + k);
            if (crypto_cipher_key_len(a) == dlen) {
                *out = a;
                return 0;
            }
        }
        return err_set(err, EINVAL, "No %s cipher with key size %zu available", fam[i].family,
                       dlen);
    }
    return err_set(err, EINVAL, "Cipher %s not supported with essiv",
                   crypto_cipher_alg_name(cipher));
}

static int parse_header(struct luks *l, struct err *err)
{
    char mode[33];
    char *ivgen_name, *ivhash_name;
    uint32_t key_bytes = l->h.master_key_len;
    int v;

    memcpy(mode, l->h.cipher_mode, 32);
    mode[32] = 0;
    ivgen_name = strchr(mode, '-');
    if (!ivgen_name)
        return err_set(err, EINVAL, "Unexpected cipher mode string format '%s'",
                       l->h.cipher_mode);
    *ivgen_name++ = 0;
    ivhash_name = strchr(ivgen_name, ':');
    if (ivhash_name) {
        *ivhash_name++ = 0;
        if ((v = crypto_hash_lookup(ivhash_name)) < 0)
            return err_set(err, EINVAL, "Hash algorithm '%s' not supported", ivhash_name);
        l->ivgen_hash_alg = (enum crypto_hash)v;
    }
    if ((v = crypto_cipher_mode_lookup(mode)) < 0)
        return err_set(err, EINVAL, "Cipher mode '%s' not supported", mode);
    l->cipher_mode = (enum crypto_cipher_mode)v;

    if (l->cipher_mode == CRYPTO_MODE_XTS)
        key_bytes /= 2;
    v = -1;
    for (size_t i = 0; v < 0 && i < sizeof(luks_ciphers) / sizeof(luks_ciphers[0]); i++) {
        if (strcmp(luks_ciphers[i].name, l->h.cipher_name))
            continue;
        for (int j = 0; j < 3 && luks_ciphers[i].key_bytes[j]; j++)
            if (luks_ciphers[i].key_bytes[j] == key_bytes)
                v = (int)luks_ciphers[i].alg[j];
    }
    if (v < 0)
        return err_set(err, EINVAL, "Algorithm '%s' with key size %d bytes not supported",
                       l->h.cipher_name, (int)key_bytes);
    l->cipher_alg = (enum crypto_cipher_alg)v;

    if ((v = crypto_hash_lookup(l->h.hash_spec)) < 0)
        return err_set(err, EINVAL, "Hash algorithm '%s' not supported", l->h.hash_spec);
    l->hash_alg = (enum crypto_hash)v;
    if ((v = crypto_ivgen_lookup(ivgen_name)) < 0)
        return err_set(err, EINVAL, "IV generator '%s' not supported", ivgen_name);
    l->ivgen_alg = (enum crypto_ivgen_alg)v;
    if (l->ivgen_alg == CRYPTO_IVGEN_ESSIV) {
        if (!ivhash_name)
            return err_set(err, EINVAL, "Missing IV generator hash specification");
        l->has_ivgen_hash = true;
        return essiv_cipher(l->cipher_alg, l->ivgen_hash_alg, &l->ivgen_cipher_alg, err);
    }
    /* dm-crypt ignores a hash given with plain/plain64, and so does qemu. */
    l->ivgen_cipher_alg = l->cipher_alg;
    return 0;
}

/* Cipher + IV generator for a key (the master key, or a slot key). */
static int make_cipher(const struct luks *l, const uint8_t *key, struct crypto_cipher **c,
                       struct crypto_ivgen **g, struct err *err)
{
    *c = crypto_cipher_new(l->cipher_alg, l->cipher_mode, key, l->h.master_key_len, err);
    if (!*c)
        return -EINVAL;
    *g = crypto_ivgen_new(l->ivgen_alg, l->ivgen_cipher_alg, l->ivgen_hash_alg, key,
                          l->h.master_key_len, err);
    if (!*g) {
        crypto_cipher_free(*c);
        *c = NULL;
        return -EINVAL;
    }
    return 0;
}

/* Try one slot: 1 unlocked (masterkey filled), 0 not this slot, <0 error. */
static int load_key(const struct luks *l, int idx, const char *password, uint8_t *masterkey,
                    luks_read_fn rd, void *opaque, struct err *err)
{
    const struct luks_slot *s = &l->h.slots[idx];
    size_t klen = l->h.master_key_len, splitlen = klen * s->stripes;
    uint8_t slotkey[64], digest[LUKS_DIGEST_LEN];
    uint8_t *split = NULL;
    struct crypto_cipher *c = NULL;
    struct crypto_ivgen *g = NULL;
    int r;

    if (s->active != LUKS_SLOT_ENABLED)
        return 0;
    split = malloc(splitlen);
    if (!split)
        return err_set(err, ENOMEM, "Out of memory");
    if ((r = crypto_pbkdf2(l->hash_alg, password, strlen(password), s->salt, LUKS_SALT_LEN,
                           s->iterations, slotkey, klen, err)) < 0)
        goto out;
    if ((r = rd(opaque, (uint64_t)s->key_offset_sector * LUKS_SECTOR_SIZE, split, splitlen,
                err)) < 0)
        goto out;
    if ((r = make_cipher(l, slotkey, &c, &g, err)) < 0)
        goto out;
    if ((r = crypto_sectors_crypt(c, g, false, 0, LUKS_SECTOR_SIZE, split, splitlen, err)) < 0)
        goto out;
    if ((r = crypto_afsplit_decode(l->hash_alg, klen, s->stripes, split, masterkey, err)) < 0)
        goto out;
    if ((r = crypto_pbkdf2(l->hash_alg, masterkey, klen, l->h.mk_salt, LUKS_SALT_LEN,
                           l->h.mk_iterations, digest, sizeof(digest), err)) < 0)
        goto out;
    r = !memcmp(digest, l->h.mk_digest, LUKS_DIGEST_LEN);
out:
    crypto_ivgen_free(g);
    crypto_cipher_free(c);
    memset(slotkey, 0, sizeof(slotkey));
    memset(split, 0, splitlen);
    free(split);
    return r;
}

static int find_key(const struct luks *l, const char *password, uint8_t *masterkey,
                    luks_read_fn rd, void *opaque, struct err *err)
{
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        int r = load_key(l, i, password, masterkey, rd, opaque, err);
        if (r < 0)
            return r;
        if (r == 1)
            return 0;
    }
    return err_set(err, EPERM, "Invalid password, cannot unlock any keyslot");
}

struct luks *luks_open(luks_read_fn rd, void *opaque, const char *password, bool no_io,
                       struct err *err)
{
    uint8_t buf[LUKS_HEADER_SIZE], mk[64];
    struct luks *l = calloc(1, sizeof(*l));

    if (!l) {
        err_set(err, ENOMEM, "Out of memory");
        return NULL;
    }
    if (rd(opaque, 0, buf, sizeof(buf), err) < 0 ||
        luks_header_decode(buf, sizeof(buf), &l->h, err) < 0 || parse_header(l, err) < 0)
        goto fail;
    if (!no_io) {
        if (find_key(l, password, mk, rd, opaque, err) < 0 ||
            make_cipher(l, mk, &l->cipher, &l->ivgen, err) < 0)
            goto fail;
    }
    memset(mk, 0, sizeof(mk));
    return l;
fail:
    memset(mk, 0, sizeof(mk));
    luks_free(l);
    return NULL;
}

void luks_free(struct luks *l)
{
    if (!l)
        return;
    crypto_cipher_free(l->cipher);
    crypto_ivgen_free(l->ivgen);
    free(l);
}

uint64_t luks_payload_offset(const struct luks *l)
{
    return (uint64_t)l->h.payload_offset_sector * LUKS_SECTOR_SIZE;
}

const struct luks_header *luks_get_header(const struct luks *l)
{
    return &l->h;
}

int luks_encrypt(const struct luks *l, uint64_t offset, uint8_t *buf, size_t len, struct err *err)
{
    if (!l->cipher)
        return err_set(err, EIO, "The volume was opened without its key");
    return crypto_sectors_crypt(l->cipher, l->ivgen, true, offset / LUKS_SECTOR_SIZE,
                                LUKS_SECTOR_SIZE, buf, len, err);
}

int luks_decrypt(const struct luks *l, uint64_t offset, uint8_t *buf, size_t len, struct err *err)
{
    if (!l->cipher)
        return err_set(err, EIO, "The volume was opened without its key");
    return crypto_sectors_crypt(l->cipher, l->ivgen, false, offset / LUKS_SECTOR_SIZE,
                                LUKS_SECTOR_SIZE, buf, len, err);
}

json_t *luks_info_json(const struct luks *l)
{
    json_t *o = json_object(), *slots = json_array();
    char uuid[LUKS_UUID_LEN + 1];

    json_object_set_new(o, "cipher-alg", json_string(crypto_cipher_alg_name(l->cipher_alg)));
    json_object_set_new(o, "cipher-mode", json_string(crypto_cipher_mode_name(l->cipher_mode)));
    json_object_set_new(o, "ivgen-alg", json_string(crypto_ivgen_name(l->ivgen_alg)));
    if (l->ivgen_alg == CRYPTO_IVGEN_ESSIV)
        json_object_set_new(o, "ivgen-hash-alg",
                            json_string(crypto_hash_name(l->ivgen_hash_alg)));
    json_object_set_new(o, "hash-alg", json_string(crypto_hash_name(l->hash_alg)));
    json_object_set_new(o, "payload-offset", json_integer((json_int_t)luks_payload_offset(l)));
    json_object_set_new(o, "master-key-iters", json_integer((json_int_t)l->h.mk_iterations));
    memcpy(uuid, l->h.uuid, LUKS_UUID_LEN);
    uuid[LUKS_UUID_LEN] = 0;
    json_object_set_new(o, "uuid", json_string_nocheck(uuid));
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        const struct luks_slot *s = &l->h.slots[i];
        json_t *so = json_object();
        bool active = s->active == LUKS_SLOT_ENABLED;
        json_object_set_new(so, "active", json_boolean(active));
        if (active) {
            json_object_set_new(so, "iters", json_integer((json_int_t)s->iterations));
            json_object_set_new(so, "stripes", json_integer((json_int_t)s->stripes));
        }
        json_object_set_new(so, "key-offset",
                            json_integer((json_int_t)((uint64_t)s->key_offset_sector *
                                                      LUKS_SECTOR_SIZE)));
        json_array_append_new(slots, so);
    }
    json_object_set_new(o, "slots", slots);
    return o;
}

/* --- create --- */

static const char *opt_get(const struct kvopts *opts, const char *prefix, const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), "%s%s", prefix, name);
    return kvopts_get(opts, key);
}

static int enum_opt(const struct kvopts *opts, const char *prefix, const char *name,
                    int (*lookup_fn)(const char *), int def, int *out, struct err *err)
{
    const char *v = opt_get(opts, prefix, name);

    if (!v) {
        *out = def;
        return 0;
    }
    if ((*out = lookup_fn(v)) < 0)
        return err_set(err, EINVAL, "Parameter '%s%s' does not accept value '%s'", prefix,
                       name, v);
    return 1;
}

int luks_create_opts_parse(const struct kvopts *opts, const char *prefix,
                           struct luks_create_opts *out, struct err *err)
{
    int v, r;
    const char *it;

    memset(out, 0, sizeof(*out));
    out->key_secret = opt_get(opts, prefix, "key-secret");
    /* QAPI member order of QCryptoBlockCreateOptionsLUKS. */
    if ((r = enum_opt(opts, prefix, "cipher-alg", crypto_cipher_alg_lookup,
                      CRYPTO_CIPHER_AES_256, &v, err)) < 0)
        return r;
    out->cipher_alg = (enum crypto_cipher_alg)v;
    if ((r = enum_opt(opts, prefix, "cipher-mode", crypto_cipher_mode_lookup, CRYPTO_MODE_XTS,
                      &v, err)) < 0)
        return r;
    out->cipher_mode = (enum crypto_cipher_mode)v;
    if ((r = enum_opt(opts, prefix, "ivgen-alg", crypto_ivgen_lookup, CRYPTO_IVGEN_PLAIN64,
                      &v, err)) < 0)
        return r;
    out->ivgen_alg = (enum crypto_ivgen_alg)v;
    if ((r = enum_opt(opts, prefix, "ivgen-hash-alg", crypto_hash_lookup, CRYPTO_HASH_SHA256,
                      &v, err)) < 0)
        return r;
    out->has_ivgen_hash_alg = r == 1 || out->ivgen_alg == CRYPTO_IVGEN_ESSIV;
    out->ivgen_hash_alg = (enum crypto_hash)v;
    if ((r = enum_opt(opts, prefix, "hash-alg", crypto_hash_lookup, CRYPTO_HASH_SHA256, &v,
                      err)) < 0)
        return r;
    out->hash_alg = (enum crypto_hash)v;
    out->iter_time = LUKS_DEFAULT_ITER_TIME;
    if ((it = opt_get(opts, prefix, "iter-time"))) {
        char name[64];
        snprintf(name, sizeof(name), "%siter-time", prefix);
        if ((r = kvopts_parse_number(name, it, &out->iter_time, err)) < 0)
            return r;
    }
    return 0;
}

static void uuid_generate(uint8_t out[LUKS_UUID_LEN], struct err *err)
{
    uint8_t u[16] = { 0 };
    char s[LUKS_UUID_LEN];

    crypto_random_bytes(u, sizeof(u), err);
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
    snprintf(s, sizeof(s),
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
             u[13], u[14], u[15]);
    memset(out, 0, LUKS_UUID_LEN);
    memcpy(out, s, strlen(s));
}

/* Scale a per-second benchmark to iter_time ms with qemu's checks. */
static int scale_iters(uint64_t per_sec, uint64_t iter_time, unsigned divisor, uint64_t floor,
                       uint32_t *out, struct err *err)
{
    uint64_t iters;

    if (ckd_mul(&iters, per_sec, iter_time))
        return err_set_errno(err, ERANGE, "PBKDF iterations %llu too large to scale",
                             (unsigned long long)per_sec);
    iters = iters / 1000 / divisor;
    if (iters > UINT32_MAX)
        return err_set_errno(err, ERANGE, "PBKDF iterations %llu larger than %u",
                             (unsigned long long)iters, UINT32_MAX);
    *out = (uint32_t)max_u64(iters, floor);
    return 0;
}

static int store_header(const struct luks *l, luks_write_fn wr, void *opaque, struct err *err)
{
    uint8_t buf[LUKS_HEADER_SIZE];
    luks_header_encode(&l->h, buf);
    return wr(opaque, 0, buf, sizeof(buf), err);
}

static int store_key(struct luks *l, int idx, const char *password, const uint8_t *masterkey,
                     uint64_t iter_time, luks_write_fn wr, void *opaque, struct err *err)
{
    struct luks_slot *s = &l->h.slots[idx];
    size_t klen = l->h.master_key_len, splitlen = klen * s->stripes;
    uint8_t slotkey[64];
    uint8_t *split = calloc(1, splitlen);
    struct crypto_cipher *c = NULL;
    struct crypto_ivgen *g = NULL;
    uint64_t per_sec;
    int r;

    if (!split)
        return err_set(err, ENOMEM, "Out of memory");
    if ((r = crypto_random_bytes(s->salt, LUKS_SALT_LEN, err)) < 0)
        goto out;
    per_sec = crypto_pbkdf2_count_iters(l->hash_alg, password, strlen(password), s->salt,
                                        LUKS_SALT_LEN, klen, err);
    if (!per_sec) {
        r = -EINVAL;
        goto out;
    }
    if ((r = scale_iters(per_sec, iter_time, 1, 1000, &s->iterations, err)) < 0)
        goto out;
    if ((r = crypto_pbkdf2(l->hash_alg, password, strlen(password), s->salt, LUKS_SALT_LEN,
                           s->iterations, slotkey, klen, err)) < 0)
        goto out;
    if ((r = make_cipher(l, slotkey, &c, &g, err)) < 0)
        goto out;
    if ((r = crypto_afsplit_encode(l->hash_alg, klen, s->stripes, masterkey, split, err)) < 0)
        goto out;
    if ((r = crypto_sectors_crypt(c, g, true, 0, LUKS_SECTOR_SIZE, split, splitlen, err)) < 0)
        goto out;
    if ((r = wr(opaque, (uint64_t)s->key_offset_sector * LUKS_SECTOR_SIZE, split, splitlen,
                err)) < 0)
        goto out;
    s->active = LUKS_SLOT_ENABLED;
    r = store_header(l, wr, opaque, err);
out:
    crypto_ivgen_free(g);
    crypto_cipher_free(c);
    memset(slotkey, 0, sizeof(slotkey));
    memset(split, 0, splitlen);
    free(split);
    return r;
}

struct luks *luks_create(const struct luks_create_opts *o, const char *prefix, luks_init_fn init,
                         luks_write_fn wr, void *opaque, struct err *err)
{
    struct luks *l = calloc(1, sizeof(*l));
    uint8_t mk[64];
    const char *password, *name;
    char spec[96];
    uint64_t per_sec, split_sectors;
    const uint32_t hdr_sectors = LUKS_KEY_SLOT_OFFSET / LUKS_SECTOR_SIZE;

    if (!l) {
        err_set(err, ENOMEM, "Out of memory");
        return NULL;
    }
    l->cipher_alg = o->cipher_alg;
    l->cipher_mode = o->cipher_mode;
    l->ivgen_alg = o->ivgen_alg;
    l->ivgen_hash_alg = o->ivgen_hash_alg;
    l->has_ivgen_hash = o->has_ivgen_hash_alg;
    l->hash_alg = o->hash_alg;
    if (!o->key_secret) {
        err_set(err, EINVAL, "Parameter '%skey-secret' is required for cipher",
                prefix ? prefix : "");
        goto fail;
    }
    if (!(password = secret_get(o->key_secret, NULL, err)))
        goto fail;
    l->h.version = 1;
    uuid_generate(l->h.uuid, err);
    if (!(name = luks_cipher_name(o->cipher_alg))) {
        err_set(err, EINVAL, "Algorithm '%s' not supported",
                crypto_cipher_alg_name(o->cipher_alg));
        goto fail;
    }
    if (o->has_ivgen_hash_alg)
        snprintf(spec, sizeof(spec), "%s-%s:%s", crypto_cipher_mode_name(o->cipher_mode),
                 crypto_ivgen_name(o->ivgen_alg), crypto_hash_name(o->ivgen_hash_alg));
    else
        snprintf(spec, sizeof(spec), "%s-%s", crypto_cipher_mode_name(o->cipher_mode),
                 crypto_ivgen_name(o->ivgen_alg));
    if (o->ivgen_alg == CRYPTO_IVGEN_ESSIV) {
        if (essiv_cipher(o->cipher_alg, o->ivgen_hash_alg, &l->ivgen_cipher_alg, err) < 0)
            goto fail;
    } else {
        l->ivgen_cipher_alg = o->cipher_alg;
    }
    /* Every name we produce fits; qemu's too-long checks never fire. */
    memcpy(l->h.cipher_name, name, strlen(name) + 1);
    memcpy(l->h.cipher_mode, spec, strnlen(spec, sizeof(l->h.cipher_mode) - 1));
    memcpy(l->h.hash_spec, crypto_hash_name(o->hash_alg), strlen(crypto_hash_name(o->hash_alg)) + 1);
    l->h.master_key_len = (uint32_t)crypto_cipher_key_len(o->cipher_alg);
    if (o->cipher_mode == CRYPTO_MODE_XTS)
        l->h.master_key_len *= 2;
    if (crypto_random_bytes(l->h.mk_salt, LUKS_SALT_LEN, err) < 0 ||
        crypto_random_bytes(mk, l->h.master_key_len, err) < 0)
        goto fail;
    /* The payload cipher first: it reports unusable algorithm/mode pairs. */
    if (make_cipher(l, mk, &l->cipher, &l->ivgen, err) < 0)
        goto fail;
    per_sec = crypto_pbkdf2_count_iters(o->hash_alg, mk, l->h.master_key_len, l->h.mk_salt,
                                        LUKS_SALT_LEN, LUKS_DIGEST_LEN, err);
    if (!per_sec)
        goto fail;
    /* cryptsetup's /8: all eight slots together cost about iter-time. */
    if (scale_iters(per_sec, o->iter_time, 8, 1000, &l->h.mk_iterations, err) < 0)
        goto fail;
    if (crypto_pbkdf2(o->hash_alg, mk, l->h.master_key_len, l->h.mk_salt, LUKS_SALT_LEN,
                      l->h.mk_iterations, l->h.mk_digest, LUKS_DIGEST_LEN, err) < 0)
        goto fail;
    split_sectors = splitkey_sectors(l->h.master_key_len, LUKS_STRIPES);
    for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
        l->h.slots[i].active = LUKS_SLOT_DISABLED;
        l->h.slots[i].key_offset_sector = hdr_sectors + (uint32_t)(i * split_sectors);
        l->h.slots[i].stripes = LUKS_STRIPES;
    }
    l->h.payload_offset_sector = hdr_sectors + (uint32_t)(LUKS_NUM_SLOTS * split_sectors);
    if (init(opaque, luks_payload_offset(l), err) < 0)
        goto fail;
    if (store_key(l, 0, password, mk, o->iter_time, wr, opaque, err) < 0)
        goto fail;
    memset(mk, 0, sizeof(mk));
    return l;
fail:
    memset(mk, 0, sizeof(mk));
    luks_free(l);
    return NULL;
}

struct dry_run {
    uint64_t len;
};

static int dry_init(void *opaque, uint64_t header_len, struct err *err)
{
    (void)err;
    ((struct dry_run *)opaque)->len = header_len;
    return 0;
}

static int dry_write(void *opaque, uint64_t off, const void *buf, size_t len, struct err *err)
{
    (void)opaque; (void)off; (void)buf; (void)len; (void)err;
    return 0;
}

int luks_payload_size(const struct luks_create_opts *o, const char *prefix, uint64_t *len,
                      struct err *err)
{
    struct dry_run d = { 0 };
    struct luks *l = luks_create(o, prefix, dry_init, dry_write, &d, err);

    if (!l)
        return -EINVAL;
    luks_free(l);
    *len = d.len;
    return 0;
}

/* --- amend --- */

static bool slot_active(const struct luks *l, int i)
{
    return l->h.slots[i].active == LUKS_SLOT_ENABLED;
}

static int count_active(const struct luks *l)
{
    int n = 0;
    for (int i = 0; i < LUKS_NUM_SLOTS; i++)
        n += slot_active(l, i);
    return n;
}

static int erase_key(struct luks *l, int idx, luks_write_fn wr, void *opaque, struct err *err)
{
    struct luks_slot *s = &l->h.slots[idx];
    size_t splitlen = (size_t)l->h.master_key_len * s->stripes;
    uint8_t *garbage = calloc(1, splitlen ? splitlen : 1);
    struct err e2;
    int r, ret;

    if (!garbage)
        return err_set(err, ENOMEM, "Out of memory");
    memset(s->salt, 0, LUKS_SALT_LEN);
    s->iterations = 0;
    s->active = LUKS_SLOT_DISABLED;
    err_init(&e2);
    ret = store_header(l, wr, opaque, &e2);
    /* Overwrite the key material even when the header update failed. */
    for (int i = 0; i < 40; i++) {
        struct err e3;
        err_init(&e3);
        if (crypto_random_bytes(garbage, splitlen, &e3) < 0 && i > 0) {
            ret = -EIO;
            err_propagate(&e2, &e3);
            break;
        }
        if ((r = wr(opaque, (uint64_t)s->key_offset_sector * LUKS_SECTOR_SIZE, garbage,
                    splitlen, &e3)) < 0) {
            ret = r;
            err_propagate(&e2, &e3);
            break;
        }
    }
    free(garbage);
    if (ret < 0)
        err_propagate(err, &e2);
    return ret < 0 ? ret : 0;
}

static int amend_add(struct luks *l, luks_read_fn rd, luks_write_fn wr, void *opaque,
                     const struct luks_amend_opts *o, const char *open_secret, bool force,
                     struct err *err)
{
    uint64_t iter_time = o->has_iter_time ? o->iter_time : LUKS_DEFAULT_ITER_TIME;
    const char *secret = o->secret ? o->secret : open_secret;
    const char *old_pw, *new_pw;
    uint8_t mk[64];
    int slot = -1, r;

    if (!o->new_secret)
        return err_set(err, EINVAL, "'new-secret' is required to activate a keyslot");
    if (o->old_secret)
        return err_set(err, EINVAL, "'old-secret' must not be given when activating keyslots");
    if (o->has_keyslot) {
        if (o->keyslot < 0 || o->keyslot >= LUKS_NUM_SLOTS)
            return err_set(err, EINVAL, "Invalid keyslot %u specified, must be between 0 and %u",
                           (unsigned)o->keyslot, LUKS_NUM_SLOTS - 1);
        slot = (int)o->keyslot;
    } else {
        for (int i = 0; i < LUKS_NUM_SLOTS && slot < 0; i++)
            if (!slot_active(l, i))
                slot = i;
        if (slot < 0)
            return err_set(err, ENOSPC, "Can't add a keyslot - all keyslots are in use");
    }
    if (!force && slot_active(l, slot))
        return err_set(err, EINVAL, "Refusing to overwrite active keyslot %i - please erase it first",
                       slot);
    if (!secret)
        return err_set(err, EINVAL, "No secret with id '%s'", "");
    if (!(old_pw = secret_get(secret, NULL, err)))
        return -EINVAL;
    if ((r = find_key(l, old_pw, mk, rd, opaque, err)) < 0)
        goto out;
    if (!(new_pw = secret_get(o->new_secret, NULL, err))) {
        r = -EINVAL;
        goto out;
    }
    r = store_key(l, slot, new_pw, mk, iter_time, wr, opaque, err);
out:
    memset(mk, 0, sizeof(mk));
    return r;
}

static int amend_erase(struct luks *l, luks_read_fn rd, luks_write_fn wr, void *opaque,
                       const struct luks_amend_opts *o, bool force, struct err *err)
{
    const char *old_pw = NULL;
    uint8_t tmp[64];
    int r;

    if (o->new_secret)
        return err_set(err, EINVAL, "'new-secret' must not be given when erasing keyslots");
    if (o->has_iter_time)
        return err_set(err, EINVAL, "'iter-time' must not be given when erasing keyslots");
    if (o->secret)
        return err_set(err, EINVAL, "'secret' must not be given when erasing keyslots");
    if (o->old_secret && !(old_pw = secret_get(o->old_secret, NULL, err)))
        return -EINVAL;
    if (o->has_keyslot) {
        int slot = (int)o->keyslot;
        if (o->keyslot < 0 || o->keyslot >= LUKS_NUM_SLOTS)
            return err_set(err, EINVAL, "Invalid keyslot %i specified, must be between 0 and %i",
                           (int)o->keyslot, LUKS_NUM_SLOTS - 1);
        if (old_pw) {
            r = load_key(l, slot, old_pw, tmp, rd, opaque, err);
            memset(tmp, 0, sizeof(tmp));
            if (r < 0)
                return r;
            if (r == 0)
                return err_set(err, EINVAL, "Given keyslot %i doesn't contain the given old "
                               "password for erase operation", slot);
        }
        if (!force && !slot_active(l, slot))
            return err_set(err, EINVAL, "Given keyslot %i is already erased (inactive) ", slot);
        if (!force && count_active(l) == 1)
            return err_set(err, EINVAL, "Attempt to erase the only active keyslot %i which will "
                           "erase all the data in the image irreversibly - refusing operation",
                           slot);
        return erase_key(l, slot, wr, opaque, err);
    }
    if (old_pw) {
        bool match[LUKS_NUM_SLOTS] = { false };
        int n = 0;
        for (int i = 0; i < LUKS_NUM_SLOTS; i++) {
            r = load_key(l, i, old_pw, tmp, rd, opaque, err);
            memset(tmp, 0, sizeof(tmp));
            if (r < 0)
                return r;
            match[i] = r == 1;
            n += match[i];
        }
        if (n == 0)
            return err_set(err, EINVAL,
                           "No keyslots match given (old) password for erase operation");
        if (!force && n == count_active(l))
            return err_set(err, EINVAL, "All the active keyslots match the (old) password that "
                           "was given and erasing them will erase all the data in the image "
                           "irreversibly - refusing operation");
        for (int i = 0; i < LUKS_NUM_SLOTS; i++)
            if (match[i] && (r = erase_key(l, i, wr, opaque, err)) < 0)
                return r;
        return 0;
    }
    return err_set(err, EINVAL, "To erase keyslot(s), either explicit keyslot index or the "
                   "password currently contained in them must be given");
}

int luks_amend(struct luks *l, luks_read_fn rd, luks_write_fn wr, void *opaque,
               const struct luks_amend_opts *o, const char *open_secret, bool force,
               struct err *err)
{
    if (o->active)
        return amend_add(l, rd, wr, opaque, o, open_secret, force, err);
    return amend_erase(l, rd, wr, opaque, o, force, err);
}
