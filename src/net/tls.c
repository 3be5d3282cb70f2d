/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tls.c - TLS 1.3 through OpenSSL 3 with a BIO of rmq's own (tls.h).
 *
 * The BIO never touches the socket: its read takes the ciphertext the
 * ring just received (net_tls_input sets it), its write appends records to
 * the connection's TLS buffer, which conn.c sends.  OpenSSL is asked to
 * write a record only when the buffer has room for a whole one, so a
 * write never fails half way.
 */
#include "net/tls.h"

#include "net/net_int.h"

#include "core/log.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#define TLS_OUT_BYTES (128u << 10)            /* records waiting to be sent */
/* Room a write needs: one record of 16 KiB and its framing, and 4 KiB left
 * after it for what reading makes OpenSSL write (KeyUpdate answers,
 * tickets, alerts), which must never find the buffer full. */
#define TLS_RECORD_ROOM (16384u + 512u + 4096u)

struct rmq_tls_ctx {
	struct rmq_tls_config cfg;            /* paths owned (strdup) */
	pthread_mutex_t mu;
	SSL_CTX *ctx;                         /* the current one (a count held) */
};

struct net_tls {
	SSL *ssl;
	const uint8_t *in;                    /* ciphertext being read ... */
	size_t in_len;                        /* ... and how much is left */
	uint8_t *out;                         /* TLS_OUT_BYTES: records to send */
	uint32_t out_head, out_tail;
	bool done;                            /* the handshake finished */
	char peer[256];                       /* a client certificate's identity */
};

/* ---- contexts -------------------------------------------------------------------- */

static void ssl_why(char *err, size_t errlen, const char *what, const char *path)
{
	char reason[256] = "";
	unsigned long e = ERR_peek_last_error();
	if (e)
		ERR_error_string_n(e, reason, sizeof(reason));
	ERR_clear_error();
	snprintf(err, errlen, "%s%s%s: %s", what, path ? " " : "", path ? path : "",
		 reason[0] ? reason : "failed");
}

/* ALPN: h2 or nothing.  A client that does not offer it gets the
 * no_application_protocol alert (RFC 7301), which names the fault. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	for (unsigned i = 0; i < inlen;) {
		unsigned n = in[i];
		if (i + 1 + n > inlen)
			break;
		if (n == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
			*out = in + i + 1;
			*outlen = 2;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + n;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* A client hello without ALPN is refused the same way: the callback
 * above runs only when the extension is there. */
static int need_alpn(SSL *ssl, int *al, void *arg)
{
	const unsigned char *ext;
	size_t len;
	(void)arg;
	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
				      &len) == 1)
		return SSL_CLIENT_HELLO_SUCCESS;
	*al = SSL_AD_NO_APPLICATION_PROTOCOL;
	return SSL_CLIENT_HELLO_ERROR;
}

