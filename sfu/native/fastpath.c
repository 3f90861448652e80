/*
 * The forwarding hot path in native code: SRTP AES-GCM protection with a key schedule
 * kept per viewer, and datagram writes straight to a socket's file descriptor, many per
 * system call (sendmmsg).
 *
 * Why ours and not node:crypto + dgram: per packet, node:crypto creates a cipher object
 * (re-running the AES key expansion) and crosses into C++ five times (createCipheriv,
 * setAAD, update, final, getAuthTag), and every dgram write is one JavaScript call into
 * libuv with the destination parsed from a string and one system call. Here one call
 * protects a packet with a context whose key is expanded once, and one call writes the
 * whole batch of a fan-out, grouping consecutive datagrams for the same socket into one
 * sendmmsg. Measured costs are in sfu/native/index.ts.
 *
 * OpenSSL is the one inside Node (its EVP symbols are resolved from the node binary when
 * the addon loads); headers come from Node's own include directory. Node-API only (no
 * V8 or libuv ABI), context-aware so that media worker threads can load it.
 *
 * Nothing here keeps a JavaScript object or a pointer into one past the call that
 * received it; a context is freed by the garbage collector or by `release`.
 */
#define NAPI_VERSION 8
#define _GNU_SOURCE
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <node_api.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define RTP_HEADER 12
#define GCM_TAG 16
#define MAX_BATCH 1024

typedef struct {
  EVP_CIPHER_CTX *ctx;
  uint8_t salt[12];
} gcm_t;

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
  return out;
}

/*
 * protectRtpGcm(ctx, out: Buffer, payload: Uint8Array, roc: number) → packet length
 *
 * `out` holds the 12-byte RTP header (no CSRC, no extension) already; the payload is
 * encrypted after it and the tag appended (RFC 7714 §8: header as AAD, IV §8.1).
 */
static napi_value protect_rtp_gcm(napi_env env, napi_callback_info info) {
  ARGS(env, info, 4, "protectRtpGcm(ctx, out, payload, roc)");
  gcm_t *g;
  CHECK(env, napi_get_value_external(env, argv[0], (void **)&g));
  if (!g->ctx) THROW(env, "SRTP context released");
  uint8_t *out;
  size_t olen;
  CHECK(env, napi_get_buffer_info(env, argv[1], (void **)&out, &olen));
  napi_typedarray_type tt;
  size_t plen;
  void *pdata;
  napi_value ab;
  size_t poff;
  CHECK(env, napi_get_typedarray_info(env, argv[2], &tt, &plen, &pdata, &ab, &poff));
  if (tt != napi_uint8_array) THROW(env, "payload must be a Uint8Array");
  uint32_t roc;
  CHECK(env, napi_get_value_uint32(env, argv[3], &roc));
  if (olen < RTP_HEADER + plen + GCM_TAG || plen > INT32_MAX) THROW(env, "output buffer too small");
  /* In-place is not supported: the payload is read while the ciphertext is written. */
  const uint8_t *p = pdata;
  if (plen > 0 && p < out + RTP_HEADER + plen + GCM_TAG && out < p + plen) THROW(env, "payload overlaps the output buffer");

  uint8_t iv[12];
  const uint8_t *s = g->salt;
  iv[0] = s[0];
  iv[1] = s[1];
  iv[2] = s[2] ^ out[8];
  iv[3] = s[3] ^ out[9];
  iv[4] = s[4] ^ out[10];
  iv[5] = s[5] ^ out[11];
  iv[6] = s[6] ^ (uint8_t)(roc >> 24);
  iv[7] = s[7] ^ (uint8_t)(roc >> 16);
  iv[8] = s[8] ^ (uint8_t)(roc >> 8);
  iv[9] = s[9] ^ (uint8_t)roc;
  iv[10] = s[10] ^ out[2];
  iv[11] = s[11] ^ out[3];

  int n = 0, fin = 0;
  EVP_CIPHER_CTX *c = g->ctx;
  if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv) != 1 || EVP_EncryptUpdate(c, NULL, &n, out, RTP_HEADER) != 1 ||
      EVP_EncryptUpdate(c, out + RTP_HEADER, &n, pdata, (int)plen) != 1 ||
      EVP_EncryptFinal_ex(c, out + RTP_HEADER + n, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, GCM_TAG, out + RTP_HEADER + plen) != 1) {
    THROW(env, "AES-GCM encryption failed");
  }
  return num(env, (double)(RTP_HEADER + plen + GCM_TAG));
}

