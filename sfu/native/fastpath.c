/*
 * The forwarding hot path in native code: SRTP protection (AES-GCM, AES-CM) with a key
 * schedule kept per viewer, and datagram writes straight to a socket's file descriptor, many per
 * system call (sendmmsg).
 *
 * Why ours and not node:crypto + dgram: per packet, node:crypto creates a cipher object
 * (re-running the AES key expansion) and crosses into C++ five times (createCipheriv,
 * setAAD, update, final, getAuthTag), and every dgram write is one JavaScript call into
 * libuv with the destination parsed from a string and one system call. Here a context's
 * key is expanded once, and one call (sealSend) seals every RTP packet of a fan-out,
 * staged as plaintext in one slab, and writes them, each socket's datagrams in one
 * sendmmsg. Measured costs are in sfu/native/index.ts.
 *
 * It also owns the TURN relay's UDP sockets when asked (udpOpen/udpReceive, below):
 * recvmmsg on Node's own event loop.
 *
 * OpenSSL is the one inside Node (its EVP symbols are resolved from the node binary when
 * the addon loads); headers come from Node's own include directory. Node-API plus
 * libuv's stable uv_poll calls (no V8 ABI), context-aware so that media worker threads
 * can load it.
 *
 * The SRTP and send calls keep no JavaScript object or pointer into one past the call
 * that received it; a context is freed by the garbage collector or by `release`. A UDP
 * receiver holds references to its callback and buffers until `udpClose`. Handles carry
 * type tags: one kind passed where another is expected throws instead of misreading.
 */
#define NAPI_VERSION 8
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <node_api.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#define RTP_HEADER 12
#define GCM_TAG 16
#define MAX_BATCH 1024

typedef struct {
  EVP_CIPHER_CTX *ctx;
  uint8_t salt[12];
} gcm_t;

static const napi_type_tag GCM_TYPE = {0x6761746568737270ULL, 0x67636d6374780001ULL};
static const napi_type_tag RX_TYPE = {0x6761746568737270ULL, 0x7564707278000001ULL};

/* The pointer inside an External made here with `tag`, or NULL (a JS exception is pending). */
static void *tagged(napi_env env, napi_value v, const napi_type_tag *tag) {
  bool ok = false;
  void *p = NULL;
  if (napi_check_object_type_tag(env, v, tag, &ok) != napi_ok || !ok || napi_get_value_external(env, v, &p) != napi_ok) {
    napi_throw_type_error(env, NULL, "not a handle of the expected kind");
    return NULL;
  }
  return p;
}

#define THROW(env, msg)                        \
  do {                                         \
    napi_throw_type_error((env), NULL, (msg)); \
    return NULL;                               \
  } while (0)
#define CHECK(env, call)                         \
  do {                                           \
    if ((call) != napi_ok) THROW((env), #call); \
  } while (0)

/* Declares argv[N] with the call's arguments; throws `usage` when fewer were given. */
#define ARGS(env, info, N, usage)                                            \
  size_t argc = (N);                                                         \
  napi_value argv[(N)];                                                      \
  CHECK((env), napi_get_cb_info((env), (info), &argc, argv, NULL, NULL));    \
  if (argc < (N)) THROW((env), (usage))

static napi_value num(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

static void gcm_free(gcm_t *g) {
  if (g->ctx) EVP_CIPHER_CTX_free(g->ctx);
  g->ctx = NULL;
}

static void gcm_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  gcm_t *g = data;
  gcm_free(g);
  free(g);
}

/* gcmContext(key: 16-byte Buffer, salt: 12-byte Buffer) → External */
static napi_value gcm_context(napi_env env, napi_callback_info info) {
  ARGS(env, info, 2, "gcmContext(key, salt)");
  void *key, *salt;
  size_t klen, slen;
  CHECK(env, napi_get_buffer_info(env, argv[0], &key, &klen));
  CHECK(env, napi_get_buffer_info(env, argv[1], &salt, &slen));
  if (klen != 16 || slen != 12) THROW(env, "AES-128-GCM needs a 16-byte key and a 12-byte salt");
  gcm_t *g = calloc(1, sizeof(gcm_t));
  if (!g) THROW(env, "out of memory");
  memcpy(g->salt, salt, 12);
  g->ctx = EVP_CIPHER_CTX_new();
  if (!g->ctx || EVP_EncryptInit_ex(g->ctx, EVP_aes_128_gcm(), NULL, key, NULL) != 1) {
    gcm_free(g);
    free(g);
    THROW(env, "EVP_EncryptInit_ex failed");
  }
  napi_value out;
  if (napi_create_external(env, g, gcm_finalize, NULL, &out) != napi_ok) {
    gcm_free(g);
    free(g);
    THROW(env, "napi_create_external failed");
  }
  CHECK(env, napi_type_tag_object(env, out, &GCM_TYPE));
  return out;
}

/*
 * The RTP header's length (RFC 3550 §5.1, §5.3.1): the fixed 12 bytes, the CSRC list and
 * the header extension when the X bit is set; 0 when it does not fit in `avail` bytes.
 * Everything up to the payload is the header SRTP leaves in the clear (RFC 3711 §3.1).
 */
static size_t rtp_hlen(const uint8_t *pkt, size_t avail) {
  if (avail < RTP_HEADER) return 0;
  size_t hl = RTP_HEADER + 4 * (size_t)(pkt[0] & 0x0f);
  if (pkt[0] & 0x10) {
    if (hl + 4 > avail) return 0;
    hl += 4 + 4 * (size_t)((pkt[hl + 2] << 8) | pkt[hl + 3]);
  }
  return hl <= avail ? hl : 0;
}

/* The arguments both protect calls take: (ctx, out, payload, roc), checked. */
typedef struct {
  void *ctx;
  uint8_t *out;
  const uint8_t *p;
  size_t plen;
  uint32_t roc;
  /* Length of the header in `out` (its CSRCs and extension included). */
  size_t hl;
} protect_args_t;

/* Reads and checks them (`tag_len`: bytes after the payload); false with a JS exception pending. */
static bool protect_args(napi_env env, napi_callback_info info, const napi_type_tag *kind, size_t tag_len, protect_args_t *a) {
  size_t argc = 4;
  napi_value argv[4];
  napi_typedarray_type tt;
  size_t olen, poff;
  void *pdata;
  napi_value ab;
  const char *bad = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4) bad = "protect(ctx, out, payload, roc)";
  else if (!(a->ctx = tagged(env, argv[0], kind))) return false;
  else if (napi_get_buffer_info(env, argv[1], (void **)&a->out, &olen) != napi_ok) bad = "out must be a Buffer";
  else if (napi_get_typedarray_info(env, argv[2], &tt, &a->plen, &pdata, &ab, &poff) != napi_ok || tt != napi_uint8_array) bad = "payload must be a Uint8Array";
  else if (napi_get_value_uint32(env, argv[3], &a->roc) != napi_ok) bad = "roc must be a number";
  else if (!(a->hl = rtp_hlen(a->out, olen))) bad = "out holds no whole RTP header";
  else if (a->plen > INT32_MAX || olen < a->hl + a->plen + tag_len) bad = "output buffer too small";
  else {
    /* In-place is not supported: the payload is read while the ciphertext is written. */
    a->p = pdata;
    if (a->plen > 0 && a->p < a->out + a->hl + a->plen + tag_len && a->out < a->p + a->plen) bad = "payload overlaps the output buffer";
  }
  if (bad) {
    napi_throw_type_error(env, NULL, bad);
    return false;
  }
  return true;
}

