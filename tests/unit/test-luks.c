/* LUKS1 and its primitives: PBKDF2 (RFC 6070 vectors), XTS-AES
 * (IEEE 1619-2007 vectors and OpenSSL's own XTS as a second oracle), the
 * AF splitter round trip, decoding a header made by qemu-img 7.2, hostile
 * header fields, and a full create / unlock / encrypt cycle in memory. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "crypto/crypto.h"
#include "crypto/luks.h"
#include "tap.h"
#include "util/endian.h"
#include "util/secret.h"
#include "util/xalloc.h"

/* First 592 bytes of `qemu-img create -f luks -o key-secret=s,iter-time=10`. */
static const char *const qemu_header =
    "4c554b53babe000161657300000000000000000000000000000000000000000000000000000000007874732d706c6169"
    "6e3634000000000000000000000000000000000000000000736861323536000000000000000000000000000000000000"
    "000000000000000000000fc800000040f014e8dc6c1160f2e44b178f68dea7b01bbc5375db91b322319dea40c1f20c83"
    "ebe027a519b9b1fdeb3278b97062cdc1a9fdc6c90000239936633563346332322d366335382d343434342d386134342d"
    "3261363234653134326235360000000000ac71f30000aa366aebf91db3c7468f569c6ecb19dd50f26f609d1d5b279ce0"
    "6d3f6e9f7a3239500000000800000fa00000dead00000000000000000000000000000000000000000000000000000000"
    "00000000000000000000020000000fa00000dead00000000000000000000000000000000000000000000000000000000"
    "0000000000000000000003f800000fa00000dead00000000000000000000000000000000000000000000000000000000"
    "0000000000000000000005f000000fa00000dead00000000000000000000000000000000000000000000000000000000"
    "0000000000000000000007e800000fa00000dead00000000000000000000000000000000000000000000000000000000"
    "0000000000000000000009e000000fa00000dead00000000000000000000000000000000000000000000000000000000"
    "000000000000000000000bd800000fa00000dead00000000000000000000000000000000000000000000000000000000"
    "000000000000000000000dd000000fa0";

static void test_pbkdf2(void)
{
    static const struct { uint64_t iters; const char *dk; } v[] = {
        { 1, "0c60c80f961f0e71f3a9b524af6012062fe037a6" },
        { 2, "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957" },
        { 4096, "4b007901b765489abead49d926f721d065a429c1" },
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint8_t out[20], want[20];
        unhex(v[i].dk, want, sizeof(want));
        ok(crypto_pbkdf2(CRYPTO_HASH_SHA1, "password", 8, (const uint8_t *)"salt", 4,
                         v[i].iters, out, sizeof(out), NULL) == 0 &&
           !memcmp(out, want, sizeof(out)), "pbkdf2 rfc6070 c=%d", (int)v[i].iters);
    }
    uint8_t out[25], want[25];
    unhex("3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038", want, sizeof(want));
    ok(crypto_pbkdf2(CRYPTO_HASH_SHA1, "passwordPASSWORDpassword", 24,
                     (const uint8_t *)"saltSALTsaltSALTsaltSALTsaltSALTsalt", 36, 4096, out,
                     sizeof(out), NULL) == 0 && !memcmp(out, want, sizeof(out)),
       "pbkdf2 rfc6070 long");
    struct err e;
    err_init(&e);
    ok(crypto_pbkdf2(CRYPTO_HASH_SHA1, "p", 1, (const uint8_t *)"s", 1, 0, out, 20, &e) < 0,
       "pbkdf2 refuses zero iterations");
}

