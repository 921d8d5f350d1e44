/* The block ciphers qemu 7.2 offers for LUKS beyond AES: known-answer
 * vectors for Twofish (the Twofish paper's ECB tables), Serpent (libgcrypt's
 * serpent.c vectors, as qemu's tests use them) and CAST5 (RFC 2144 B.1);
 * then each mode and IV generator built on them (XTS per IEEE 1619, CBC,
 * CTR, plain / plain64 / essiv) against libnettle's own XTS, CBC and CTR
 * helpers as a second oracle. Without nettle, Serpent and Twofish must be
 * refused with qemu's message. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "crypto/crypto.h"
#include "tap.h"
#include "util/endian.h"

#ifdef HAVE_NETTLE
#include <nettle/cbc.h>
#include <nettle/ctr.h>
#include <nettle/serpent.h>
#include <nettle/twofish.h>
#include <nettle/xts.h>
#endif

static const struct {
    enum crypto_cipher_alg alg;
    const char *key, *pt, *ct, *src;
} kat[] = {
    /* Twofish paper, ecb_ival.txt (zero plaintext) and ecb_tbl.txt. */
    { CRYPTO_CIPHER_TWOFISH_128, "00000000000000000000000000000000",
      "00000000000000000000000000000000", "9f589f5cf6122c32b6bfec2f2ae8c35a", "twofish ival" },
    { CRYPTO_CIPHER_TWOFISH_192, "0123456789abcdeffedcba98765432100011223344556677",
      "00000000000000000000000000000000", "cfd1d2e5a9be9cdf501f13b892bd2248", "twofish ival" },
    { CRYPTO_CIPHER_TWOFISH_256,
      "0123456789abcdeffedcba987654321000112233445566778899aabbccddeeff",
      "00000000000000000000000000000000", "37527be0052334b89f0cfccae87cfa20", "twofish ival" },
    { CRYPTO_CIPHER_TWOFISH_128, "d491db16e7b1c39e86cb086b789f5419",
      "019f9809de1711858faac3a3ba20fbc3", "6363977de839486297e661c6c9d668eb", "twofish tbl" },
    { CRYPTO_CIPHER_TWOFISH_192, "88b2b2706b105e36b446bb6d731a1e88efa71f788965bd44",
      "39da69d6ba4997d585b6dc073ca341b2", "182b02d81497ea45f9daacdc29193a65", "twofish tbl" },
    { CRYPTO_CIPHER_TWOFISH_256,
      "d43bb7556ea32e46f2a282b7d45b4e0d57ff739d4dc92c1bd7fc01700cc8216f",
      "90afe91bb288544f2c32dc239b2635e6", "6cb4561c40bf0a9705931cb6d408e7fa", "twofish tbl" },
    /* libgcrypt serpent.c */
    { CRYPTO_CIPHER_SERPENT_128, "00000000000000000000000000000000",
      "d29d576fcea3a3a7ed9099f29273d78e", "b2288b968ae8b08648d1ce9606fd992d", "libgcrypt" },
    { CRYPTO_CIPHER_SERPENT_192, "000000000000000000000000000000000000000000000000",
      "d29d576fceaba3a7ed9899f2927bd78e", "130e353e1037c22405e8faefb2c3c3e9", "libgcrypt" },
    { CRYPTO_CIPHER_SERPENT_256,
      "0000000000000000000000000000000000000000000000000000000000000000",
      "d095576fcea3e3a7ed98d9f29073d78e", "b90ee5862de69168f2bdd5125b45472b", "libgcrypt a" },
    { CRYPTO_CIPHER_SERPENT_256,
      "0000000000000000000000000000000000000000000000000000000000000000",
      "00000000010000000200000003000000", "2061a42782bd52ec691ec383b03ba77c", "libgcrypt b" },
    /* RFC 2144 B.1, 128-bit key */
    { CRYPTO_CIPHER_CAST5_128, "0123456712345678234567893456789a", "0123456789abcdef",
      "238b4fe5847e44b2", "rfc2144" },
};

