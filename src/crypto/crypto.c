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
 * library context on first use. Serpent and Twofish are not in OpenSSL:
 * their block functions come from libnettle (loaded on first use too, and
 * optional at build time: meson feature 'nettle', HAVE_NETTLE), which also
 * stands in for CAST5 when the legacy provider is missing; the modes above
 * are built here on nettle's ECB functions exactly as on OpenSSL's. Without
 * nettle they are refused with qemu's "Unsupported cipher algorithm". */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>

#include <openssl/evp.h>
#include <openssl/provider.h>

#include "config.h"
#include "crypto/crypto.h"
#include "util/dynlib.h"

#ifdef HAVE_NETTLE
#include <nettle/cast128.h>
#include <nettle/serpent.h>
#include <nettle/twofish.h>
#endif

/* libcrypto is loaded on first use (util/dynlib.h): most runs never
 * touch an encrypted image, and loading it costs start-up time. */
#define OSSL_FUNCS(X) \
    X(OSSL_LIB_CTX_new) \
    X(OSSL_PROVIDER_load) \
    X(OSSL_LIB_CTX_free) \
    X(EVP_CIPHER_fetch) \
    X(EVP_get_digestbyname) \
    X(EVP_MD_fetch) \
    X(EVP_MD_free) \
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

#ifdef HAVE_NETTLE
/* libnettle, loaded the first time a cipher needs it. */
#define NETTLE_FUNCS(X) \
    X(nettle_cast5_set_key) \
    X(nettle_cast128_encrypt) \
    X(nettle_cast128_decrypt) \
    X(nettle_serpent_set_key) \
    X(nettle_serpent_encrypt) \
    X(nettle_serpent_decrypt) \
    X(nettle_twofish_set_key) \
    X(nettle_twofish_encrypt) \
    X(nettle_twofish_decrypt)
static struct { NETTLE_FUNCS(DYNLIB_FIELD) } nl;
#define NETTLE_RESOLVE(f) DYNLIB_RESOLVE_INTO(nl, f)
static int nettle_resolve(void *h, struct err *err)
{
    void *sym;
    NETTLE_FUNCS(NETTLE_RESOLVE)
    return 0;
}
static struct dynlib nettle_lib = DYNLIB_INIT("libnettle.so.8", nettle_resolve);

enum nettle_family { NF_NONE, NF_CAST128, NF_SERPENT, NF_TWOFISH };
static const enum nettle_family nettle_families[CRYPTO_CIPHER__MAX] = {
    [CRYPTO_CIPHER_CAST5_128] = NF_CAST128,
    [CRYPTO_CIPHER_SERPENT_128] = NF_SERPENT,
    [CRYPTO_CIPHER_SERPENT_192] = NF_SERPENT,
    [CRYPTO_CIPHER_SERPENT_256] = NF_SERPENT,
    [CRYPTO_CIPHER_TWOFISH_128] = NF_TWOFISH,
    [CRYPTO_CIPHER_TWOFISH_192] = NF_TWOFISH,
    [CRYPTO_CIPHER_TWOFISH_256] = NF_TWOFISH,
};

/* One expanded key; nettle's block functions take it const, so one
 * schedule serves every thread. */
union nettle_key {
    struct cast128_ctx cast128;
    struct serpent_ctx serpent;
    struct twofish_ctx twofish;
};
#endif

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

/* The fuzz-target limits (crypto_pbkdf2_set_fuzz_limits): off in qimg. */
#define PBKDF_MEMO 32
#define PBKDF_MEMO_LEN 64
static struct {
    bool on;
    uint64_t max_per_call, budget;
    unsigned next;
    struct pbkdf_memo {
        bool used;
        enum crypto_hash h;
        uint64_t iterations;
        size_t nkey, nsalt, nout;
        uint8_t key[PBKDF_MEMO_LEN], salt[PBKDF_MEMO_LEN], out[PBKDF_MEMO_LEN];
    } memo[PBKDF_MEMO];
} fuzz_lim;

void crypto_pbkdf2_set_fuzz_limits(uint64_t max_per_call, uint64_t budget)
{
    fuzz_lim.on = true;
    fuzz_lim.max_per_call = max_per_call;
    fuzz_lim.budget = budget;
}

/* crypto_pbkdf2() under the fuzz limits: 1 answered from the memo, 0 to be
 * computed, <0 refused */