static void xts_check(const char *k1, const char *k2, uint64_t dun, const char *ptx,
                      const char *ctx, const char *name)
{
    uint8_t key[64], buf[512], want[512], orig[512];
    size_t nk = unhex(k1, key, 32);
    unhex(k2, key + nk, 32);
    size_t n = unhex(ptx, buf, sizeof(buf));
    unhex(ctx, want, sizeof(want));
    memcpy(orig, buf, n);
    enum crypto_cipher_alg alg = nk == 16 ? CRYPTO_CIPHER_AES_128 : CRYPTO_CIPHER_AES_256;
    struct crypto_cipher *c = crypto_cipher_new(alg, CRYPTO_MODE_XTS, key, 2 * nk, NULL);
    struct crypto_ivgen *g = crypto_ivgen_new(CRYPTO_IVGEN_PLAIN64, alg, CRYPTO_HASH_SHA256,
                                              key, 2 * nk, NULL);
    ok(c && g && crypto_sectors_crypt(c, g, true, dun, n, buf, n, NULL) == 0 &&
       !memcmp(buf, want, n), "xts %s encrypt", name);
    ok(crypto_sectors_crypt(c, g, false, dun, n, buf, n, NULL) == 0 && !memcmp(buf, orig, n),
       "xts %s decrypt", name);
    crypto_ivgen_free(g);
    crypto_cipher_free(c);
}

/* Our XTS (built on ECB) against OpenSSL's native one, several sectors. */
static void test_xts_vs_openssl(void)
{
    uint8_t key[64], data[4096], mine[4096], ref[4096], iv[16];
    for (int i = 0; i < 64; i++)
        key[i] = (uint8_t)(i * 7 + 1);
    for (int i = 0; i < 4096; i++)
        data[i] = (uint8_t)(i * 13);
    memcpy(mine, data, sizeof(data));
    struct crypto_cipher *c = crypto_cipher_new(CRYPTO_CIPHER_AES_256, CRYPTO_MODE_XTS, key, 64, NULL);
    struct crypto_ivgen *g = crypto_ivgen_new(CRYPTO_IVGEN_PLAIN64, CRYPTO_CIPHER_AES_256,
                                              CRYPTO_HASH_SHA256, key, 64, NULL);
    ok(crypto_sectors_crypt(c, g, true, 1000, 512, mine, sizeof(mine), NULL) == 0, "xts sectors");
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    bool same = true;
    for (int s = 0; s < 8; s++) {
        int outl;
        memset(iv, 0, sizeof(iv));
        put_le64(iv, 1000 + (uint64_t)s);
        EVP_EncryptInit_ex(x, EVP_aes_256_xts(), NULL, key, iv);
        EVP_EncryptUpdate(x, ref + s * 512, &outl, data + s * 512, 512);
    }
    same = !memcmp(mine, ref, sizeof(ref));
    ok(same, "xts matches OpenSSL's AES-256-XTS per 512-byte sector");
    EVP_CIPHER_CTX_free(x);
    crypto_ivgen_free(g);
    crypto_cipher_free(c);
}

static void test_afsplit(void)
{
    static const struct { enum crypto_hash h; size_t bl; } v[] = {
        { CRYPTO_HASH_SHA256, 64 }, { CRYPTO_HASH_SHA1, 24 }, { CRYPTO_HASH_SHA512, 16 },
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint8_t key[64], back[64];
        uint8_t *split = xmalloc(v[i].bl * 4000);
        for (size_t j = 0; j < v[i].bl; j++)
            key[j] = (uint8_t)(j + 3);
        ok(crypto_afsplit_encode(v[i].h, v[i].bl, 4000, key, split, NULL) == 0 &&
           crypto_afsplit_decode(v[i].h, v[i].bl, 4000, split, back, NULL) == 0 &&
           !memcmp(key, back, v[i].bl), "afsplit round trip %s/%zu", crypto_hash_name(v[i].h),
           v[i].bl);
        split[5] ^= 1;
        crypto_afsplit_decode(v[i].h, v[i].bl, 4000, split, back, NULL);
        ok(memcmp(key, back, v[i].bl) != 0, "afsplit damage changes the key");
        free(split);
    }
}