/*
 * SRTP IV: the salt (zero-padded to `len`) XOR SSRC ‖ ROC ‖ SEQ placed at byte `at`,
 * SSRC and SEQ taken from the RTP header in `hdr`. AES-GCM (RFC 7714 §8.1): 12 bytes,
 * at 2. AES-CM (RFC 3711 §4.1.1, the index shifted left 16 bits): 16 bytes, at 4.
 */
static void srtp_iv(uint8_t *iv, size_t len, const uint8_t *salt, size_t salt_len, size_t at, const uint8_t *hdr, uint32_t roc) {
  memset(iv, 0, len);
  memcpy(iv, salt, salt_len);
  const uint8_t tail[10] = {hdr[8], hdr[9], hdr[10], hdr[11], (uint8_t)(roc >> 24), (uint8_t)(roc >> 16), (uint8_t)(roc >> 8), (uint8_t)roc, hdr[2], hdr[3]};
  for (size_t i = 0; i < sizeof(tail); i++) iv[at + i] ^= tail[i];
}

/*
 * Seals one RTP packet with AES-GCM: `pkt` holds the `hl`-byte header; the `plen` payload
 * bytes at `src` (which may be pkt + hl: in place) are encrypted after it and the tag
 * appended (RFC 7714 §8: header as AAD, IV §8.1). False when OpenSSL fails.
 */
static bool gcm_seal(gcm_t *g, uint8_t *pkt, size_t hl, const uint8_t *src, size_t plen, uint32_t roc) {
  uint8_t iv[12];
  srtp_iv(iv, sizeof(iv), g->salt, sizeof(g->salt), 2, pkt, roc); /* RFC 7714 §8.1 */
  int n = 0, fin = 0;
  EVP_CIPHER_CTX *c = g->ctx;
  return EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv) == 1 && EVP_EncryptUpdate(c, NULL, &n, pkt, (int)hl) == 1 &&
         EVP_EncryptUpdate(c, pkt + hl, &n, src, (int)plen) == 1 && EVP_EncryptFinal_ex(c, pkt + hl + n, &fin) == 1 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, GCM_TAG, pkt + hl + plen) == 1;
}

/*
 * protectRtpGcm(ctx, out: Buffer, payload: Uint8Array, roc: number) → packet length
 *
 * `out` holds the RTP header already (12 bytes, or more with CSRCs or a header
 * extension: its own length fields say how long); the payload is encrypted after it and
 * the tag appended.
 */
static napi_value protect_rtp_gcm(napi_env env, napi_callback_info info) {
  protect_args_t a;
  if (!protect_args(env, info, &GCM_TYPE, GCM_TAG, &a)) return NULL;
  gcm_t *g = a.ctx;
  if (!g->ctx) THROW(env, "SRTP context released");
  if (!gcm_seal(g, a.out, a.hl, a.p, a.plen, a.roc)) THROW(env, "AES-GCM encryption failed");
  return num(env, (double)(a.hl + a.plen + GCM_TAG));
}

/*
 * AES_CM_128_HMAC_SHA1_80 (RFC 3711), for browsers that do not offer AES-GCM: AES-128 in
 * counter mode with its key expanded once, and HMAC-SHA1 keyed once (EVP_MAC_init with
 * no key reuses it).
 */
typedef struct {
  EVP_CIPHER_CTX *ctr;
  EVP_MAC *mac;
  EVP_MAC_CTX *hmac;
  uint8_t salt[14];
} cm_t;

static const napi_type_tag CM_TYPE = {0x6761746568737270ULL, 0x636d637478000001ULL};
#define CM_TAG 10

static void cm_free(cm_t *c) {
  if (c->ctr) EVP_CIPHER_CTX_free(c->ctr);
  if (c->hmac) EVP_MAC_CTX_free(c->hmac);
  if (c->mac) EVP_MAC_free(c->mac);
  c->ctr = NULL;
  c->hmac = NULL;
  c->mac = NULL;
}

static void cm_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  cm_free(data);
  free(data);
}