/* Without nettle, Serpent and Twofish are refused as qemu refuses an
 * algorithm its backend lacks; CAST5 still comes from OpenSSL. */
static void test_kat(void)
{
    for (size_t i = 0; i < sizeof(kat) / sizeof(kat[0]); i++) {
        uint8_t key[32], pt[16], ct[16], buf[16];
        size_t nk = unhex(kat[i].key, key, sizeof(key));
        size_t n = unhex(kat[i].pt, pt, sizeof(pt));
        unhex(kat[i].ct, ct, sizeof(ct));
        const char *name = crypto_cipher_alg_name(kat[i].alg);
        struct err e;
        err_init(&e);
        struct crypto_cipher *c = crypto_cipher_new(kat[i].alg, CRYPTO_MODE_ECB, key, nk, &e);
#ifndef HAVE_NETTLE
        if (kat[i].alg != CRYPTO_CIPHER_CAST5_128) {
            char want[64];
            snprintf(want, sizeof(want), "Unsupported cipher algorithm %s", name);
            ok(!c && !strcmp(e.msg, want), "%s refused without nettle", name);
            continue;
        }
#endif
        ok(c != NULL, "%s ecb key (%s)%s%s", name, kat[i].src, c ? "" : ": ", c ? "" : e.msg);
        if (!c)
            continue;
        memcpy(buf, pt, n);
        ok(crypto_sectors_crypt(c, NULL, true, 0, n, buf, n, NULL) == 0 && !memcmp(buf, ct, n),
           "%s encrypt (%s)", name, kat[i].src);
        ok(crypto_sectors_crypt(c, NULL, false, 0, n, buf, n, NULL) == 0 && !memcmp(buf, pt, n),
           "%s decrypt (%s)", name, kat[i].src);
        crypto_cipher_free(c);
    }
}

#ifdef HAVE_NETTLE
/* nettle's block functions as its mode helpers take them. */
union nkey {
    struct serpent_ctx serpent;
    struct twofish_ctx twofish;
};

static void nkey_set(enum crypto_cipher_alg alg, union nkey *k, const uint8_t *key, size_t n,
                     nettle_cipher_func **enc, nettle_cipher_func **dec)
{
    if (alg >= CRYPTO_CIPHER_TWOFISH_128) {
        twofish_set_key(&k->twofish, n, key);
        *enc = (nettle_cipher_func *)twofish_encrypt;
        *dec = (nettle_cipher_func *)twofish_decrypt;
    } else {
        serpent_set_key(&k->serpent, n, key);
        *enc = (nettle_cipher_func *)serpent_encrypt;
        *dec = (nettle_cipher_func *)serpent_decrypt;
    }
}

enum { SECTORS = 6, SECTOR = 512 };

/* Ours over SECTORS sectors from `first` against nettle sector by sector. */
static void mode_check(enum crypto_cipher_alg alg, enum crypto_cipher_mode mode,
                       enum crypto_ivgen_alg ivg, enum crypto_hash hash, uint64_t first)
{
    size_t kl = crypto_cipher_key_len(alg), nkey = mode == CRYPTO_MODE_XTS ? 2 * kl : kl;
    uint8_t key[64], data[SECTORS * SECTOR], mine[SECTORS * SECTOR], ref[SECTORS * SECTOR];
    union nkey k1, k2, ke;
    nettle_cipher_func *enc, *dec, *eenc = NULL, *edec;
    char name[96];

