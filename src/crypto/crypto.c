/* Block-encryption primitives (see crypto.h). Facts followed:
 * - names, key and block lengths: qemu 7.2 qapi/crypto.json and
 *   crypto/cipher.c; IV length 0 for ECB, else the block length;
 * - IV generators (dm-crypt): plain = low 32 bits of the sector, plain64 =
 *   64-bit sector, both little-endian and zero-padded; essiv = the sector
 *   (le64, zero-padded to a block) encrypted in ECB with hash(key);
 * - XTS per IEEE 1619-2007 (tweak = E_k2(IV), multiplied by x in GF(2^128)
 *   for each 16-byte block; lengths here are always whole blocks), built on
 *   ECB so every 16-byte-block algorithm OpenSSL has gets it (OpenSSL itself
 *   has no AES-192-XTS);
 * - CTR: the IV is a big-endian counter over the whole block, as nettle's
 *   ctr_crypt (and OpenSSL's AES-CTR) use it;
 * - PBKDF2 per RFC 2898 through PKCS5_PBKDF2_HMAC; the iteration benchmark
 *   as qemu 7.2.22's crypto/pbkdf.c (thread CPU time, >500 ms sample, a
 *   0 ms sample is an error);
 * - AF split per the LUKS1 on-disk format spec, "AF-Splitter", with
 *   cryptsetup's diffuse (hash of be32 counter || block chunk).
 * CAST5 and DES live in OpenSSL 3's legacy provider, loaded into a private
 * library context on first use; Serpent and Twofish are not in OpenSSL and
 * are refused with qemu's "Unsupported cipher algorithm" message. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>

#include <openssl/evp.h>
#include <openssl/provider.h>

#include "crypto/crypto.h"
#include "util/dynlib.h"

/* libcrypto is loaded on first use (util/dynlib.h): most runs never
 * touch an encrypted image, and loading it costs start-up time. */
#define OSSL_FUNCS(X) \
    X(OSSL_LIB_CTX_new) \
    X(OSSL_PROVIDER_load) \
    X(OSSL_LIB_CTX_free) \
    X(EVP_CIPHER_fetch) \
    X(EVP_get_digestbyname) \
    X(EVP_MD_CTX_new) \
    X(EVP_DigestInit_ex) \
    X(EVP_DigestUpdate) \
    X(EVP_DigestFinal_ex) \
    X(EVP_MD_CTX_free) \
    X(PKCS5_PBKDF2_HMAC) \
    X(EVP_CIPHER_free) \
    X(EVP_CIPHER_CTX_new) \
    X(EVP_CipherInit_ex) \
    X(EVP_CIPHER_CTX_set_padding) \
    X(EVP_CIPHER_CTX_free) \
    X(EVP_CipherUpdate)
static struct { OSSL_FUNCS(DYNLIB_FIELD) } ossl;
#define OSSL_RESOLVE(f) DYNLIB_RESOLVE_INTO(ossl, f)
static int ossl_resolve(void *h, struct err *err)
{
    void *sym;
    OSSL_FUNCS(OSSL_RESOLVE)
    return 0;
}
static struct dynlib ossl_lib = DYNLIB_INIT("libcrypto.so.3", ossl_resolve);

static const char *const hash_names[CRYPTO_HASH__MAX] = {
    "md5", "sha1", "sha224", "sha256", "sha384", "sha512", "ripemd160",
};
static const char *const hash_evp[CRYPTO_HASH__MAX] = {
    "MD5", "SHA1", "SHA224", "SHA256", "SHA384", "SHA512", "RIPEMD160",
};
static const size_t hash_lens[CRYPTO_HASH__MAX] = { 16, 20, 28, 32, 48, 64, 20 };