/* cmContext(key: 16 bytes, salt: 14 bytes, authKey: 20 bytes) → External */
static napi_value cm_context(napi_env env, napi_callback_info info) {
  ARGS(env, info, 3, "cmContext(key, salt, authKey)");
  void *key, *salt, *auth;
  size_t klen, slen, alen;
  CHECK(env, napi_get_buffer_info(env, argv[0], &key, &klen));
  CHECK(env, napi_get_buffer_info(env, argv[1], &salt, &slen));
  CHECK(env, napi_get_buffer_info(env, argv[2], &auth, &alen));
  if (klen != 16 || slen != 14 || alen != 20) THROW(env, "AES-CM needs a 16-byte key, a 14-byte salt and a 20-byte auth key");
  cm_t *c = calloc(1, sizeof(cm_t));
  if (!c) THROW(env, "out of memory");
  memcpy(c->salt, salt, 14);
  char digest[] = "SHA1";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0), OSSL_PARAM_construct_end()};
  c->ctr = EVP_CIPHER_CTX_new();
  c->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  c->hmac = c->mac ? EVP_MAC_CTX_new(c->mac) : NULL;
  if (!c->ctr || !c->hmac || EVP_EncryptInit_ex(c->ctr, EVP_aes_128_ctr(), NULL, key, NULL) != 1 ||
      EVP_MAC_init(c->hmac, auth, 20, params) != 1) {
    cm_free(c);
    free(c);
    THROW(env, "AES-CM/HMAC-SHA1 set-up failed");
  }
  napi_value out;
  if (napi_create_external(env, c, cm_finalize, NULL, &out) != napi_ok) {
    cm_free(c);
    free(c);
    THROW(env, "napi_create_external failed");
  }
  CHECK(env, napi_type_tag_object(env, out, &CM_TYPE));
  return out;
}

/*
 * Seals one RTP packet with AES_CM_128_HMAC_SHA1_80, as gcm_seal: IV per RFC 3711
 * §4.1.1, then the 80-bit tag of HMAC-SHA1 over header, ciphertext and ROC (§4.2).
 */
static bool cm_seal(cm_t *c, uint8_t *pkt, size_t hl, const uint8_t *src, size_t plen, uint32_t roc) {
  uint8_t iv[16];
  srtp_iv(iv, sizeof(iv), c->salt, sizeof(c->salt), 4, pkt, roc); /* RFC 3711 §4.1.1 */
  uint8_t rocb[4] = {(uint8_t)(roc >> 24), (uint8_t)(roc >> 16), (uint8_t)(roc >> 8), (uint8_t)roc};
  uint8_t mac[EVP_MAX_MD_SIZE];
  size_t maclen = 0;
  int n = 0;
  if (EVP_EncryptInit_ex(c->ctr, NULL, NULL, NULL, iv) != 1 || EVP_EncryptUpdate(c->ctr, pkt + hl, &n, src, (int)plen) != 1 ||
      EVP_MAC_init(c->hmac, NULL, 0, NULL) != 1 || EVP_MAC_update(c->hmac, pkt, hl + plen) != 1 ||
      EVP_MAC_update(c->hmac, rocb, 4) != 1 || EVP_MAC_final(c->hmac, mac, &maclen, sizeof(mac)) != 1 || maclen < CM_TAG)
    return false;
  memcpy(pkt + hl + plen, mac, CM_TAG);
  return true;
}

/* protectRtpCm(ctx, out: Buffer, payload: Uint8Array, roc: number) → packet length: as protectRtpGcm. */
static napi_value protect_rtp_cm(napi_env env, napi_callback_info info) {
  protect_args_t a;
  if (!protect_args(env, info, &CM_TYPE, CM_TAG, &a)) return NULL;
  cm_t *c = a.ctx;
  if (!c->ctr) THROW(env, "SRTP context released");
  if (!cm_seal(c, a.out, a.hl, a.p, a.plen, a.roc)) THROW(env, "AES-CM/HMAC-SHA1 protection failed");
  return num(env, (double)(a.hl + a.plen + CM_TAG));
}

/* release(ctx): frees the key schedule now rather than at garbage collection. */
static napi_value release(napi_env env, napi_callback_info info) {
  ARGS(env, info, 1, "release(ctx)");
  bool is_cm = false;
  CHECK(env, napi_check_object_type_tag(env, argv[0], &CM_TYPE, &is_cm));
  if (is_cm) {
    cm_t *c = tagged(env, argv[0], &CM_TYPE);
    if (c) cm_free(c);
    return NULL;
  }
  gcm_t *g = tagged(env, argv[0], &GCM_TYPE);
  if (!g) return NULL;
  gcm_free(g);
  return NULL;
}

/* sockaddr(ip: string, port: number) → Buffer holding a sockaddr_in or sockaddr_in6 */
static napi_value make_sockaddr(napi_env env, napi_callback_info info) {
  ARGS(env, info, 2, "sockaddr(ip, port)");
  char ip[64];
  size_t iplen;
  CHECK(env, napi_get_value_string_utf8(env, argv[0], ip, sizeof(ip), &iplen));
  uint32_t port;
  CHECK(env, napi_get_value_uint32(env, argv[1], &port));
  if (port > 65535) THROW(env, "port out of range");
  // An IPv6 zone ("fe80::1%eth0") is cut off: the socket is bound to its interface already.
  char *zone = strchr(ip, '%');
  if (zone) *zone = 0;
  napi_value out;
  void *data;
  struct sockaddr_in a4;
  struct sockaddr_in6 a6;
  memset(&a4, 0, sizeof(a4));
  memset(&a6, 0, sizeof(a6));
  if (inet_pton(AF_INET, ip, &a4.sin_addr) == 1) {
    a4.sin_family = AF_INET;
    a4.sin_port = htons((uint16_t)port);
    CHECK(env, napi_create_buffer_copy(env, sizeof(a4), &a4, &data, &out));
    return out;
  }
  if (inet_pton(AF_INET6, ip, &a6.sin6_addr) == 1) {
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons((uint16_t)port);
    CHECK(env, napi_create_buffer_copy(env, sizeof(a6), &a6, &data, &out));
    return out;
  }
  THROW(env, "not an IP address");
}

/* Segments per UDP_SEGMENT send, and bytes: the kernel's limits (UDP_MAX_SEGMENTS, 64 KiB). */
#define GSO_MAX_SEGMENTS 64
#define GSO_MAX_BYTES 65000
/* Cleared when the kernel refuses UDP_SEGMENT (old kernel, no GSO on the route). */
static _Atomic int gso_ok = 1;

typedef struct {
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iovs[MAX_BATCH];
  /* Destination of datagram i (while grouping). */
  void *addr[MAX_BATCH];
  socklen_t addr_len[MAX_BATCH];
  /* msgs[m] carries datagrams first[m] … first[m] + count[m] − 1 of the batch. */
  uint32_t first[MAX_BATCH];
  uint32_t count[MAX_BATCH];
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } ctl[MAX_BATCH];
} batch_t;
static _Thread_local batch_t B;