static int pbkdf2_fuzz_limits(enum crypto_hash h, const void *key, size_t nkey,
                              const uint8_t *salt, size_t nsalt, uint64_t iterations,
                              uint8_t *out, size_t nout, struct err *err)
{
    for (unsigned i = 0; i < PBKDF_MEMO; i++) {
        const struct pbkdf_memo *m = &fuzz_lim.memo[i];
        if (m->used && m->h == h && m->iterations == iterations && m->nkey == nkey &&
            m->nsalt == nsalt && m->nout == nout && !memcmp(m->key, key, nkey) &&
            !memcmp(m->salt, salt, nsalt)) {
            memcpy(out, m->out, nout);
            return 1;
        }
    }
    if (iterations > fuzz_lim.max_per_call || iterations > fuzz_lim.budget)
        return err_set(err, EINVAL, "PBKDF iterations %llu above the fuzzing limits",
                       (unsigned long long)iterations);
    fuzz_lim.budget -= iterations;
    return 0;
}

static void memo_add(enum crypto_hash h, const void *key, size_t nkey, const uint8_t *salt,
                     size_t nsalt, uint64_t iterations, const uint8_t *out, size_t nout)
{
    struct pbkdf_memo *m;

    if (nkey > PBKDF_MEMO_LEN || nsalt > PBKDF_MEMO_LEN || nout > PBKDF_MEMO_LEN)
        return;
    m = &fuzz_lim.memo[fuzz_lim.next++ % PBKDF_MEMO];
    *m = (struct pbkdf_memo){ .used = true, .h = h, .iterations = iterations, .nkey = nkey,
                              .nsalt = nsalt, .nout = nout };
    memcpy(m->key, key, nkey);
    memcpy(m->salt, salt, nsalt);
    memcpy(m->out, out, nout);
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
    if (fuzz_lim.on) {
        int r = pbkdf2_fuzz_limits(h, key, nkey, salt, nsalt, iterations, out, nout, err);
        if (r != 0)
            return r < 0 ? r : 0;
    }
    if (!md || !ossl.PKCS5_PBKDF2_HMAC(key, (int)nkey, salt, (int)nsalt, (int)iterations, md,
                                  (int)nout, out))
        return err_set(err, EINVAL, "PBKDF2 with hash %s failed", hash_names[h]);
    if (fuzz_lim.on)
        memo_add(h, key, nkey, salt, nsalt, iterations, out, nout);
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
    /* Tests that make many images set the rate instead of benchmarking
     * for a second each time (the iteration floors still apply). */
    const char *env = fixed_rate ? NULL : getenv("QIMG_TEST_PBKDF_RATE");
    if (env && *env) {
        char *rest;
        unsigned long long v = strtoull(env, &rest, 10);
        if (!*rest && v > 0) {
            free(out);
            return v;
        }
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
    EVP_CIPHER *ecb;        /* OpenSSL: always (XTS data/tweak, CTR keystream, ECB) */
    EVP_CIPHER *cbc;        /* OpenSSL: CBC mode only */
#ifdef HAVE_NETTLE
    union nettle_key *nk;   /* nettle instead of OpenSSL: [0] data key, [1] XTS tweak key */
#endif
    size_t nkey;
    uint8_t key[64];
};

#ifdef HAVE_NETTLE
static void nettle_set_key(enum crypto_cipher_alg alg, union nettle_key *k, const uint8_t *key,
                           size_t nkey)
{
    switch (nettle_families[alg]) {
    case NF_CAST128:
        nl.nettle_cast5_set_key(&k->cast128, nkey, key);
        break;
    case NF_SERPENT:
        nl.nettle_serpent_set_key(&k->serpent, nkey, key);
        break;
    default:
        nl.nettle_twofish_set_key(&k->twofish, nkey, key);
        break;
    }
}

/* Key the cipher with nettle; false when nettle cannot serve it. */
static bool nettle_setup(struct crypto_cipher *c)
{
    size_t nkeys = c->mode == CRYPTO_MODE_XTS ? 2 : 1, half = c->nkey / nkeys;

    if (nettle_families[c->alg] == NF_NONE || dynlib_load(&nettle_lib, NULL) < 0)
        return false;
    c->nk = calloc(nkeys, sizeof(*c->nk));
    if (!c->nk)
        return false;
    for (size_t i = 0; i < nkeys; i++)
        nettle_set_key(c->alg, &c->nk[i], c->key + i * half, half);
    return true;
}
#endif

struct crypto_cipher *crypto_cipher_new(enum crypto_cipher_alg alg, enum crypto_cipher_mode mode,
                                        const uint8_t *key, size_t nkey, struct err *err)
{
    struct crypto_cipher *c;
    size_t want = cipher_key_lens[alg];
    bool have_nettle = false;

#ifdef HAVE_NETTLE
    have_nettle = nettle_families[alg] != NF_NONE;
#endif
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
    if (!cipher_evp[alg].ecb && !have_nettle) {
        err_set(err, ENOTSUP, "Unsupported cipher algorithm %s", cipher_names[alg]);
        return NULL;
    }
    /* XTS needs a 16-byte block (nettle refuses it for 8-byte ciphers). */
    if (mode == CRYPTO_MODE_XTS && cipher_block_lens[alg] != 16) {
        err_set(err, ENOTSUP, "Unsupported cipher mode %s", mode_names[mode]);
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        err_set(err, ENOMEM, "Out of memory");
        return NULL;
    }
    c->alg = alg;
    c->mode = mode;
    c->nkey = nkey;
    memcpy(c->key, key, nkey);
    if (cipher_evp[alg].ecb && dynlib_load(&ossl_lib, have_nettle ? NULL : err) == 0) {
        c->ecb = fetch_cipher(alg, false);
        if (mode == CRYPTO_MODE_CBC)
            c->cbc = fetch_cipher(alg, true);
        if (c->ecb && (mode != CRYPTO_MODE_CBC || c->cbc))
            return c;
    } else if (cipher_evp[alg].ecb && !have_nettle) {
        crypto_cipher_free(c);
        return NULL;
    }
#ifdef HAVE_NETTLE
    /* Not in OpenSSL (or its legacy provider is missing): nettle. */
    if (nettle_setup(c)) {
        if (c->ecb)
            ossl.EVP_CIPHER_free(c->ecb);
        if (c->cbc)
            ossl.EVP_CIPHER_free(c->cbc);
        c->ecb = c->cbc = NULL;
        return c;
    }
#endif
    err_set(err, ENOTSUP, "Unsupported cipher algorithm %s", cipher_names[alg]);
    crypto_cipher_free(c);
    return NULL;
}

void crypto_cipher_free(struct crypto_cipher *c)
{
    if (!c)
        return;
    if (c->ecb)
        ossl.EVP_CIPHER_free(c->ecb);
    if (c->cbc)
        ossl.EVP_CIPHER_free(c->cbc);
#ifdef HAVE_NETTLE
    if (c->nk) {
        memset(c->nk, 0, (c->mode == CRYPTO_MODE_XTS ? 2 : 1) * sizeof(*c->nk));
        free(c->nk);
    }
#endif
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

/* One direction of one key of a cipher, as a single-block-at-a-time ECB
 * (or, with OpenSSL, CBC) engine: an OpenSSL context, or a nettle key
 * schedule shared read-only with the cipher. */
struct engine {
    EVP_CIPHER_CTX *evp;
    const struct crypto_cipher *c;
    int key;            /* nettle: 0 data key, 1 tweak key */
    bool enc;
};

static bool engine_open(struct engine *e, const struct crypto_cipher *c, bool cbc, int key,
                        bool enc)
{
    e->c = c;
    e->key = key;
    e->enc = enc;
    e->evp = NULL;
#ifdef HAVE_NETTLE
    if (c->nk)
        return true;
#endif
    const EVP_CIPHER *evp = cbc ? c->cbc : c->ecb;
    e->evp = ossl.EVP_CIPHER_CTX_new();
    if (e->evp && ossl.EVP_CipherInit_ex(e->evp, evp, NULL, c->key + (size_t)key * c->nkey / 2,
                                         NULL, enc) &&
        ossl.EVP_CIPHER_CTX_set_padding(e->evp, 0))
        return true;
    if (e->evp)
        ossl.EVP_CIPHER_CTX_free(e->evp);
    e->evp = NULL;
    return false;
}

static void engine_close(struct engine *e)
{
    if (e->evp)
        ossl.EVP_CIPHER_CTX_free(e->evp);
    e->evp = NULL;
}

/* ECB over whole blocks, in place. */
static bool engine_update(struct engine *e, uint8_t *buf, size_t len)
{
#ifdef HAVE_NETTLE
    if (!e->evp) {
        const union nettle_key *k = &e->c->nk[e->key];
        switch (nettle_families[e->c->alg]) {
        case NF_CAST128:
            (e->enc ? nl.nettle_cast128_encrypt : nl.nettle_cast128_decrypt)(&k->cast128, len,
                                                                              buf, buf);
            break;
        case NF_SERPENT:
            (e->enc ? nl.nettle_serpent_encrypt : nl.nettle_serpent_decrypt)(&k->serpent, len,
                                                                              buf, buf);
            break;
        default:
            (e->enc ? nl.nettle_twofish_encrypt : nl.nettle_twofish_decrypt)(&k->twofish, len,
                                                                              buf, buf);
            break;
        }
        return true;
    }
#endif
    int outl = 0;
    return len <= INT_MAX && ossl.EVP_CipherUpdate(e->evp, buf, &outl, buf, (int)len) &&
           (size_t)outl == len;
}

/* CBC over whole blocks from iv, in place: OpenSSL's own CBC, or the
 * chaining done here around nettle's ECB. */
static bool engine_cbc(struct engine *e, const uint8_t *iv, uint8_t *buf, size_t len)
{
    size_t bl = cipher_block_lens[e->c->alg];
    uint8_t prev[16], save[16];

    if (e->evp)
        return ossl.EVP_CipherInit_ex(e->evp, NULL, NULL, NULL, iv, e->enc) &&
               engine_update(e, buf, len);
    memcpy(prev, iv, bl);
    for (size_t off = 0; off < len; off += bl) {
        uint8_t *b = buf + off;
        if (e->enc) {
            for (size_t i = 0; i < bl; i++)
                b[i] ^= prev[i];
            if (!engine_update(e, b, bl))
                return false;
            memcpy(prev, b, bl);
        } else {
            memcpy(save, b, bl);
            if (!engine_update(e, b, bl))
                return false;
            for (size_t i = 0; i < bl; i++)
                b[i] ^= prev[i];
            memcpy(prev, save, bl);
        }
    }
    memset(prev, 0, sizeof(prev));
    memset(save, 0, sizeof(save));
    return true;
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
    struct engine main;     /* ECB/CBC with the data key */
    struct engine tweak;    /* XTS: ECB encrypt with the tweak key */
    struct engine essiv;    /* ESSIV: ECB encrypt with hash(key) */
};

static void iv_calc(const struct crypto_ivgen *g, struct engine *essiv, uint64_t sector,
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
        if (!engine_update(essiv, data, nd))
            *ok = false;
        memcpy(iv, data, nd < niv ? nd : niv);
        memset(data, 0, sizeof(data));
        break;
    }
    }
}