static SSL_CTX *build(const struct rmq_tls_config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(cfg->server ? TLS_server_method() : TLS_client_method());
	if (!ctx) {
		ssl_why(err, errlen, "creating a TLS context", NULL);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	/* AES-128-GCM first (AES-NI: the cheapest per byte), the server's
	 * choice; OpenSSL's buffers kept per connection (releasing them when
	 * idle cost an allocation per record under load). */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
				      "TLS_CHACHA20_POLY1305_SHA256");
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
	if (cfg->cert && SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1) {
		ssl_why(err, errlen, "reading the certificate", cfg->cert);
		goto fail;
	}
	if (cfg->key && (SSL_CTX_use_PrivateKey_file(ctx, cfg->key, SSL_FILETYPE_PEM) != 1 ||
			 SSL_CTX_check_private_key(ctx) != 1)) {
		ssl_why(err, errlen, "reading the private key (or it does not match the certificate)",
			cfg->key);
		goto fail;
	}
	if (cfg->server) {
		if (!cfg->cert || !cfg->key) {
			snprintf(err, errlen, "a TLS server needs a certificate and its key");
			goto fail;
		}
		SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
		SSL_CTX_set_client_hello_cb(ctx, need_alpn, NULL);
		if (cfg->ca) {
			if (SSL_CTX_load_verify_locations(ctx, cfg->ca, NULL) != 1) {
				ssl_why(err, errlen, "reading the client CA", cfg->ca);
				goto fail;
			}
			SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
		}
	} else {
		static const unsigned char h2[] = {2, 'h', '2'};
		SSL_CTX_set_alpn_protos(ctx, h2, sizeof(h2));
		if (cfg->insecure) {
			SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		} else {
			if (cfg->ca ? SSL_CTX_load_verify_locations(ctx, cfg->ca, NULL) != 1
				    : SSL_CTX_set_default_verify_paths(ctx) != 1) {
				ssl_why(err, errlen, "reading the CA", cfg->ca);
				goto fail;
			}
			SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		}
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

int rmq_tls_ctx_new(const struct rmq_tls_config *cfg, struct rmq_tls_ctx **out, char *err,
		    size_t errlen)
{
	struct rmq_tls_ctx *t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	t->cfg = *cfg;
	t->cfg.cert = dup_or_null(cfg->cert);
	t->cfg.key = dup_or_null(cfg->key);
	t->cfg.ca = dup_or_null(cfg->ca);
	pthread_mutex_init(&t->mu, NULL);
	t->ctx = build(&t->cfg, err, errlen);
	if (!t->ctx) {
		rmq_tls_ctx_free(t);
		return -EINVAL;
	}
	*out = t;
	return 0;
}

int rmq_tls_ctx_reload(struct rmq_tls_ctx *t, char *err, size_t errlen)
{
	SSL_CTX *ctx = build(&t->cfg, err, errlen);
	if (!ctx)
		return -EINVAL;
	pthread_mutex_lock(&t->mu);
	SSL_CTX *old = t->ctx;
	t->ctx = ctx;
	pthread_mutex_unlock(&t->mu);
	SSL_CTX_free(old); /* connections made with it hold their own count */
	return 0;
}

void rmq_tls_ctx_free(struct rmq_tls_ctx *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	pthread_mutex_destroy(&t->mu);
	free((char *)t->cfg.cert);
	free((char *)t->cfg.key);
	free((char *)t->cfg.ca);
	free(t);
}

bool rmq_tls_ctx_server(const struct rmq_tls_ctx *t)
{
	return t->cfg.server;
}

/* ---- the BIO --------------------------------------------------------------------- */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_write(BIO *b, const char *data, int len)
{
	struct net_tls *t = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	uint32_t room = TLS_OUT_BYTES - t->out_tail;
	if (room == 0) {
		BIO_set_retry_write(b);
		return -1;
	}
	uint32_t n = (uint32_t)len < room ? (uint32_t)len : room;
	memcpy(t->out + t->out_tail, data, n);
	t->out_tail += n;
	return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
	struct net_tls *t = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (t->in_len == 0) {
		BIO_set_retry_read(b);
		return -1;
	}
	size_t n = (size_t)len < t->in_len ? (size_t)len : t->in_len;
	memcpy(buf, t->in, n);
	t->in += n;
	t->in_len -= n;
	return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void bio_setup(void)
{
	bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "rmq conn");
	if (bio_method) {
		BIO_meth_set_write(bio_method, bio_write);
		BIO_meth_set_read(bio_method, bio_read);
		BIO_meth_set_ctrl(bio_method, bio_ctrl);
		BIO_meth_set_create(bio_method, bio_create);
	}
}

/* ---- connections ----------------------------------------------------------------- */

int net_tls_start(struct net_conn *nc, struct rmq_tls_ctx *ctx, const char *host)
{
	pthread_once(&bio_once, bio_setup);
	struct net_tls *t = calloc(1, sizeof(*t));
	if (!t || !bio_method || !(t->out = malloc(TLS_OUT_BYTES))) {
		if (t)
			free(t->out);
		free(t);
		return -ENOMEM;
	}
	pthread_mutex_lock(&ctx->mu);
	t->ssl = SSL_new(ctx->ctx);
	pthread_mutex_unlock(&ctx->mu);
	BIO *bio = t->ssl ? BIO_new(bio_method) : NULL;
	if (!bio) {
		SSL_free(t->ssl);
		free(t->out);
		free(t);
		ERR_clear_error();
		return -ENOMEM;
	}
	BIO_set_data(bio, t);
	SSL_set_bio(t->ssl, bio, bio); /* the SSL owns it */
	if (ctx->cfg.server) {
		SSL_set_accept_state(t->ssl);
	} else {
		SSL_set_connect_state(t->ssl);
		unsigned char ip[16];
		const bool literal = host && (inet_pton(AF_INET, host, ip) == 1 ||
					      inet_pton(AF_INET6, host, ip) == 1);
		if (host && !literal)
			SSL_set_tlsext_host_name(t->ssl, host); /* SNI names hosts only */
		if (host && !ctx->cfg.insecure) {
			/* The certificate must name it: a DNS name, or an IP
			 * address SAN for an address. */
			X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
			if (literal)
				X509_VERIFY_PARAM_set1_ip_asc(vp, host);
			else
				SSL_set1_host(t->ssl, host);
		}
	}
	nc->tls = t;
	return 0;
}

void net_tls_end(struct net_conn *nc)
{
	struct net_tls *t = nc->tls;
	if (!t)
		return;
	SSL_free(t->ssl);
	free(t->out);
	free(t);
	nc->tls = NULL;
	ERR_clear_error();
}

bool net_tls_pending(const struct net_conn *nc)
{
	return nc->tls && nc->tls->out_tail > nc->tls->out_head;
}

const char *net_tls_peer(const struct net_conn *nc)
{
	return nc->tls && nc->tls->peer[0] ? nc->tls->peer : NULL;
}

/* The identity of a verified client certificate: its first DNS, email or
 * URI subject alternative name, else its subject's common name. */
static void take_peer(struct net_tls *t)
{
	X509 *cert = SSL_get0_peer_certificate(t->ssl);
	if (!cert || SSL_get_verify_result(t->ssl) != X509_V_OK)
		return;
	GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && !t->peer[0]; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
		if (g->type == GEN_DNS || g->type == GEN_EMAIL || g->type == GEN_URI) {
			const ASN1_IA5STRING *s = g->d.ia5;
			if (s->length > 0 && (size_t)s->length < sizeof(t->peer))
				snprintf(t->peer, sizeof(t->peer), "%.*s", s->length, (const char *)s->data);
		}
	}
	GENERAL_NAMES_free(sans);
	if (!t->peer[0])
		X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, t->peer,
					  sizeof(t->peer));
}