/*
 * Writes datagrams i … j − 1 of B (iovs, addr, addr_len), all for socket `fd`, and sets
 * their results: consecutive datagrams of one size for the same address (the last may be
 * shorter) become one UDP GSO send (UDP_SEGMENT): the kernel walks its output path once
 * for all of them and cuts them into separate datagrams, the same on the wire. A result
 * is the bytes written, or −errno: after −EAGAIN (the socket's buffer is full) the rest
 * of the run is left −EAGAIN, in order, for the caller to queue another way; −EMSGSIZE
 * marks datagrams of a GSO send the kernel refused (send them singly). Never waits.
 * Returns how many were written.
 */
static uint32_t send_run(int fd, uint32_t i, uint32_t j, int32_t *results) {
  for (uint32_t k = i; k < j; k++) results[k] = -EAGAIN;
  uint32_t m = 0;
  for (uint32_t k = i; k < j;) {
    uint32_t c = 1;
    size_t seg = B.iovs[k].iov_len, bytes = seg;
    if (gso_ok) {
      while (k + c < j && c < GSO_MAX_SEGMENTS && B.addr_len[k + c] == B.addr_len[k] &&
             memcmp(B.addr[k + c], B.addr[k], B.addr_len[k]) == 0 && B.iovs[k + c].iov_len <= seg &&
             bytes + B.iovs[k + c].iov_len <= GSO_MAX_BYTES) {
        bytes += B.iovs[k + c].iov_len;
        c++;
        if (B.iovs[k + c - 1].iov_len < seg) break; /* a shorter one ends the group */
      }
    }
    struct msghdr *h = &B.msgs[m].msg_hdr;
    memset(h, 0, sizeof(*h));
    h->msg_name = B.addr[k];
    h->msg_namelen = B.addr_len[k];
    h->msg_iov = &B.iovs[k];
    h->msg_iovlen = c;
    if (c > 1) {
      h->msg_control = B.ctl[m].buf;
      h->msg_controllen = sizeof(B.ctl[m].buf);
      struct cmsghdr *cm = CMSG_FIRSTHDR(h);
      cm->cmsg_level = SOL_UDP;
      cm->cmsg_type = UDP_SEGMENT;
      cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t gso = (uint16_t)seg;
      memcpy(CMSG_DATA(cm), &gso, sizeof(gso));
    }
    B.first[m] = k;
    B.count[m] = c;
    m++;
    k += c;
  }
  uint32_t sent = 0;
  for (uint32_t done = 0; done < m;) {
    int r = sendmmsg(fd, &B.msgs[done], m - done, MSG_DONTWAIT);
    if (r > 0) {
      for (uint32_t q = done; q < done + (uint32_t)r; q++) {
        for (uint32_t d = 0; d < B.count[q]; d++) results[B.first[q] + d] = (int32_t)B.iovs[B.first[q] + d].iov_len;
        sent += B.count[q];
      }
      done += (uint32_t)r;
      continue;
    }
    int e = r < 0 ? errno : EIO;
    if (e == EINTR) continue;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) break; /* the rest stay −EAGAIN */
    if (B.count[done] > 1 && (e == EINVAL || e == EMSGSIZE || e == EIO || e == ENOPROTOOPT || e == EOPNOTSUPP)) {
      /*
       * The kernel refused the GSO send: no UDP_SEGMENT at all (stop using it), or not
       * on this route (segments larger than its MTU). Its datagrams come back as
       * −EMSGSIZE for the caller to send one by one, where the kernel may fragment.
       */
      if (e == ENOPROTOOPT || e == EOPNOTSUPP) gso_ok = 0;
      e = EMSGSIZE;
    }
    for (uint32_t d = 0; d < B.count[done]; d++) results[B.first[done] + d] = -e;
    done++;
  }
  return sent;
}

/* An Int32Array or Uint32Array argument's data and length; NULL with a JS exception pending. */
static void *int_array(napi_env env, napi_value v, bool is_unsigned, size_t *len, const char *what) {
  napi_typedarray_type tt;
  size_t off;
  void *data;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &tt, len, &data, &ab, &off) != napi_ok || tt != (is_unsigned ? napi_uint32_array : napi_int32_array)) {
    napi_throw_type_error(env, NULL, what);
    return NULL;
  }
  return data;
}