static void test_header_decode(void)
{
    uint8_t buf[LUKS_HEADER_SIZE], enc[LUKS_HEADER_SIZE];
    struct luks_header h;
    struct err e;

    is_uint(unhex(qemu_header, buf, sizeof(buf)), LUKS_HEADER_SIZE, "fixture size");
    ok(luks_probe(buf, sizeof(buf)), "probe");
    err_init(&e);
    is_int(luks_header_decode(buf, sizeof(buf), &h, &e), 0, "decode qemu header");
    is_str(h.cipher_name, "aes", "cipher name");
    is_str(h.cipher_mode, "xts-plain64", "cipher mode");
    is_str(h.hash_spec, "sha256", "hash spec");
    is_uint(h.master_key_len, 64, "key bytes");
    is_uint(h.payload_offset_sector * 512ull, 2068480, "payload offset");
    is_uint(h.mk_iterations, 9113, "master key iterations");
    ok(!memcmp(h.uuid, "6c5c4c22-6c58-4444-8a44-2a624e142b56", 36), "uuid");
    is_uint(h.slots[0].active, LUKS_SLOT_ENABLED, "slot 0 active");
    is_uint(h.slots[0].iterations, 43574, "slot 0 iterations");
    is_uint(h.slots[1].key_offset_sector * 512ull, 262144, "slot 1 key offset");
    is_uint(h.slots[7].active, LUKS_SLOT_DISABLED, "slot 7 inactive");
    luks_header_encode(&h, enc);
    ok(!memcmp(buf, enc, sizeof(buf)), "encode(decode(x)) == x");

    static const struct { size_t off; uint32_t val; int width; const char *msg; } bad[] = {
        { 0, 0x4c554b53, 4, "Volume is not in LUKS format" },
        { 6, 2, 2, "LUKS version 2 is not supported" },
        { 104, 7, 4, "LUKS payload is overlapping with the header" },
        { 164, 0, 4, "LUKS key iteration count is zero" },
        { 208 + 44, 3999, 4, "Keyslot 0 is corrupted (stripes 3999 != 4000)" },
        { 208 + 48, 0x1234, 4, "Keyslot 1 state (active/disable) is corrupted" },
        { 208 + 4, 0, 4, "Keyslot 0 iteration count is zero" },
        { 208 + 40, 2, 4, "Keyslot 0 is overlapping with the LUKS header" },
        { 208 + 7 * 48 + 40, 4000, 4, "Keyslot 7 is overlapping with the encrypted payload" },
        { 208 + 2 * 48 + 40, 600, 4, "Keyslots 1 and 2 are overlapping in the header" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t b[LUKS_HEADER_SIZE];
        memcpy(b, buf, sizeof(b));
        if (bad[i].width == 2)
            put_be16(b + bad[i].off, (uint16_t)bad[i].val);
        else
            put_be32(b + bad[i].off, bad[i].val);
        if (bad[i].off == 0)
            b[4] = 0;
        err_init(&e);
        ok(luks_header_decode(b, sizeof(b), &h, &e) < 0, "hostile %zu refused", i);
        is_str(e.msg, bad[i].msg, "hostile %zu message", i);
    }
    uint8_t b[LUKS_HEADER_SIZE];
    memcpy(b, buf, sizeof(b));
    memset(b + 8, 'a', 32);
    err_init(&e);
    luks_header_decode(b, sizeof(b), &h, &e);
    is_str(e.msg, "LUKS header cipher name is not NUL terminated", "unterminated name");
    err_init(&e);
    ok(luks_header_decode(buf, 100, &h, &e) < 0, "short buffer refused");
}

/* An in-memory volume for the full cycle. */
struct mem {
    uint8_t *p;
    size_t len;
};

static int mem_init(void *o, uint64_t len, struct err *err)
{
    struct mem *m = o;
    (void)err;
    m->p = xcalloc(1, len);
    m->len = len;
    return 0;
}

static int mem_read(void *o, uint64_t off, void *buf, size_t len, struct err *err)
{
    struct mem *m = o;
    if (off > m->len || len > m->len - off)
        return err_set(err, EIO, "read out of range");
    memcpy(buf, m->p + off, len);
    return 0;
}

static int mem_write(void *o, uint64_t off, const void *buf, size_t len, struct err *err)
{
    struct mem *m = o;
    if (off > m->len || len > m->len - off)
        return err_set(err, EIO, "write out of range");
    memcpy(m->p + off, buf, len);
    return 0;
}

static void cycle(const char *spec_opts, const char *want_mode)
{
    struct kvopts o;
    struct luks_create_opts lo;
    struct mem m = { NULL, 0 };
    struct err e;

    kvopts_init(&o);
    kvopts_parse(&o, spec_opts, NULL, NULL);
    err_init(&e);
    ok(luks_create_opts_parse(&o, "", &lo, &e) == 0, "parse %s", spec_opts);
    struct luks *l = luks_create(&lo, NULL, mem_init, mem_write, &m, &e);
    ok(l != NULL, "create %s %s", spec_opts, e.msg);
    if (!l) {
        kvopts_release(&o);
        return;
    }
    is_str(luks_get_header(l)->cipher_mode, want_mode, "mode string");
    uint8_t data[2048], buf[2048];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i ^ 0x5a);
    memcpy(buf, data, sizeof(buf));
    ok(luks_encrypt(l, 4096, buf, sizeof(buf), NULL) == 0 && memcmp(buf, data, sizeof(buf)),
       "encrypt changes data");
    luks_free(l);

    l = luks_open(mem_read, &m, "pw", false, &e);
    ok(l != NULL, "reopen with the passphrase");
    ok(l && luks_decrypt(l, 4096, buf, sizeof(buf), NULL) == 0 && !memcmp(buf, data, sizeof(buf)),
       "decrypt after reopen");
    luks_free(l);
    err_init(&e);
    l = luks_open(mem_read, &m, "wrong", false, &e);
    ok(!l, "wrong passphrase refused");
    is_str(e.msg, "Invalid password, cannot unlock any keyslot", "wrong passphrase message");
    free(m.p);
    kvopts_release(&o);
}