/* release(ctx): frees the key schedule now rather than at garbage collection. */
static napi_value release(napi_env env, napi_callback_info info) {
  ARGS(env, info, 1, "release(ctx)");
  gcm_t *g;
  CHECK(env, napi_get_value_external(env, argv[0], (void **)&g));
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
 * sendBatch(fds: Int32Array, bufs: Buffer[], lens: Int32Array, addrs: Buffer[], n, results: Int32Array)
 *   → datagrams written
 *
 * `addrs[i]` comes from sockaddr(). Consecutive datagrams for the same fd go out in one
 * sendmmsg; within it, consecutive datagrams of one size for the same address (the last
 * may be shorter) become one UDP GSO send (UDP_SEGMENT): the kernel walks its output
 * path once for all of them and cuts them into separate datagrams, the same on the wire.
 * results[i] = bytes written, or −errno. After −EAGAIN (the socket's buffer is full) the
 * rest of that socket's datagrams are left as −EAGAIN, in order, for the caller to queue
 * another way; −EMSGSIZE marks datagrams of a GSO send the kernel refused (send them
 * singly). The sockets stay non-blocking (libuv's): this never waits.
 */
static napi_value send_batch(napi_env env, napi_callback_info info) {
  ARGS(env, info, 6, "sendBatch(fds, bufs, lens, addrs, n, results)");
  napi_typedarray_type tt;
  size_t off;
  void *data;
  napi_value ab;
  int32_t *fds, *lens, *results;
  size_t nfds, nlens, nres;
  CHECK(env, napi_get_typedarray_info(env, argv[0], &tt, &nfds, &data, &ab, &off));
  if (tt != napi_int32_array) THROW(env, "fds must be an Int32Array");
  fds = data;
  CHECK(env, napi_get_typedarray_info(env, argv[2], &tt, &nlens, &data, &ab, &off));
  if (tt != napi_int32_array) THROW(env, "lens must be an Int32Array");
  lens = data;
  CHECK(env, napi_get_typedarray_info(env, argv[5], &tt, &nres, &data, &ab, &off));
  if (tt != napi_int32_array) THROW(env, "results must be an Int32Array");
  results = data;
  uint32_t n;
  CHECK(env, napi_get_value_uint32(env, argv[4], &n));
  if (n > nfds || n > nlens || n > nres || n > MAX_BATCH) THROW(env, "batch larger than its arrays");

  /* Datagrams: iovs[i], and the address of each in msgs[i] (used while grouping). */
  void *addr_of[MAX_BATCH];
  socklen_t addr_len[MAX_BATCH];
  for (uint32_t i = 0; i < n; i++) {
    napi_value b, a;
    void *bp, *ap;
    size_t bl, al;
    CHECK(env, napi_get_element(env, argv[1], i, &b));
    CHECK(env, napi_get_buffer_info(env, b, &bp, &bl));
    CHECK(env, napi_get_element(env, argv[3], i, &a));
    CHECK(env, napi_get_buffer_info(env, a, &ap, &al));
    if (lens[i] <= 0 || (size_t)lens[i] > bl) THROW(env, "datagram length past its buffer");
    if (al != sizeof(struct sockaddr_in) && al != sizeof(struct sockaddr_in6)) THROW(env, "bad socket address");
    B.iovs[i].iov_base = bp;
    B.iovs[i].iov_len = (size_t)lens[i];
    addr_of[i] = ap;
    addr_len[i] = (socklen_t)al;
    results[i] = -EAGAIN;
  }

  uint32_t sent = 0;
  uint32_t i = 0;
  while (i < n) {
    /* One socket's run: datagrams i … j − 1. */
    uint32_t j = i + 1;
    while (j < n && fds[j] == fds[i]) j++;
    /* Pack the run into messages. */
    uint32_t m = 0;
    for (uint32_t k = i; k < j;) {
      uint32_t c = 1;
      size_t seg = B.iovs[k].iov_len, bytes = seg;
      if (gso_ok) {
        while (k + c < j && c < GSO_MAX_SEGMENTS && addr_len[k + c] == addr_len[k] &&
               memcmp(addr_of[k + c], addr_of[k], addr_len[k]) == 0 && B.iovs[k + c].iov_len <= seg &&
               bytes + B.iovs[k + c].iov_len <= GSO_MAX_BYTES) {
          bytes += B.iovs[k + c].iov_len;
          c++;
          if (B.iovs[k + c - 1].iov_len < seg) break; /* a shorter one ends the group */
        }
      }
      struct msghdr *h = &B.msgs[m].msg_hdr;
      memset(h, 0, sizeof(*h));
      h->msg_name = addr_of[k];
      h->msg_namelen = addr_len[k];
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
    /* Send the messages; stop this socket at EAGAIN. */
    for (uint32_t done = 0; done < m;) {
      int r = sendmmsg(fds[i], &B.msgs[done], m - done, MSG_DONTWAIT);
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
    i = j;
  }
  return num(env, sent);
}

/* gso(): whether UDP GSO is still in use (diagnostics, tests). */
static napi_value gso_state(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_get_boolean(env, gso_ok != 0, &out);
  return out;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"gcmContext", NULL, gcm_context, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"protectRtpGcm", NULL, protect_rtp_gcm, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"release", NULL, release, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"sendBatch", NULL, send_batch, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"sockaddr", NULL, make_sockaddr, NULL, NULL, NULL, napi_default_jsproperty, NULL},
      {"gso", NULL, gso_state, NULL, NULL, NULL, napi_default_jsproperty, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) return NULL;
  return exports;
}