/* Declares `type *var` (and its length `n_var`) from argument i, an Int32Array or a Uint32Array; returns on error. */
#define INT_ARRAY(env, type, var, i, is_unsigned, what)                 \
  size_t n_##var;                                                      \
  type *var = int_array((env), argv[(i)], (is_unsigned), &n_##var, (what)); \
  if (!var) return NULL

/* A socket address Buffer from sockaddr(); false with a JS exception pending. */
static bool address_arg(napi_env env, napi_value v, void **addr, socklen_t *len) {
  size_t al;
  if (napi_get_buffer_info(env, v, addr, &al) != napi_ok || (al != sizeof(struct sockaddr_in) && al != sizeof(struct sockaddr_in6))) {
    napi_throw_type_error(env, NULL, "bad socket address");
    return false;
  }
  *len = (socklen_t)al;
  return true;
}

/*
 * sendBatch(fds: Int32Array, bufs: Buffer[], lens: Int32Array, addrs: Buffer[], n, results: Int32Array)
 *   → datagrams written
 *
 * `addrs[i]` comes from sockaddr(). Consecutive datagrams for the same fd go out in one
 * sendmmsg, as send_run describes; results[i] as there.
 */
static napi_value send_batch(napi_env env, napi_callback_info info) {
  ARGS(env, info, 6, "sendBatch(fds, bufs, lens, addrs, n, results)");
  INT_ARRAY(env, int32_t, fds, 0, false, "fds must be an Int32Array");
  INT_ARRAY(env, int32_t, lens, 2, false, "lens must be an Int32Array");
  INT_ARRAY(env, int32_t, results, 5, false, "results must be an Int32Array");
  uint32_t n;
  CHECK(env, napi_get_value_uint32(env, argv[4], &n));
  if (n > n_fds || n > n_lens || n > n_results || n > MAX_BATCH) THROW(env, "batch larger than its arrays");
  for (uint32_t i = 0; i < n; i++) {
    napi_value b, a;
    void *bp;
    size_t bl;
    CHECK(env, napi_get_element(env, argv[1], i, &b));
    CHECK(env, napi_get_buffer_info(env, b, &bp, &bl));
    CHECK(env, napi_get_element(env, argv[3], i, &a));
    if (!address_arg(env, a, &B.addr[i], &B.addr_len[i])) return NULL;
    if (lens[i] <= 0 || (size_t)lens[i] > bl) THROW(env, "datagram length past its buffer");
    B.iovs[i].iov_base = bp;
    B.iovs[i].iov_len = (size_t)lens[i];
  }
  uint32_t sent = 0;
  for (uint32_t i = 0; i < n;) {
    uint32_t j = i + 1;
    while (j < n && fds[j] == fds[i]) j++;
    sent += send_run(fds[i], i, j, results);
    i = j;
  }
  return num(env, sent);
}

/*
 * The slots one sealSend call has listed so far, to refuse a slot listed twice (sealed twice,
 * it would grow past its checked bound). Open addressing at most half full (a batch holds at
 * most MAX_BATCH positions); entries of earlier calls are stale by their generation.
 */
#define SEEN_BITS 11
#define SEEN_SIZE (1u << SEEN_BITS)
_Static_assert(SEEN_SIZE >= 2 * MAX_BATCH, "the seen-slot table must stay at most half full");
static _Thread_local struct {
  uint32_t gen;
  uint32_t stamp[SEEN_SIZE];
  int32_t slot[SEEN_SIZE];
} SEEN;

static void seen_reset(void) {
  if (++SEEN.gen == 0) {
    memset(SEEN.stamp, 0, sizeof SEEN.stamp);
    SEEN.gen = 1;
  }
}

/* Records slot s; true when this call listed it already. */
static bool seen_before(int32_t s) {
  uint32_t h = ((uint32_t)s * 2654435761u) >> (32 - SEEN_BITS);
  while (SEEN.stamp[h] == SEEN.gen) {
    if (SEEN.slot[h] == s) return true;
    h = (h + 1) & (SEEN_SIZE - 1);
  }
  SEEN.stamp[h] = SEEN.gen;
  SEEN.slot[h] = s;
  return false;
}

/*
 * sealSend(stage: Buffer, slot, lens: Int32Array, rocs: Uint32Array, order: Int32Array,
 *          ctxs: Array, addrs: Buffer[], fds: Int32Array, ends: Int32Array, runs, results: Int32Array)
 *   → datagrams written
 *
 * A fan-out's RTP packets in one call: SRTP and the writes, with no JavaScript object per
 * packet. Packet s waits in `stage` at s·slot as plaintext: its 12-byte header and the
 * payload, lens[s] bytes. order[p] lists them in send order, each slot once (a slot listed
 * twice is refused: it would be sealed twice); run r covers positions
 * ends[r − 1] … ends[r] − 1 (from 0 for r = 0), all for one viewer: its SRTP context
 * ctxs[r] (a GCM or CM handle; null: already sealed, lens[s] is the final length), its
 * socket fds[r] and destination addrs[r] (from sockaddr()). Each packet is sealed in
 * place with ROC rocs[s] and lens[s] becomes its SRTP length; then the run is written as
 * send_run writes one (results[p] as there). fds[r] < 0: sealed, not written, results 0
 * (the caller writes those another way). A context released before the call: its run's
 * results are −EBADF, nothing sealed.
 */
static napi_value seal_send(napi_env env, napi_callback_info info) {
  ARGS(env, info, 11, "sealSend(stage, slot, lens, rocs, order, ctxs, addrs, fds, ends, runs, results)");
  uint8_t *stage;
  size_t stage_len;
  uint32_t slot, runs;
  CHECK(env, napi_get_buffer_info(env, argv[0], (void **)&stage, &stage_len));
  CHECK(env, napi_get_value_uint32(env, argv[1], &slot));
  INT_ARRAY(env, int32_t, lens, 2, false, "lens must be an Int32Array");
  INT_ARRAY(env, uint32_t, rocs, 3, true, "rocs must be a Uint32Array");
  INT_ARRAY(env, int32_t, order, 4, false, "order must be an Int32Array");
  INT_ARRAY(env, int32_t, fds, 7, false, "fds must be an Int32Array");
  INT_ARRAY(env, int32_t, ends, 8, false, "ends must be an Int32Array");
  INT_ARRAY(env, int32_t, results, 10, false, "results must be an Int32Array");
  CHECK(env, napi_get_value_uint32(env, argv[9], &runs));
  if (slot < RTP_HEADER + GCM_TAG || runs > n_fds || runs > n_ends) THROW(env, "bad slot size or run count");
  size_t slots = stage_len / slot;
  uint32_t n = runs ? (uint32_t)ends[runs - 1] : 0;
  if (n > n_order || n > n_results || n > MAX_BATCH) THROW(env, "batch larger than its arrays");
  /* Every argument is checked before anything is sealed: a throw leaves the stage as it was. */
  seen_reset();
  for (uint32_t p = 0, r = 0; r < runs; r++) {
    if (ends[r] < (int32_t)p || (uint32_t)ends[r] > n) THROW(env, "run ends out of order");
    napi_value rc;
    napi_valuetype rct;
    CHECK(env, napi_get_element(env, argv[5], r, &rc));
    CHECK(env, napi_typeof(env, rc, &rct));
    bool to_seal = rct != napi_null && rct != napi_undefined;
    for (; p < (uint32_t)ends[r]; p++) {
      int32_t s = order[p];
      if (s < 0 || (size_t)s >= slots || (size_t)s >= n_lens || (size_t)s >= n_rocs || lens[s] < RTP_HEADER || (size_t)lens[s] + GCM_TAG > slot)
        THROW(env, "staged packet out of bounds");
      if (to_seal && !rtp_hlen(stage + (size_t)s * slot, (size_t)lens[s])) THROW(env, "staged packet without a whole RTP header");
      if (seen_before(s)) THROW(env, "staged packet listed twice in order");
    }
  }
  uint32_t sent = 0;
  for (uint32_t r = 0, p = 0; r < runs; r++) {
    uint32_t end = (uint32_t)ends[r];
    napi_value cv, av;
    napi_valuetype ct;
    CHECK(env, napi_get_element(env, argv[5], r, &cv));
    CHECK(env, napi_typeof(env, cv, &ct));
    gcm_t *g = NULL;
    cm_t *c = NULL;
    if (ct != napi_null && ct != napi_undefined) {
      bool is_cm = false;
      CHECK(env, napi_check_object_type_tag(env, cv, &CM_TYPE, &is_cm));
      if (is_cm) c = tagged(env, cv, &CM_TYPE);
      else g = tagged(env, cv, &GCM_TYPE);
      if (!c && !g) return NULL;
    }
    CHECK(env, napi_get_element(env, argv[6], r, &av));
    void *addr;
    socklen_t addr_len;
    if (!address_arg(env, av, &addr, &addr_len)) return NULL;
    if ((g && !g->ctx) || (c && !c->ctr)) {
      for (; p < end; p++) results[p] = -EBADF;
      continue;
    }
    uint32_t first = p;
    for (; p < end; p++) {
      int32_t s = order[p];
      uint8_t *pkt = stage + (size_t)s * slot;
      size_t hl = rtp_hlen(pkt, (size_t)lens[s]);
      size_t plen = (size_t)lens[s] - hl;
      bool ok = true;
      if (g) {
        ok = gcm_seal(g, pkt, hl, pkt + hl, plen, rocs[s]);
        lens[s] += GCM_TAG;
      } else if (c) {
        ok = cm_seal(c, pkt, hl, pkt + hl, plen, rocs[s]);
        lens[s] += CM_TAG;
      }
      if (!ok) THROW(env, "SRTP protection failed");
      B.iovs[p].iov_base = pkt;
      B.iovs[p].iov_len = (size_t)lens[s];
      B.addr[p] = addr;
      B.addr_len[p] = addr_len;
    }
    if (fds[r] < 0) {
      for (uint32_t q = first; q < end; q++) results[q] = 0;
      continue;
    }
    sent += send_run(fds[r], first, end, results);
  }
  return num(env, sent);
}

/*
 * schedBatch() → 0 or errno: the calling thread to SCHED_BATCH (sched(7)): the same share
 * of CPU, but its wake-ups do not preempt the thread that is running. For media worker
 * threads: a worker woken by the main thread's first post must not take the main
 * thread's core before the batch reaches the other workers.
 */
static napi_value sched_batch(napi_env env, napi_callback_info info) {
  (void)info;
  struct sched_param sp;
  memset(&sp, 0, sizeof(sp));
  return num(env, sched_setscheduler(0, SCHED_BATCH, &sp) == 0 ? 0 : errno);
}

/* gso(): whether UDP GSO is still in use (diagnostics, tests). */
static napi_value gso_state(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_get_boolean(env, gso_ok != 0, &out);
  return out;
}

/*
 * UDP sockets owned here, read with recvmmsg (used by the TURN relay, whose cost is the
 * per-datagram receive path: Node's dgram makes a 64 KiB allocation, a Buffer, an address
 * string and a `message` event per datagram). Each socket's fd is watched by a uv_poll on
 * Node's own loop. What every readable socket of a loop turn delivers is gathered into
 * one slab per thread and handed to JavaScript once, from a uv_check handle right after
 * the poll phase (or earlier when the slab fills): with many relay sockets each carrying
 * a datagram or two per turn, one entry into JavaScript instead of one per socket.
 */
#define RX_BATCH 64  /* datagrams per recvmmsg */
#define RX_SLOTS 256 /* datagrams gathered per dispatch */
#define RX_META 5    /* per datagram: length (−1 cut, −2 socket error), family (or errno), port, IPv4, socket id */

typedef struct {
  napi_env env;
  napi_ref dispatch, slab_ref, meta_ref, addr6_ref;
  napi_async_context async;
  uv_check_t check;
  uint8_t *slab;
  size_t slot;
  int32_t *meta;
  uint8_t *addr6;
  int count;
  int checking;
} rx_shared_t;

typedef struct {
  uv_poll_t poll;
  rx_shared_t *shared;
  int fd;
  int32_t id;
  int closing;
} udp_rx_t;

/* recvmmsg's headers, shared by every receiver of this thread (libuv never nests callbacks). */
static _Thread_local struct {
  struct mmsghdr msgs[RX_BATCH];
  struct iovec iovs[RX_BATCH];
  struct sockaddr_storage from[RX_BATCH];
} RX;

static void rx_closed(uv_handle_t *h) {
  udp_rx_t *r = h->data;
  close(r->fd);
  free(r);
}

/* Hands the gathered datagrams to JavaScript (dispatch(n)), then starts a new slab. */
static void rx_dispatch(rx_shared_t *sh) {
  int32_t n = sh->count;
  if (n == 0) return;
  napi_env env = sh->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, arg, res;
  if (napi_get_reference_value(env, sh->dispatch, &cb) == napi_ok && cb && napi_get_global(env, &recv) == napi_ok &&
      napi_create_int32(env, n, &arg) == napi_ok) {
    /* make_callback, not call_function: microtasks and nextTicks run after it, as for any I/O callback. */
    if (napi_make_callback(env, sh->async, recv, cb, 1, &arg, &res) == napi_pending_exception) {
      napi_value err;
      if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
  sh->count = 0;
}

static void rx_check(uv_check_t *h) {
  rx_shared_t *sh = h->data;
  uv_check_stop(&sh->check);
  sh->checking = 0;
  rx_dispatch(sh);
}

/* Makes sure what was gathered is dispatched after this poll phase. */
static void rx_schedule(rx_shared_t *sh) {
  if (sh->checking || sh->count == 0) return;
  sh->checking = 1;
  uv_check_start(&sh->check, rx_check);
}

static void rx_error(udp_rx_t *r, int err) {
  rx_shared_t *sh = r->shared;
  if (sh->count == RX_SLOTS) rx_dispatch(sh);
  int32_t *m = sh->meta + sh->count * RX_META;
  m[0] = -2;
  m[1] = err;
  m[2] = m[3] = 0;
  m[4] = r->id;
  sh->count++;
  rx_schedule(sh);
}

static void rx_readable(uv_poll_t *h, int status, int events) {
  udp_rx_t *r = h->data;
  rx_shared_t *sh = r->shared;
  (void)events;
  if (r->closing) return;
  if (status < 0) {
    /* The socket is unusable (libuv reports a negative errno): stop watching, report once. */
    uv_poll_stop(&r->poll);
    rx_error(r, -status);
    return;
  }
  /* Bounded rounds so that a flood cannot hold the loop; the rest waits for the next turn. */
  for (int round = 0; round < 16 && !r->closing; round++) {
    if (sh->count > RX_SLOTS - RX_BATCH) rx_dispatch(sh); /* room for a whole round */
    if (r->closing) break;
    int base = sh->count;
    for (int i = 0; i < RX_BATCH; i++) {
      RX.iovs[i].iov_base = sh->slab + (size_t)(base + i) * sh->slot;
      RX.iovs[i].iov_len = sh->slot;
      memset(&RX.msgs[i].msg_hdr, 0, sizeof(struct msghdr));
      RX.msgs[i].msg_hdr.msg_iov = &RX.iovs[i];
      RX.msgs[i].msg_hdr.msg_iovlen = 1;
      RX.msgs[i].msg_hdr.msg_name = &RX.from[i];
      RX.msgs[i].msg_hdr.msg_namelen = sizeof(RX.from[i]);
    }
    int n = recvmmsg(r->fd, RX.msgs, RX_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) rx_error(r, errno);
      break;
    }
    for (int i = 0; i < n; i++) {
      int32_t *m = sh->meta + (base + i) * RX_META;
      /* A datagram longer than the slot arrives cut (MSG_TRUNC): length −1, the caller drops it. */
      m[0] = (RX.msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? -1 : (int32_t)RX.msgs[i].msg_len;
      if (RX.from[i].ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&RX.from[i];
        m[1] = 6;
        m[2] = ntohs(a->sin6_port);
        m[3] = 0;
        memcpy(sh->addr6 + (size_t)(base + i) * 16, &a->sin6_addr, 16);
      } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&RX.from[i];
        m[1] = 4;
        m[2] = ntohs(a->sin_port);
        m[3] = (int32_t)ntohl(a->sin_addr.s_addr);
      }
      m[4] = r->id;
    }
    sh->count += n;
    if (n < RX_BATCH) break;
  }
  rx_schedule(sh);
}

static void rx_freed(uv_handle_t *h) {
  free(h->data);
}

static void rx_cleanup(void *arg) {
  rx_shared_t *sh = arg;
  uv_check_stop(&sh->check);
  uv_close((uv_handle_t *)&sh->check, rx_freed);
}

/*
 * udpSetup(slab: Buffer, meta: Int32Array, addr6: Buffer, dispatch(n)) — once per thread.
 * Datagram i of a dispatch is slab[i·slot, i·slot + meta[5i]) with slot = slab.length /
 * 256; meta[5i + 1] family, [5i + 2] port, [5i + 3] IPv4 address, [5i + 4] the socket's
 * id; IPv6 bytes at addr6[16i]. meta[5i] = −1: longer than a slot (cut); −2: the socket
 * failed with errno meta[5i + 1]. The views are valid during the dispatch only.
 */
static napi_value udp_setup(napi_env env, napi_callback_info info) {
  ARGS(env, info, 4, "udpSetup(slab, meta, addr6, dispatch)");
  rx_shared_t *old = NULL;
  if (napi_get_instance_data(env, (void **)&old) == napi_ok && old) THROW(env, "udpSetup: already set up on this thread");
  uint8_t *slab, *addr6;
  size_t slen, alen, mlen, off;
  void *mdata;
  napi_value ab, name;
  napi_typedarray_type tt;
  napi_valuetype vt;
  CHECK(env, napi_get_buffer_info(env, argv[0], (void **)&slab, &slen));
  CHECK(env, napi_get_typedarray_info(env, argv[1], &tt, &mlen, &mdata, &ab, &off));
  CHECK(env, napi_get_buffer_info(env, argv[2], (void **)&addr6, &alen));
  CHECK(env, napi_typeof(env, argv[3], &vt));
  if (tt != napi_int32_array || mlen < RX_SLOTS * RX_META) THROW(env, "meta must be an Int32Array of 1280");
  if (slen < RX_SLOTS * 64 || alen < RX_SLOTS * 16) THROW(env, "slab or addr6 too small");
  if (vt != napi_function) THROW(env, "dispatch must be a function");
  rx_shared_t *sh = calloc(1, sizeof(rx_shared_t));
  if (!sh) THROW(env, "out of memory");
  uv_loop_t *loop;
  sh->env = env;
  sh->slab = slab;
  sh->slot = slen / RX_SLOTS;
  sh->meta = mdata;
  sh->addr6 = addr6;
  if (napi_create_reference(env, argv[3], 1, &sh->dispatch) != napi_ok || napi_create_reference(env, argv[0], 1, &sh->slab_ref) != napi_ok ||
      napi_create_reference(env, argv[1], 1, &sh->meta_ref) != napi_ok || napi_create_reference(env, argv[2], 1, &sh->addr6_ref) != napi_ok ||
      napi_create_string_utf8(env, "gatehouse.udp", NAPI_AUTO_LENGTH, &name) != napi_ok || napi_async_init(env, NULL, name, &sh->async) != napi_ok ||
      napi_get_uv_event_loop(env, &loop) != napi_ok || uv_check_init(loop, &sh->check) != 0) {
    free(sh); /* references die with the environment */
    THROW(env, "udpSetup failed");
  }
  sh->check.data = sh;
  uv_unref((uv_handle_t *)&sh->check); /* only sockets keep the loop alive */
  /* Lives as long as the thread's environment; its check handle is closed with it. */
  CHECK(env, napi_set_instance_data(env, sh, NULL, NULL));
  CHECK(env, napi_add_env_cleanup_hook(env, rx_cleanup, sh));
  return NULL;
}

/*
 * udpOpen(family: 4 | 6, address: string, port: number, bufferBytes: number) → [fd, port]
 * A non-blocking UDP socket bound to address:port (0: any), IPv6 sockets v6-only.
 * Throws an Error whose `code` is the errno name for bind failures (EADDRINUSE…).
 */
static napi_value udp_open(napi_env env, napi_callback_info info) {
  ARGS(env, info, 4, "udpOpen(family, address, port, bufferBytes)");
  uint32_t family, port, bytes;
  char ip[64];
  size_t iplen;
  CHECK(env, napi_get_value_uint32(env, argv[0], &family));
  CHECK(env, napi_get_value_string_utf8(env, argv[1], ip, sizeof(ip), &iplen));
  CHECK(env, napi_get_value_uint32(env, argv[2], &port));
  CHECK(env, napi_get_value_uint32(env, argv[3], &bytes));
  if ((family != 4 && family != 6) || port > 65535) THROW(env, "udpOpen: bad family or port");
  struct sockaddr_storage ss;
  socklen_t sl;
  memset(&ss, 0, sizeof(ss));
  if (family == 4) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, ip, &a->sin_addr) != 1) THROW(env, "udpOpen: not an IPv4 address");
    sl = sizeof(*a);
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, ip, &a->sin6_addr) != 1) THROW(env, "udpOpen: not an IPv6 address");
    sl = sizeof(*a);
  }
  int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) THROW(env, "udpOpen: socket() failed");
  int one = 1;
  if (family == 6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bytes > 0) {
    int b = (int)(bytes > INT32_MAX ? INT32_MAX : bytes);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &b, sizeof(b));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &b, sizeof(b));
  }
  if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
    int e = errno;
    close(fd);
    napi_value msg, code, err;
    const char *name = e == EADDRINUSE ? "EADDRINUSE" : e == EADDRNOTAVAIL ? "EADDRNOTAVAIL" : e == EACCES ? "EACCES" : "EINVAL";
    napi_create_string_utf8(env, strerror(e), NAPI_AUTO_LENGTH, &msg);
    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, msg, &err);
    napi_throw(env, err);
    return NULL;
  }
  socklen_t got = sizeof(ss);
  getsockname(fd, (struct sockaddr *)&ss, &got);
  uint16_t bound = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  napi_value out, f, p;
  CHECK(env, napi_create_array_with_length(env, 2, &out));
  CHECK(env, napi_create_int32(env, fd, &f));
  CHECK(env, napi_create_int32(env, bound, &p));
  CHECK(env, napi_set_element(env, out, 0, f));
  CHECK(env, napi_set_element(env, out, 1, p));
  return out;
}