    snprintf(name, sizeof(name), "%s-%s-%s%s%s from %llu", crypto_cipher_alg_name(alg),
             crypto_cipher_mode_name(mode), crypto_ivgen_name(ivg),
             ivg == CRYPTO_IVGEN_ESSIV ? ":" : "", ivg == CRYPTO_IVGEN_ESSIV ?
             crypto_hash_name(hash) : "", (unsigned long long)first);
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(i * 11 + alg);
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + (i >> 9));
    nkey_set(alg, &k1, key, kl, &enc, &dec);
    if (mode == CRYPTO_MODE_XTS)
        nkey_set(alg, &k2, key + kl, kl, &enc, &dec);
    if (ivg == CRYPTO_IVGEN_ESSIV) {
        /* dm-crypt: the ESSIV key is hash(key), the cipher sized to it. */
        uint8_t salt[64];
        crypto_hash2(hash, key, nkey, "", 0, salt, NULL);
        nkey_set(alg, &ke, salt, crypto_hash_len(hash), &eenc, &edec);
    }
    for (int s = 0; s < SECTORS; s++) {
        uint8_t iv[16] = { 0 };
        uint64_t sector = first + (uint64_t)s;
        uint8_t *in = data + s * SECTOR, *out = ref + s * SECTOR;
        if (ivg == CRYPTO_IVGEN_PLAIN)
            put_le32(iv, (uint32_t)sector);
        else
            put_le64(iv, sector);
        if (ivg == CRYPTO_IVGEN_ESSIV)
            eenc(&ke, 16, iv, iv);
        if (mode == CRYPTO_MODE_XTS) {
            xts_encrypt_message(&k1, &k2, enc, iv, SECTOR, out, in);
        } else if (mode == CRYPTO_MODE_CBC) {
            cbc_encrypt(&k1, enc, 16, iv, SECTOR, out, in);
        } else if (mode == CRYPTO_MODE_CTR) {
            ctr_crypt(&k1, enc, 16, iv, SECTOR, out, in);
        } else {
            enc(&k1, SECTOR, out, in);
        }
    }
    struct err e;
    err_init(&e);
    struct crypto_cipher *c = crypto_cipher_new(alg, mode, key, nkey, &e);
    /* the caller (luks.c) sizes the ESSIV cipher to the digest: the
     * 256-bit family member for sha256 */
    enum crypto_cipher_alg ealg = ivg != CRYPTO_IVGEN_ESSIV ? alg :
        alg >= CRYPTO_CIPHER_TWOFISH_128 ? CRYPTO_CIPHER_TWOFISH_256 : CRYPTO_CIPHER_SERPENT_256;
    struct crypto_ivgen *g = c ? crypto_ivgen_new(ivg, ealg, hash, key, nkey, &e) : NULL;
    memcpy(mine, data, sizeof(data));
    ok(c && g && crypto_sectors_crypt(c, g, true, first, SECTOR, mine, sizeof(mine), &e) == 0 &&
       !memcmp(mine, ref, sizeof(ref)), "%s encrypts as nettle%s%s", name, e.set ? ": " : "",
       e.msg);
    ok(c && g && crypto_sectors_crypt(c, g, false, first, SECTOR, mine, sizeof(mine), NULL) == 0 &&
       !memcmp(mine, data, sizeof(data)), "%s decrypts back", name);
    crypto_ivgen_free(g);
    crypto_cipher_free(c);
}

static void test_modes(void)
{
    static const enum crypto_cipher_alg algs[] = {
        CRYPTO_CIPHER_SERPENT_128, CRYPTO_CIPHER_SERPENT_192, CRYPTO_CIPHER_SERPENT_256,
        CRYPTO_CIPHER_TWOFISH_128, CRYPTO_CIPHER_TWOFISH_192, CRYPTO_CIPHER_TWOFISH_256,
    };
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        enum crypto_cipher_alg a = algs[i];
        mode_check(a, CRYPTO_MODE_XTS, CRYPTO_IVGEN_PLAIN64, CRYPTO_HASH_SHA256, 0);
        /* plain wraps at 2^32 where plain64 does not */
        mode_check(a, CRYPTO_MODE_XTS, CRYPTO_IVGEN_PLAIN, CRYPTO_HASH_SHA256, 0xfffffffdull);
        mode_check(a, CRYPTO_MODE_XTS, CRYPTO_IVGEN_PLAIN64, CRYPTO_HASH_SHA256, 0xfffffffdull);
        mode_check(a, CRYPTO_MODE_CBC, CRYPTO_IVGEN_PLAIN64, CRYPTO_HASH_SHA256, 7);
        mode_check(a, CRYPTO_MODE_CBC, CRYPTO_IVGEN_ESSIV, CRYPTO_HASH_SHA256, 7);
        mode_check(a, CRYPTO_MODE_ECB, CRYPTO_IVGEN_PLAIN64, CRYPTO_HASH_SHA256, 0);
        mode_check(a, CRYPTO_MODE_CTR, CRYPTO_IVGEN_PLAIN64, CRYPTO_HASH_SHA256, 3);
    }
    /* ESSIV picks the family member whose key fits the digest. */
    mode_check(CRYPTO_CIPHER_SERPENT_256, CRYPTO_MODE_XTS, CRYPTO_IVGEN_ESSIV, CRYPTO_HASH_SHA256, 9);
    mode_check(CRYPTO_CIPHER_TWOFISH_128, CRYPTO_MODE_CBC, CRYPTO_IVGEN_ESSIV, CRYPTO_HASH_SHA256, 9);
}

