/* Block-encryption primitives over OpenSSL libcrypto (and libnettle for
 * Serpent and Twofish, when built with it), with qemu 7.2's
 * algorithm names and semantics (qapi/crypto.json enums): hashes, PBKDF2
 * with qemu's iteration benchmark, block ciphers in ECB/CBC/XTS/CTR used
 * sector by sector with an IV generator (plain, plain64, essiv), the
 * anti-forensic splitter of LUKS1, and random bytes.
 *
 * Everything here is reentrant: a struct crypto_cipher / crypto_ivgen only
 * holds keys; each crypto_sectors_crypt() call builds its own OpenSSL
 * contexts, so several threads may encrypt with one key at once. */
#ifndef QIMG_CRYPTO_CRYPTO_H
#define QIMG_CRYPTO_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* qapi QCryptoHashAlgorithm, in qemu's order. */
enum crypto_hash {
    CRYPTO_HASH_MD5, CRYPTO_HASH_SHA1, CRYPTO_HASH_SHA224, CRYPTO_HASH_SHA256,
    CRYPTO_HASH_SHA384, CRYPTO_HASH_SHA512, CRYPTO_HASH_RIPEMD160, CRYPTO_HASH__MAX,
};

/* qapi QCryptoCipherAlgorithm, in qemu's order. */
enum crypto_cipher_alg {
    CRYPTO_CIPHER_AES_128, CRYPTO_CIPHER_AES_192, CRYPTO_CIPHER_AES_256,
    CRYPTO_CIPHER_DES, CRYPTO_CIPHER_3DES, CRYPTO_CIPHER_CAST5_128,
    CRYPTO_CIPHER_SERPENT_128, CRYPTO_CIPHER_SERPENT_192, CRYPTO_CIPHER_SERPENT_256,
    CRYPTO_CIPHER_TWOFISH_128, CRYPTO_CIPHER_TWOFISH_192, CRYPTO_CIPHER_TWOFISH_256,
    CRYPTO_CIPHER__MAX,
};

/* qapi QCryptoCipherMode. */
enum crypto_cipher_mode {
    CRYPTO_MODE_ECB, CRYPTO_MODE_CBC, CRYPTO_MODE_XTS, CRYPTO_MODE_CTR, CRYPTO_MODE__MAX,
};

/* qapi QCryptoIVGenAlgorithm. */
enum crypto_ivgen_alg {
    CRYPTO_IVGEN_PLAIN, CRYPTO_IVGEN_PLAIN64, CRYPTO_IVGEN_ESSIV, CRYPTO_IVGEN__MAX,
};

/* Names as qemu prints and parses them; lookups return -1 when unknown. */
const char *crypto_hash_name(enum crypto_hash h);
int crypto_hash_lookup(const char *name);
const char *crypto_cipher_alg_name(enum crypto_cipher_alg a);
int crypto_cipher_alg_lookup(const char *name);
const char *crypto_cipher_mode_name(enum crypto_cipher_mode m);
int crypto_cipher_mode_lookup(const char *name);
const char *crypto_ivgen_name(enum crypto_ivgen_alg g);
int crypto_ivgen_lookup(const char *name);

size_t crypto_hash_len(enum crypto_hash h);
size_t crypto_cipher_key_len(enum crypto_cipher_alg a);
size_t crypto_cipher_block_len(enum crypto_cipher_alg a);
/* qcrypto_cipher_get_iv_len: 0 for ECB, the block length otherwise. */
size_t crypto_cipher_iv_len(enum crypto_cipher_alg a, enum crypto_cipher_mode m);

/* out = hash(a || b); out holds crypto_hash_len(h) bytes. */
int crypto_hash2(enum crypto_hash h, const void *a, size_t alen, const void *b, size_t blen,
                 uint8_t *out, struct err *err);

int crypto_random_bytes(void *buf, size_t len, struct err *err);

/* PBKDF2-HMAC (RFC 2898 / RFC 6070). */
int crypto_pbkdf2(enum crypto_hash h, const void *key, size_t nkey, const uint8_t *salt,
                  size_t nsalt, uint64_t iterations, uint8_t *out, size_t nout,
                  struct err *err);
/* qemu's qcrypto_pbkdf2_count_iters: iterations per second of this
 * thread's CPU time, measured over a run of at least half a second.
 * Returns 0 with a message on failure. */
uint64_t crypto_pbkdf2_count_iters(enum crypto_hash h, const void *key, size_t nkey,
                                   const uint8_t *salt, size_t nsalt, size_t nout,
                                   struct err *err);
/* Tests only: make crypto_pbkdf2_count_iters() answer per_sec at once
 * (0 restores the benchmark). The environment variable
 * QIMG_TEST_PBKDF_RATE=<per second> does the same for a whole run (the
 * interop scenarios that create dozens of LUKS images use it). */
void crypto_pbkdf2_set_fixed_rate(uint64_t per_sec);
/* Fuzz targets only (qimg never calls it): bound what hostile LUKS headers
 * cost. From then on crypto_pbkdf2() refuses more than max_per_call
 * iterations, answers repeated derivations from a small memo (PBKDF2 is a
 * pure function; the targets open one image many times) and refuses work
 * once budget iterations have been computed; each call re-arms the budget. */
void crypto_pbkdf2_set_fuzz_limits(uint64_t max_per_call, uint64_t budget);

/* A keyed cipher. XTS keys are two keys back to back (data key, tweak key). */
struct crypto_cipher;
struct crypto_cipher *crypto_cipher_new(enum crypto_cipher_alg alg, enum crypto_cipher_mode mode,
                                        const uint8_t *key, size_t nkey, struct err *err);
void crypto_cipher_free(struct crypto_cipher *c);

/* An IV generator; essiv keys its own ECB cipher (cipher_alg) with
 * hash(key). */
struct crypto_ivgen;
struct crypto_ivgen *crypto_ivgen_new(enum crypto_ivgen_alg alg, enum crypto_cipher_alg cipher_alg,
                                      enum crypto_hash hash, const uint8_t *key, size_t nkey,
                                      struct err *err);
void crypto_ivgen_free(struct crypto_ivgen *g);

/* Encrypt or decrypt buf in place, sector by sector: sector i of the
 * buffer uses the IV of start_sector + i. len need not be a multiple of
 * sector_size (the last chunk is shorter) but must be one of the block
 * length. ivgen may be NULL for ECB. */
int crypto_sectors_crypt(const struct crypto_cipher *c, const struct crypto_ivgen *ivgen,
                         bool encrypt, uint64_t start_sector, size_t sector_size,
                         uint8_t *buf, size_t len, struct err *err);

/* LUKS1 anti-forensic split (cryptsetup "AF-splitter", hash diffusion with
 * a big-endian block counter): out/in hold blocklen * stripes bytes. */
int crypto_afsplit_encode(enum crypto_hash h, size_t blocklen, uint32_t stripes,
                          const uint8_t *in, uint8_t *out, struct err *err);
int crypto_afsplit_decode(enum crypto_hash h, size_t blocklen, uint32_t stripes,
                          const uint8_t *in, uint8_t *out, struct err *err);

#endif