/* A fatal TLS error: its records (an alert, naming the fault to the peer)
 * are sent now if the socket takes them; the caller ends the connection. */
static void tls_fail(struct net_conn *nc, int e)
{
	struct net_tls *t = nc->tls;
	char why[256] = "";
	unsigned long code = ERR_peek_last_error();
	if (code)
		ERR_error_string_n(code, why, sizeof(why));
	ERR_clear_error();
	long v = SSL_get_verify_result(t->ssl);
	rmq_debug("net: fd %d: TLS: %s (SSL error %d)%s%s", nc->fd, why[0] ? why : "failed", e,
		  v != X509_V_OK ? ": " : "", v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
	if (!nc->send_inflight && t->out_tail > t->out_head)
		(void)send(nc->fd, t->out + t->out_head, t->out_tail - t->out_head,
			   MSG_DONTWAIT | MSG_NOSIGNAL);
	t->out_head = t->out_tail = 0;
}

void net_tls_input(struct net_conn *nc, const uint8_t *p, size_t n)
{
	struct net_tls *t = nc->tls;
	const uint32_t gen = nc->gen;
	uint8_t buf[16384];
	t->in = p;
	t->in_len = n;
	for (;;) {
		int r = SSL_read(t->ssl, buf, sizeof(buf));
		if (!t->done && SSL_is_init_finished(t->ssl)) {
			t->done = true;
			take_peer(t);
		}
		if (r > 0) {
			nc->ops->input(nc, buf, (size_t)r);
			if (nc->gen != gen || !nc->live || nc->cut)
				return; /* the owner let it go */
			continue;
		}
		int e = SSL_get_error(t->ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			break;
		if (e == SSL_ERROR_ZERO_RETURN) {
			nc->ops->lost(nc, 0); /* close_notify: the peer's EOF */
			return;
		}
		if (e == SSL_ERROR_WANT_WRITE) {
			/* Records asking for more answers than the headroom
			 * holds (a KeyUpdate flood): the rest of the input
			 * cannot be kept, so the connection ends. */
			rmq_debug("net: fd %d: TLS: the peer asks for answers faster than it reads "
				  "them; closing",
				  nc->fd);
			nc->ops->lost(nc, -EPROTO);
			return;
		}
		tls_fail(nc, e);
		nc->ops->lost(nc, -EPROTO);
		return;
	}
	t->in = NULL;
	t->in_len = 0;
	/* Handshake records to answer, or plaintext that waited for the
	 * handshake: the owner's flush sends them. */
	net_conn_mark_dirty(nc);
}

int net_tls_write(struct net_conn *nc, const uint8_t *p, size_t len)
{
	struct net_tls *t = nc->tls;
	if (t->out_head == t->out_tail)
		t->out_head = t->out_tail = 0; /* all sent: the buffer from its start */
	if (TLS_OUT_BYTES - t->out_tail < TLS_RECORD_ROOM)
		return 0;
	if (len > 16384)
		len = 16384;
	int r = SSL_write(t->ssl, p, (int)len);
	if (r > 0)
		return r;
	int e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return 0; /* the handshake first */
	tls_fail(nc, e);
	return -EPROTO;
}

const uint8_t *net_tls_out(const struct net_conn *nc, size_t *len)
{
	*len = nc->tls->out_tail - nc->tls->out_head;
	return nc->tls->out + nc->tls->out_head;
}

void net_tls_sent(struct net_conn *nc, size_t n)
{
	struct net_tls *t = nc->tls;
	t->out_head += (uint32_t)n;
	if (t->out_head == t->out_tail)
		t->out_head = t->out_tail = 0;
}