static bool crypt_chunk(const struct crypto_cipher *c, struct session *s, const uint8_t *iv,
                        uint8_t *buf, size_t len)
{
    size_t bl = cipher_block_lens[c->alg];

    switch (c->mode) {
    case CRYPTO_MODE_ECB:
        return engine_update(&s->main, buf, len);
    case CRYPTO_MODE_CBC:
        return engine_cbc(&s->main, iv, buf, len);
    case CRYPTO_MODE_CTR: {
        uint8_t ctr[16], ks[16];
        bool ok = true;
        memcpy(ctr, iv, bl);
        for (size_t off = 0; off < len && ok; off += bl) {
            memcpy(ks, ctr, bl);
            ok = engine_update(&s->main, ks, bl);
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
        if (!engine_update(&s->tweak, t, 16))
            return false;
        while (done < len) {
            size_t n = len - done < sizeof(tweaks) ? len - done : sizeof(tweaks);
            for (size_t i = 0; i < n; i += 16) {
                memcpy(tweaks + i, t, 16);
                xts_mul_x(t);
            }
            for (size_t i = 0; i < n; i++)
                buf[done + i] ^= tweaks[i];
            if (!engine_update(&s->main, buf + done, n))
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
    struct session s;
    size_t niv = crypto_cipher_iv_len(c->alg, c->mode);
    size_t bl = cipher_block_lens[c->alg];
    uint8_t iv[16];
    bool ok = true;

    memset(&s, 0, sizeof(s));
    if (len % bl || !sector_size || sector_size % bl)
        return err_set(err, EINVAL, "Length %zu must be a multiple of block size %zu", len, bl);
    if (niv && !ivgen)
        return err_set(err, EINVAL, "An IV generator is required for mode %s",
                       mode_names[c->mode]);
    switch (c->mode) {
    case CRYPTO_MODE_ECB:
        ok = engine_open(&s.main, c, false, 0, encrypt);
        break;
    case CRYPTO_MODE_CBC:
        ok = engine_open(&s.main, c, true, 0, encrypt);
        break;
    case CRYPTO_MODE_CTR:
        ok = engine_open(&s.main, c, false, 0, true);
        break;
    default:
        ok = engine_open(&s.main, c, false, 0, encrypt) &&
             engine_open(&s.tweak, c, false, 1, true);
        break;
    }
    if (ok && niv && ivgen->essiv)
        ok = engine_open(&s.essiv, ivgen->essiv, false, 0, true);
    for (uint64_t sector = start_sector; ok && len; sector++) {
        size_t n = len < sector_size ? len : sector_size;
        if (niv)
            iv_calc(ivgen, &s.essiv, sector, iv, niv, &ok);
        ok = ok && crypt_chunk(c, &s, iv, buf, n);
        buf += n;
        len -= n;
    }
    engine_close(&s.main);
    engine_close(&s.tweak);
    engine_close(&s.essiv);
    memset(iv, 0, sizeof(iv));
    if (!ok)
        return err_set(err, EIO, "Cipher operation failed");
    return 0;
}

/* --- anti-forensic splitter --- */

/* The splitter hashes 4000 stripes a key: one digest context, fetched once,
 * serves them all (a fresh context per hash costs allocations and an implicit
 * fetch each time). */
struct af_hasher {
    enum crypto_hash h;
    EVP_MD *md;
    EVP_MD_CTX *ctx;
};

static int af_diffuse(struct af_hasher *hs, uint8_t *block, size_t blocklen, struct err *err)
{
    size_t dlen = hash_lens[hs->h];
    uint8_t out[64];
    unsigned int n = 0;

    for (size_t off = 0, i = 0; off < blocklen; off += dlen, i++) {
        size_t len = blocklen - off < dlen ? blocklen - off : dlen;
        uint8_t ctr[4] = { (uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i };
        if (!ossl.EVP_DigestInit_ex(hs->ctx, hs->md, NULL) ||
            !ossl.EVP_DigestUpdate(hs->ctx, ctr, 4) ||
            !ossl.EVP_DigestUpdate(hs->ctx, block + off, len) ||
            !ossl.EVP_DigestFinal_ex(hs->ctx, out, &n) || n != dlen)
            return err_set(err, EINVAL, "Unable to compute hash %s", hash_names[hs->h]);
        memcpy(block + off, out, len);
    }
    memset(out, 0, sizeof(out));
    return 0;
}

static int af_run(enum crypto_hash h, size_t blocklen, uint32_t stripes, const uint8_t *in,
                  uint8_t *out, bool encode, struct err *err)
{
    struct af_hasher hs = { .h = h };
    const uint8_t *stripe_src = encode ? out : in;
    uint8_t *d;
    int r = 0;

    if (!stripes)
        return err_set(err, EINVAL, "Stripe count must be positive");
    if (dynlib_load(&ossl_lib, err) < 0)
        return -ENOTSUP;
    hs.md = ossl.EVP_MD_fetch(NULL, hash_evp[h], NULL);
    hs.ctx = ossl.EVP_MD_CTX_new();
    d = calloc(1, blocklen ? blocklen : 1);
    if (!hs.md || !hs.ctx || !d) {
        r = hs.md && hs.ctx ? err_set(err, ENOMEM, "Out of memory")
                            : err_set(err, EINVAL, "Unable to compute hash %s", hash_names[h]);
        goto out;
    }
    for (uint32_t s = 0; s + 1 < stripes; s++) {
        const uint8_t *src = stripe_src + (size_t)s * blocklen;
        if (encode && (r = crypto_random_bytes(out + (size_t)s * blocklen, blocklen, err)) < 0)
            goto out;
        for (size_t i = 0; i < blocklen; i++)
            d[i] ^= src[i];
        if ((r = af_diffuse(&hs, d, blocklen, err)) < 0)
            goto out;
    }
    {
        const uint8_t *last = encode ? in : in + (size_t)(stripes - 1) * blocklen;
        uint8_t *dst = encode ? out + (size_t)(stripes - 1) * blocklen : out;
        for (size_t i = 0; i < blocklen; i++)
            dst[i] = last[i] ^ d[i];
    }
out:
    if (d)
        memset(d, 0, blocklen);
    free(d);
    ossl.EVP_MD_CTX_free(hs.ctx);
    ossl.EVP_MD_free(hs.md);
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