/* udpReceive(fd, id) → External: watches fd; its datagrams reach udpSetup's dispatch tagged `id`. Owns fd from now on. */
static napi_value udp_receive(napi_env env, napi_callback_info info) {
  ARGS(env, info, 2, "udpReceive(fd, id)");
  rx_shared_t *sh = NULL;
  if (napi_get_instance_data(env, (void **)&sh) != napi_ok || !sh) THROW(env, "udpReceive before udpSetup");
  int32_t fd, id;
  CHECK(env, napi_get_value_int32(env, argv[0], &fd));
  CHECK(env, napi_get_value_int32(env, argv[1], &id));
  udp_rx_t *r = calloc(1, sizeof(udp_rx_t));
  if (!r) THROW(env, "out of memory");
  r->shared = sh;
  r->fd = fd;
  r->id = id;
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init_socket(loop, &r->poll, fd) != 0) {
    free(r);
    THROW(env, "udpReceive: the fd cannot be watched");
  }
  r->poll.data = r;
  uv_poll_start(&r->poll, UV_READABLE, rx_readable);
  napi_value out;
  CHECK(env, napi_create_external(env, r, NULL, NULL, &out));
  CHECK(env, napi_type_tag_object(env, out, &RX_TYPE));
  return out;
}

/*
 * udpClose(handle): stops watching and closes the socket (once; later calls do nothing).
 * Datagrams of it already gathered are still dispatched; the caller drops them.
 */