static void test_cast5_modes(void)
{
    /* CAST5 CBC over two sectors, chained by hand from its ECB form. */
    uint8_t key[16], data[1024], mine[1024], ref[1024];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)(0xa0 + i);
    for (int i = 0; i < 1024; i++)
        data[i] = (uint8_t)(i * 3);
    struct crypto_cipher *ecb = crypto_cipher_new(CRYPTO_CIPHER_CAST5_128, CRYPTO_MODE_ECB, key,
                                                  16, NULL);
    struct crypto_cipher *cbc = crypto_cipher_new(CRYPTO_CIPHER_CAST5_128, CRYPTO_MODE_CBC, key,
                                                  16, NULL);
    struct crypto_ivgen *g = crypto_ivgen_new(CRYPTO_IVGEN_PLAIN64, CRYPTO_CIPHER_CAST5_128,
                                              CRYPTO_HASH_SHA256, key, 16, NULL);
    bool good = ecb && cbc && g;
    for (int s = 0; good && s < 2; s++) {
        uint8_t prev[8] = { 0 };
        put_le64(prev, 40 + (uint64_t)s);
        for (int b = 0; b < 512; b += 8) {
            uint8_t *o = ref + s * 512 + b;
            for (int i = 0; i < 8; i++)
                o[i] = data[s * 512 + b + i] ^ prev[i];
            good = good && crypto_sectors_crypt(ecb, NULL, true, 0, 8, o, 8, NULL) == 0;
            memcpy(prev, o, 8);
        }
    }
    memcpy(mine, data, sizeof(data));
    ok(good && crypto_sectors_crypt(cbc, g, true, 40, 512, mine, sizeof(mine), NULL) == 0 &&
       !memcmp(mine, ref, sizeof(ref)), "cast5-128 cbc-plain64 chains its ECB");
    struct err e;
    err_init(&e);
    ok(!crypto_cipher_new(CRYPTO_CIPHER_CAST5_128, CRYPTO_MODE_XTS, data, 32, &e) &&
       !strcmp(e.msg, "Unsupported cipher mode xts"), "cast5-128 xts refused as qemu does");
    crypto_ivgen_free(g);
    crypto_cipher_free(cbc);
    crypto_cipher_free(ecb);
}
#endif

static void test_key_lengths(void)
{
    uint8_t key[64] = { 0 };
    struct err e;
    err_init(&e);
    ok(!crypto_cipher_new(CRYPTO_CIPHER_TWOFISH_256, CRYPTO_MODE_XTS, key, 32, &e) &&
       !strcmp(e.msg, "Cipher key length 32 should be 64"), "twofish-256 xts wants 64 bytes");
    err_init(&e);
    ok(!crypto_cipher_new(CRYPTO_CIPHER_SERPENT_128, CRYPTO_MODE_CBC, key, 15, &e) &&
       !strcmp(e.msg, "Cipher key length 15 should be 16"), "serpent-128 wants 16 bytes");
}

int main(void)
{
    test_kat();
#ifdef HAVE_NETTLE
    test_modes();
    test_cast5_modes();
#endif
    test_key_lengths();
    return done_testing();
}