/* Slot iterations follow iter-time; the master key gets an eighth. */
static void test_iterations(void)
{
    struct kvopts o;
    struct luks_create_opts lo;
    struct mem m = { NULL, 0 };

    crypto_pbkdf2_set_fixed_rate(400000);
    kvopts_init(&o);
    kvopts_parse(&o, "key-secret=pw0,iter-time=50", NULL, NULL);
    luks_create_opts_parse(&o, "", &lo, NULL);
    struct luks *l = luks_create(&lo, NULL, mem_init, mem_write, &m, NULL);
    ok(l != NULL, "create with a fixed rate");
    if (l) {
        is_uint(luks_get_header(l)->slots[0].iterations, 20000, "slot iters = rate * ms / 1000");
        is_uint(luks_get_header(l)->mk_iterations, 2500, "master key iters = that / 8");
        is_uint(luks_payload_offset(l), 2068480, "payload offset of aes-256-xts");
    }
    luks_free(l);
    free(m.p);
    kvopts_release(&o);
    crypto_pbkdf2_set_fixed_rate(1000);
}

static void test_cycle(void)
{
    /* 1000 iterations per second: every count floors at qemu's 1000. */
    crypto_pbkdf2_set_fixed_rate(1000);
    secret_add("pw0", xstrdup("pw"), 2);
    cycle("key-secret=pw0,iter-time=1", "xts-plain64");
    cycle("key-secret=pw0,iter-time=1,cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv,hash-alg=sha1",
          "cbc-essiv:sha256");
    cycle("key-secret=pw0,iter-time=1,cipher-alg=aes-192,cipher-mode=xts,ivgen-alg=plain,"
          "ivgen-hash-alg=md5,hash-alg=sha512", "xts-plain:md5");
    cycle("key-secret=pw0,iter-time=1,cipher-alg=aes-256,cipher-mode=ctr,hash-alg=ripemd160",
          "ctr-plain64");
    cycle("key-secret=pw0,iter-time=1,cipher-alg=cast5-128,cipher-mode=cbc", "cbc-plain64");

    struct kvopts o;
    struct luks_create_opts lo;
    struct err e;
    kvopts_init(&o);
    kvopts_parse(&o, "cipher-alg=foo", NULL, NULL);
    err_init(&e);
    ok(luks_create_opts_parse(&o, "", &lo, &e) < 0, "bad cipher-alg");
    is_str(e.msg, "Parameter 'cipher-alg' does not accept value 'foo'", "bad cipher-alg message");
    kvopts_release(&o);
}

int main(void)
{
    test_pbkdf2();
    xts_check("11111111111111111111111111111111", "22222222222222222222222222222222",
              0x3333333333ull, "4444444444444444444444444444444444444444444444444444444444444444",
              "c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0", "ieee1619 #2");
    test_xts_vs_openssl();
    test_afsplit();
    test_header_decode();
    test_cycle();
    test_iterations();
    return done_testing();
}