static const char *const cipher_names[CRYPTO_CIPHER__MAX] = {
    "aes-128", "aes-192", "aes-256", "des", "3des", "cast5-128",
    "serpent-128", "serpent-192", "serpent-256", "twofish-128", "twofish-192", "twofish-256",
};
static const size_t cipher_key_lens[CRYPTO_CIPHER__MAX] = {
    16, 24, 32, 8, 24, 16, 16, 24, 32, 16, 24, 32,
};
static const size_t cipher_block_lens[CRYPTO_CIPHER__MAX] = {
    16, 16, 16, 8, 8, 8, 16, 16, 16, 16, 16, 16,
};
/* OpenSSL names of the ECB and CBC forms; NULL: not in OpenSSL. */
static const struct {
    const char *ecb, *cbc;
    bool legacy;
} cipher_evp[CRYPTO_CIPHER__MAX] = {
    [CRYPTO_CIPHER_AES_128] = { "AES-128-ECB", "AES-128-CBC", false },
    [CRYPTO_CIPHER_AES_192] = { "AES-192-ECB", "AES-192-CBC", false },
    [CRYPTO_CIPHER_AES_256] = { "AES-256-ECB", "AES-256-CBC", false },
    [CRYPTO_CIPHER_DES] = { "DES-ECB", "DES-CBC", true },
    [CRYPTO_CIPHER_3DES] = { "DES-EDE3-ECB", "DES-EDE3-CBC", false },
    [CRYPTO_CIPHER_CAST5_128] = { "CAST5-ECB", "CAST5-CBC", true },
};

static const char *const mode_names[CRYPTO_MODE__MAX] = { "ecb", "cbc", "xts", "ctr" };
static const char *const ivgen_names[CRYPTO_IVGEN__MAX] = { "plain", "plain64", "essiv" };

static int lookup(const char *const *names, int n, const char *name)
{
    for (int i = 0; name && i < n; i++)
        if (!strcmp(names[i], name))
            return i;
    return -1;
}

const char *crypto_hash_name(enum crypto_hash h) { return hash_names[h]; }
int crypto_hash_lookup(const char *name) { return lookup(hash_names, CRYPTO_HASH__MAX, name); }
const char *crypto_cipher_alg_name(enum crypto_cipher_alg a) { return cipher_names[a]; }
int crypto_cipher_alg_lookup(const char *name)
{
    return lookup(cipher_names, CRYPTO_CIPHER__MAX, name);
}
const char *crypto_cipher_mode_name(enum crypto_cipher_mode m) { return mode_names[m]; }
int crypto_cipher_mode_lookup(const char *name)
{
    return lookup(mode_names, CRYPTO_MODE__MAX, name);
}
const char *crypto_ivgen_name(enum crypto_ivgen_alg g) { return ivgen_names[g]; }
int crypto_ivgen_lookup(const char *name) { return lookup(ivgen_names, CRYPTO_IVGEN__MAX, name); }
size_t crypto_hash_len(enum crypto_hash h) { return hash_lens[h]; }
size_t crypto_cipher_key_len(enum crypto_cipher_alg a) { return cipher_key_lens[a]; }
size_t crypto_cipher_block_len(enum crypto_cipher_alg a) { return cipher_block_lens[a]; }

size_t crypto_cipher_iv_len(enum crypto_cipher_alg a, enum crypto_cipher_mode m)
{
    return m == CRYPTO_MODE_ECB ? 0 : cipher_block_lens[a];
}

/* --- OpenSSL objects --- */

static OSSL_LIB_CTX *legacy_ctx;
static pthread_once_t legacy_once = PTHREAD_ONCE_INIT;

static void legacy_init(void)
{
    legacy_ctx = ossl.OSSL_LIB_CTX_new();
    if (legacy_ctx && (!ossl.OSSL_PROVIDER_load(legacy_ctx, "legacy") ||
                       !ossl.OSSL_PROVIDER_load(legacy_ctx, "default"))) {
        ossl.OSSL_LIB_CTX_free(legacy_ctx);
        legacy_ctx = NULL;
    }
}

static EVP_CIPHER *fetch_cipher(enum crypto_cipher_alg alg, bool cbc)
{
    const char *name = cbc ? cipher_evp[alg].cbc : cipher_evp[alg].ecb;
    OSSL_LIB_CTX *ctx = NULL;

    if (!name)
        return NULL;
    if (cipher_evp[alg].legacy) {
        pthread_once(&legacy_once, legacy_init);
        if (!legacy_ctx)
            return NULL;
        ctx = legacy_ctx;
    }
    return ossl.EVP_CIPHER_fetch(ctx, name, NULL);
}

static const EVP_MD *hash_md(enum crypto_hash h)
{
    return ossl.EVP_get_digestbyname(hash_evp[h]);
}

