/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tls.h - TLS 1.3 for rmq's connections, in user space on the shard's ring
 * (docs/security.md).
 *
 * The socket I/O stays the ring's (conn.c): TLS is one more sans-I/O stage
 * between the socket and nghttp2.  OpenSSL reads ciphertext from, and
 * writes records into, a BIO of rmq's own that points at the connection's
 * buffers:
 *
 *   RECV (ciphertext) ─► SSL_read ─► plaintext ─► the owner's input (nghttp2)
 *   output chain (plaintext: copied bytes, and referenced ones such as a
 *   fetch answer's segment bytes) ─► SSL_write, straight from where the
 *   bytes are ─► records written into the connection's TLS buffer ─► SEND
 *
 * so encryption is the only pass over a fetch answer's bytes.  The
 * machines rmq is developed on have no kernel TLS (CONFIG_TLS is off), and
 * nothing here depends on it.
 *
 * A context holds the certificate, key and CA files' contents; reloading
 * (SIGHUP) builds a new OpenSSL context from the same paths and swaps it
 * in for new connections; connections keep the one they started with.
 * Any thread may take a context (rmq_tls_ctx_take) while another reloads.
 */
#ifndef RMQ_NET_TLS_H
#define RMQ_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct rmq_tls_ctx;

struct rmq_tls_config {
	bool server;
	const char *cert;       /* PEM certificate chain: required for a server,
				   optional for a client (mTLS) */
	const char *key;        /* its PEM private key */
	const char *ca;         /* PEM CAs: a server's to verify client
				   certificates (mTLS: then required), a
				   client's to verify the server (NULL: the
				   system's default paths) */
	bool insecure;          /* a client that does not verify the server
				   (tests, never the default) */
};

/* Builds a context.  Returns 0, or -EINVAL with why (the file and
 * OpenSSL's reason) in err. */
int rmq_tls_ctx_new(const struct rmq_tls_config *cfg, struct rmq_tls_ctx **out, char *err,
		    size_t errlen);
/* Reads the files again: a context that fails to build leaves the old one
 * serving.  Returns 0 or -EINVAL with why in err. */
int rmq_tls_ctx_reload(struct rmq_tls_ctx *t, char *err, size_t errlen);
void rmq_tls_ctx_free(struct rmq_tls_ctx *t);
bool rmq_tls_ctx_server(const struct rmq_tls_ctx *t);

#endif /* RMQ_NET_TLS_H */