static napi_value udp_close(napi_env env, napi_callback_info info) {
  ARGS(env, info, 1, "udpClose(handle)");
  udp_rx_t *r = tagged(env, argv[0], &RX_TYPE);
  if (!r || r->closing) return NULL;
  r->closing = 1;
  uv_poll_stop(&r->poll);
  uv_close((uv_handle_t *)&r->poll, rx_closed);
  return NULL;
}

/*
 * rtpHeaderLength(packet: Uint8Array) → bytes before the payload (0: not a whole header).
 * Also tells the JavaScript side that this build seals packets with header extensions.
 */
static napi_value rtp_header_length(napi_env env, napi_callback_info info) {
  ARGS(env, info, 1, "rtpHeaderLength(packet)");
  napi_typedarray_type tt;
  size_t len, off;
  void *data;
  napi_value ab;
  if (napi_get_typedarray_info(env, argv[0], &tt, &len, &data, &ab, &off) != napi_ok || tt != napi_uint8_array) THROW(env, "packet must be a Uint8Array");
  return num(env, (double)rtp_hlen(data, len));
}

/* closeFd(fd): closes a socket from udpOpen that never started receiving. */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  ARGS(env, info, 1, "closeFd(fd)");
  int32_t fd;
  CHECK(env, napi_get_value_int32(env, argv[0], &fd));
  if (fd >= 0) close(fd);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"gcmContext", NULL, gcm_context, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"protectRtpGcm", NULL, protect_rtp_gcm, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"cmContext", NULL, cm_context, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"protectRtpCm", NULL, protect_rtp_cm, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"release", NULL, release, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"sendBatch", NULL, send_batch, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"sealSend", NULL, seal_send, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"schedBatch", NULL, sched_batch, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"sockaddr", NULL, make_sockaddr, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"gso", NULL, gso_state, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"udpOpen", NULL, udp_open, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"udpSetup", NULL, udp_setup, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"udpReceive", NULL, udp_receive, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"udpClose", NULL, udp_close, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"rtpHeaderLength", NULL, rtp_header_length, NULL, NULL, NULL, napi_default_jsproperty, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) return NULL;
  return exports;
}