int crypto_hash2(enum crypto_hash h, const void *a, size_t alen, const void *b, size_t blen,
                 uint8_t *out, struct err *err)
{
    if (dynlib_load(&ossl_lib, err) < 0)
        return -ENOTSUP;
    const EVP_MD *md = hash_md(h);
    EVP_MD_CTX *ctx = ossl.EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = md && ctx && ossl.EVP_DigestInit_ex(ctx, md, NULL) &&
             ossl.EVP_DigestUpdate(ctx, a, alen) && ossl.EVP_DigestUpdate(ctx, b, blen) &&
             ossl.EVP_DigestFinal_ex(ctx, out, &n) && n == hash_lens[h];

    ossl.EVP_MD_CTX_free(ctx);
    if (!ok)
        return err_set(err, EINVAL, "Unable to compute hash %s", hash_names[h]);
    return 0;
}

int crypto_random_bytes(void *buf, size_t len, struct err *err)
{
    uint8_t *p = buf;

    while (len) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return err_set_errno(err, errno, "Unable to read random bytes");
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int crypto_pbkdf2(enum crypto_hash h, const void *key, size_t nkey, const uint8_t *salt,
                  size_t nsalt, uint64_t iterations, uint8_t *out, size_t nout,
                  struct err *err)
{
    if (dynlib_load(&ossl_lib, err) < 0)
        return -ENOTSUP;
    const EVP_MD *md = hash_md(h);

    if (iterations == 0 || iterations > INT_MAX)
        return err_set(err, EINVAL, "PBKDF iterations %llu must be between 1 and %d",
                       (unsigned long long)iterations, INT_MAX);
    if (nkey > INT_MAX || nsalt > INT_MAX || nout > INT_MAX)
        return err_set(err, EINVAL, "PBKDF parameters too large");
    if (!md || !ossl.PKCS5_PBKDF2_HMAC(key, (int)nkey, salt, (int)nsalt, (int)iterations, md,
                                  (int)nout, out))
        return err_set(err, EINVAL, "PBKDF2 with hash %s failed", hash_names[h]);
    return 0;
}

static int thread_cpu_ms(unsigned long long *ms, struct err *err)
{
    struct rusage ru;

    if (getrusage(RUSAGE_THREAD, &ru) < 0)
        return err_set_errno(err, errno, "Unable to get thread CPU usage");
    *ms = (unsigned long long)ru.ru_utime.tv_sec * 1000 +
          (unsigned long long)ru.ru_utime.tv_usec / 1000;
    return 0;
}

static uint64_t fixed_rate;

void crypto_pbkdf2_set_fixed_rate(uint64_t per_sec)
{
    fixed_rate = per_sec;
}

uint64_t crypto_pbkdf2_count_iters(enum crypto_hash h, const void *key, size_t nkey,
                                   const uint8_t *salt, size_t nsalt, size_t nout,
                                   struct err *err)
{
    uint8_t *out = calloc(1, nout ? nout : 1);
    uint64_t iters = 1 << 15, ret = 0;
    unsigned long long start = 0, end = 0, delta;

    if (!out) {
        err_set(err, ENOMEM, "Out of memory");
        return 0;
    }
    if (fixed_rate) {
        free(out);
        return fixed_rate;
    }
    for (;;) {
        if (thread_cpu_ms(&start, err) < 0 ||
            crypto_pbkdf2(h, key, nkey, salt, nsalt, iters, out, nout, err) < 0 ||
            thread_cpu_ms(&end, err) < 0)
            goto out;
        delta = end - start;
        /* qemu 7.2.22 refuses a sample it could not time (tick-granular
         * CPU accounting can report 0 ms for a short run). */
        if (delta == 0) {
            err_set(err, EIO, "Unable to get accurate CPU usage");
            goto out;
        }
        if (delta > 500)
            break;
        if (delta < 100)
            iters *= 10;
        else
            iters = iters * 1000 / delta;
    }
    ret = iters * 1000 / delta;
out:
    memset(out, 0, nout);
    free(out);
    return ret;
}

/* --- ciphers --- */

struct crypto_cipher {
    enum crypto_cipher_alg alg;
    enum crypto_cipher_mode mode;
    EVP_CIPHER *ecb;        /* always (XTS data/tweak, CTR keystream, ECB) */
    EVP_CIPHER *cbc;        /* CBC mode only */
    size_t nkey;
    uint8_t key[64];
};

struct crypto_cipher *crypto_cipher_new(enum crypto_cipher_alg alg, enum crypto_cipher_mode mode,
                                        const uint8_t *key, size_t nkey, struct err *err)
{
    struct crypto_cipher *c;
    size_t want = cipher_key_lens[alg];

    /* qemu's generic key checks come first (crypto/cipher.c). */
    if (mode == CRYPTO_MODE_XTS) {
        if (alg == CRYPTO_CIPHER_DES || alg == CRYPTO_CIPHER_3DES) {
            err_set(err, EINVAL, "XTS mode not compatible with DES/3DES");
            return NULL;
        }
        if (nkey % 2) {
            err_set(err, EINVAL, "XTS cipher key length should be a multiple of 2");
            return NULL;
        }
        if (nkey / 2 != want) {
            err_set(err, EINVAL, "Cipher key length %zu should be %zu", nkey, want * 2);
            return NULL;
        }
    } else if (nkey != want) {
        err_set(err, EINVAL, "Cipher key length %zu should be %zu", nkey, want);
        return NULL;
    }
    if (!cipher_evp[alg].ecb) {
        err_set(err, ENOTSUP, "Unsupported cipher algorithm %s", cipher_names[alg]);
        return NULL;
    }
    /* XTS needs a 16-byte block (nettle refuses it for 8-byte ciphers). */
    if (mode == CRYPTO_MODE_XTS && cipher_block_lens[alg] != 16) {
        err_set(err, ENOTSUP, "Unsupported cipher mode %s", mode_names[mode]);
        return NULL;
    }
    if (dynlib_load(&ossl_lib, err) < 0)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (!c) {
        err_set(err, ENOMEM, "Out of memory");
        return NULL;
    }
    c->alg = alg;
    c->mode = mode;
    c->nkey = nkey;
    memcpy(c->key, key, nkey);
    c->ecb = fetch_cipher(alg, false);
    if (mode == CRYPTO_MODE_CBC)
        c->cbc = fetch_cipher(alg, true);
    if (!c->ecb || (mode == CRYPTO_MODE_CBC && !c->cbc)) {
        err_set(err, ENOTSUP, "Unsupported cipher algorithm %s", cipher_names[alg]);
        crypto_cipher_free(c);
        return NULL;
    }
    return c;
}

void crypto_cipher_free(struct crypto_cipher *c)
{
    if (!c)
        return;
    ossl.EVP_CIPHER_free(c->ecb);
    ossl.EVP_CIPHER_free(c->cbc);
    memset(c->key, 0, sizeof(c->key));
    free(c);
}

struct crypto_ivgen {
    enum crypto_ivgen_alg alg;
    struct crypto_cipher *essiv;    /* ECB, keyed with hash(key) */
};

struct crypto_ivgen *crypto_ivgen_new(enum crypto_ivgen_alg alg, enum crypto_cipher_alg cipher_alg,
                                      enum crypto_hash hash, const uint8_t *key, size_t nkey,
                                      struct err *err)
{
    struct crypto_ivgen *g = calloc(1, sizeof(*g));

    if (!g) {
        err_set(err, ENOMEM, "Out of memory");
        return NULL;
    }
    g->alg = alg;
    if (alg == CRYPTO_IVGEN_ESSIV) {
        uint8_t salt[64];
        size_t nsalt = cipher_key_lens[cipher_alg], nhash = hash_lens[hash];
        if (crypto_hash2(hash, key, nkey, "", 0, salt, err) < 0) {
            free(g);
            return NULL;
        }
        g->essiv = crypto_cipher_new(cipher_alg, CRYPTO_MODE_ECB, salt,
                                     nhash < nsalt ? nhash : nsalt, err);
        memset(salt, 0, sizeof(salt));
        if (!g->essiv) {
            free(g);
            return NULL;
        }
    }
    return g;
}

void crypto_ivgen_free(struct crypto_ivgen *g)
{
    if (!g)
        return;
    crypto_cipher_free(g->essiv);
    free(g);
}

static EVP_CIPHER_CTX *ctx_new(const EVP_CIPHER *evp, const uint8_t *key, int enc)
{
    EVP_CIPHER_CTX *ctx = ossl.EVP_CIPHER_CTX_new();

    if (ctx && ossl.EVP_CipherInit_ex(ctx, evp, NULL, key, NULL, enc) &&
        ossl.EVP_CIPHER_CTX_set_padding(ctx, 0))
        return ctx;
    ossl.EVP_CIPHER_CTX_free(ctx);
    return NULL;
}

static bool ctx_update(EVP_CIPHER_CTX *ctx, uint8_t *buf, size_t len)
{
    int outl = 0;
    return len <= INT_MAX && ossl.EVP_CipherUpdate(ctx, buf, &outl, buf, (int)len) &&
           (size_t)outl == len;
}

/* Multiply the XTS tweak by x in GF(2^128), little-endian byte order. */
static void xts_mul_x(uint8_t t[16])
{
    uint8_t carry = 0;
    for (int i = 0; i < 16; i++) {
        uint8_t next = t[i] >> 7;
        t[i] = (uint8_t)(t[i] << 1 | carry);
        carry = next;
    }
    if (carry)
        t[0] ^= 0x87;
}

static void ctr_increment(uint8_t *ctr, size_t n)
{
    for (size_t i = n; i-- > 0;)
        if (++ctr[i])
            break;
}

struct session {
    EVP_CIPHER_CTX *main;     /* ECB/CBC with the data key */
    EVP_CIPHER_CTX *tweak;    /* XTS: ECB encrypt with the tweak key */
    EVP_CIPHER_CTX *essiv;    /* ESSIV: ECB encrypt with hash(key) */
};

static void iv_calc(const struct crypto_ivgen *g, EVP_CIPHER_CTX *essiv, uint64_t sector,
                    uint8_t *iv, size_t niv, bool *ok)
{
    uint8_t le[8];

    memset(iv, 0, niv);
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(sector >> (8 * i));
    switch (g->alg) {
    case CRYPTO_IVGEN_PLAIN:
        memcpy(iv, le, niv < 4 ? niv : 4);
        break;
    case CRYPTO_IVGEN_PLAIN64:
        memcpy(iv, le, niv < 8 ? niv : 8);
        break;
    default: {
        uint8_t data[16] = { 0 };
        size_t nd = cipher_block_lens[g->essiv->alg];
        memcpy(data, le, nd < 8 ? nd : 8);
        if (!ctx_update(essiv, data, nd))
            *ok = false;
        memcpy(iv, data, nd < niv ? nd : niv);
        memset(data, 0, sizeof(data));
        break;
    }
    }
}

static bool crypt_chunk(const struct crypto_cipher *c, struct session *s, const uint8_t *iv,
                        bool encrypt, uint8_t *buf, size_t len)
{
    size_t bl = cipher_block_lens[c->alg];

    switch (c->mode) {
    case CRYPTO_MODE_ECB:
        return ctx_update(s->main, buf, len);
    case CRYPTO_MODE_CBC:
        return ossl.EVP_CipherInit_ex(s->main, NULL, NULL, NULL, iv, encrypt) &&
               ctx_update(s->main, buf, len);
    case CRYPTO_MODE_CTR: {
        uint8_t ctr[16], ks[16];
        bool ok = true;
        memcpy(ctr, iv, bl);
        for (size_t off = 0; off < len && ok; off += bl) {
            memcpy(ks, ctr, bl);
            ok = ctx_update(s->main, ks, bl);
            size_t n = len - off < bl ? len - off : bl;
            for (size_t i = 0; i < n; i++)
                buf[off + i] ^= ks[i];
            ctr_increment(ctr, bl);
        }
        memset(ks, 0, sizeof(ks));
        return ok;
    }
    default: {
        /* XTS over whole 16-byte blocks: xor tweaks, ECB the lot, xor again. */
        uint8_t t[16], tweaks[512];
        size_t done = 0;
        memcpy(t, iv, 16);
        if (!ctx_update(s->tweak, t, 16))
            return false;
        while (done < len) {
            size_t n = len - done < sizeof(tweaks) ? len - done : sizeof(tweaks);
            for (size_t i = 0; i < n; i += 16) {
                memcpy(tweaks + i, t, 16);
                xts_mul_x(t);
            }
            for (size_t i = 0; i < n; i++)
                buf[done + i] ^= tweaks[i];
            if (!ctx_update(s->main, buf + done, n))
                return false;
            for (size_t i = 0; i < n; i++)
                buf[done + i] ^= tweaks[i];
            done += n;
        }
        memset(t, 0, sizeof(t));
        return true;
    }
    }
}

int crypto_sectors_crypt(const struct crypto_cipher *c, const struct crypto_ivgen *ivgen,
                         bool encrypt, uint64_t start_sector, size_t sector_size,
                         uint8_t *buf, size_t len, struct err *err)
{
    struct session s = { NULL, NULL, NULL };
    size_t niv = crypto_cipher_iv_len(c->alg, c->mode);
    size_t bl = cipher_block_lens[c->alg];
    uint8_t iv[16];
    bool ok = true;
    int enc = encrypt ? 1 : 0;

    if (len % bl || !sector_size || sector_size % bl)
        return err_set(err, EINVAL, "Length %zu must be a multiple of block size %zu", len, bl);
    if (niv && !ivgen)
        return err_set(err, EINVAL, "An IV generator is required for mode %s",
                       mode_names[c->mode]);
    switch (c->mode) {
    case CRYPTO_MODE_ECB:
        s.main = ctx_new(c->ecb, c->key, enc);
        ok = s.main != NULL;
        break;
    case CRYPTO_MODE_CBC:
        s.main = ctx_new(c->cbc, c->key, enc);
        ok = s.main != NULL;
        break;
    case CRYPTO_MODE_CTR:
        s.main = ctx_new(c->ecb, c->key, 1);
        ok = s.main != NULL;
        break;
    default:
        s.main = ctx_new(c->ecb, c->key, enc);
        s.tweak = ctx_new(c->ecb, c->key + c->nkey / 2, 1);
        ok = s.main && s.tweak;
        break;
    }
    if (ok && niv && ivgen->essiv) {
        s.essiv = ctx_new(ivgen->essiv->ecb, ivgen->essiv->key, 1);
        ok = s.essiv != NULL;
    }
    for (uint64_t sector = start_sector; ok && len; sector++) {
        size_t n = len < sector_size ? len : sector_size;
        if (niv)
            iv_calc(ivgen, s.essiv, sector, iv, niv, &ok);
        ok = ok && crypt_chunk(c, &s, iv, encrypt, buf, n);
        buf += n;
        len -= n;
    }
    ossl.EVP_CIPHER_CTX_free(s.main);
    ossl.EVP_CIPHER_CTX_free(s.tweak);
    ossl.EVP_CIPHER_CTX_free(s.essiv);
    memset(iv, 0, sizeof(iv));
    if (!ok)
        return err_set(err, EIO, "Cipher operation failed");
    return 0;
}

/* --- anti-forensic splitter --- */

static int af_diffuse(enum crypto_hash h, uint8_t *block, size_t blocklen, struct err *err)
{
    size_t dlen = hash_lens[h];
    uint8_t out[64];

    for (size_t off = 0, i = 0; off < blocklen; off += dlen, i++) {
        size_t n = blocklen - off < dlen ? blocklen - off : dlen;
        uint8_t ctr[4] = { (uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i };
        if (crypto_hash2(h, ctr, 4, block + off, n, out, err) < 0)
            return -EINVAL;
        memcpy(block + off, out, n);
    }
    memset(out, 0, sizeof(out));
    return 0;
}

static int af_run(enum crypto_hash h, size_t blocklen, uint32_t stripes, const uint8_t *in,
                  uint8_t *out, bool encode, struct err *err)
{
    uint8_t *d = calloc(1, blocklen ? blocklen : 1);
    const uint8_t *stripe_src = encode ? out : in;
    int r = 0;

    if (!d)
        return err_set(err, ENOMEM, "Out of memory");
    if (!stripes) {
        free(d);
        return err_set(err, EINVAL, "Stripe count must be positive");
    }
    for (uint32_t s = 0; s + 1 < stripes; s++) {
        const uint8_t *src = stripe_src + (size_t)s * blocklen;
        if (encode && (r = crypto_random_bytes(out + (size_t)s * blocklen, blocklen, err)) < 0)
            goto out;
        for (size_t i = 0; i < blocklen; i++)
            d[i] ^= src[i];
        if ((r = af_diffuse(h, d, blocklen, err)) < 0)
            goto out;
    }
    {
        const uint8_t *last = encode ? in : in + (size_t)(stripes - 1) * blocklen;
        uint8_t *dst = encode ? out + (size_t)(stripes - 1) * blocklen : out;
        for (size_t i = 0; i < blocklen; i++)
            dst[i] = last[i] ^ d[i];
    }
out:
    memset(d, 0, blocklen);
    free(d);
    return r;
}

int crypto_afsplit_encode(enum crypto_hash h, size_t blocklen, uint32_t stripes,
                          const uint8_t *in, uint8_t *out, struct err *err)
{
    return af_run(h, blocklen, stripes, in, out, true, err);
}

int crypto_afsplit_decode(enum crypto_hash h, size_t blocklen, uint32_t stripes,
                          const uint8_t *in, uint8_t *out, struct err *err)
{
    return af_run(h, blocklen, stripes, in, out, false, err);
}
