/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_tls - the TLS-to-HTTP/2 path: a real node (fuzz_node.h) serving
 * TLS 1.3 (--tls-cert/--tls-key; src/net/tls.c between the ring's socket
 * I/O in conn.c and nghttp2).
 *
 * At start the harness makes a self-signed EC P-256 certificate for IP
 * 127.0.0.1 (OpenSSL 3) in a directory under fz_tmp_root() and starts the
 * node with it in fuzz_node's TLS mode: every connection the harness opens
 * is a relay that carries plaintext over TLS (ALPN h2, the certificate
 * verified).  Input:
 *
 *   OFFSET  SIZE  MEANING
 *   0       1     selector: below 0xc0 mode A (from 0x60 on with
 *                 KeyUpdates), else mode B
 *   1       ...   mode A: fuzz_grpc's frames (fuzz_grpc.c's format)
 *                 mode B: raw bytes for the TLS port
 *
 * Mode A (3 inputs in 4): fuzz_grpc's frame script through the relay, so
 * HTTP/2 frames and gRPC framing arrive decrypted through rmq's TLS stage
 * (records the node reads in pieces, its output written as records into
 * its TLS buffer, close_notify as the client's EOF).  With selectors 0x60
 * to 0xbf the relay asks for a KeyUpdate before each record it writes
 * (fz_tls_key_updates), so the node updates its keys while it writes its
 * answers and reads our records under new keys.  fuzz_grpc's checks
 * hold: PINGs answered, the node closes after our close_notify and FIN
 * within FZ_HANG_MS, and holds no call or connection after.
 *
 * Mode B: the bytes straight to the TLS port, no relay: hostile
 * ClientHellos, records of any type and length, plaintext HTTP/2 or
 * HTTP/1 to a TLS port.  Then our FIN, and the node must close within
 * FZ_HANG_MS (else HANG).  Everything the node sent must be TLS records
 * (content type 20-23, at most 2^14 + 256 bytes): a node that answered
 * plaintext to plaintext would have skipped its TLS stage.
 * After every input of either mode the node must serve a health check
 * over TLS.
 *
 * Reproduce: build/fuzz/tests/fuzz/fuzz_tls <input file>
 */
#include "fuzz_node.h"

#include <errno.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define MODE_A_KEY_UPDATES 0x60 /* selectors from here: mode A, KeyUpdates */
#define MODE_B 0xc0             /* selectors from here on: raw bytes */

static char dir[256], cert_path[300], key_path[300];

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void remove_files(void)
{
	if (getenv("FZ_KEEP_DATA"))
		return;
	unlink(cert_path);
	unlink(key_path);
	rmdir(dir);
}

/* A self-signed P-256 certificate for IP 127.0.0.1, valid for a day, and
 * its key, as PEM files. */
static void make_cert(void)
{
	snprintf(dir, sizeof(dir), "%s/rmq-fuzz-tls-XXXXXX", fz_tmp_root());
	if (!mkdtemp(dir))
		fz_fail("mkdtemp %s: %s", dir, strerror(errno));
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", dir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
	atexit(remove_files);

	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	if (!pkey || !x)
		fz_fail("EVP_EC_gen/X509_new failed");
	X509_set_version(x, X509_VERSION_3);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, pkey);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"rmq fuzz_tls",
				   -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1");
	if (!san || X509_add_ext(x, san, -1) != 1 || X509_sign(x, pkey, EVP_sha256()) <= 0)
		fz_fail("signing the certificate: %s", ERR_reason_error_string(ERR_get_error()));
	X509_EXTENSION_free(san);

	FILE *f = fopen(cert_path, "w");
	if (!f || PEM_write_X509(f, x) != 1 || fclose(f) != 0)
		fz_fail("writing %s failed", cert_path);
	f = fopen(key_path, "w");
	if (!f || PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) != 1 || fclose(f) != 0)
		fz_fail("writing %s failed", key_path);
	X509_free(x);
	EVP_PKEY_free(pkey);
}

/* What the node sent on a raw connection, checked as TLS records. */
struct records {
	uint8_t hd[5];
	size_t hd_len;  /* header bytes of the current record seen */
	size_t body;    /* its body bytes still to come */
};

static void check_records(struct records *r, const uint8_t *p, size_t n)
{
	while (n > 0) {
		if (r->body > 0) {
			size_t k = n < r->body ? n : r->body;
			r->body -= k;
			p += k;
			n -= k;
			continue;
		}
		r->hd[r->hd_len++] = *p++;
		n--;
		if (r->hd_len < 5)
			continue;
		r->hd_len = 0;
		size_t len = (size_t)r->hd[3] << 8 | r->hd[4];
		/* No check of the version: before a version is agreed,
		 * OpenSSL's alert carries the ClientHello's legacy_version,
		 * whatever it was (regress-raw-alert-echoes-hello-version). */
		if (r->hd[0] < 20 || r->hd[0] > 23 || len > 16384 + 256)
			fz_fail("the node sent bytes on its TLS port that are no TLS record: "
				"%02x %02x %02x %02x %02x",
				r->hd[0], r->hd[1], r->hd[2], r->hd[3], r->hd[4]);
		r->body = len;
	}
}

/* Reads what the node sent (waiting up to ms); false once it closed. */
static bool drain(int fd, struct records *r, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, ms) <= 0)
		return true;
	uint8_t buf[16384];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n > 0) {
		check_records(r, buf, (size_t)n);
		return true;
	}
	return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

static void raw_bytes(const uint8_t *p, size_t len)
{
	int fd = fz_connect_tcp();
	struct records rec = {0};
	bool open = true;
	uint64_t until = now_ms() + FZ_HANG_MS;
	while (len > 0 && open) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			break; /* reset by the node: allowed */
		} else if (now_ms() > until) {
			fz_fail("HANG: the node read nothing for %d ms", FZ_HANG_MS);
		}
		open = drain(fd, &rec, len > 0 && n <= 0 ? 50 : 0);
	}
	/* Our FIN: the node must close its side in bounded time. */
	shutdown(fd, SHUT_WR);
	until = now_ms() + FZ_HANG_MS;
	while (open) {
		if (now_ms() > until)
			fz_fail("HANG: the node did not close a TLS connection within %d ms of the "
				"client's FIN",
				FZ_HANG_MS);
		open = drain(fd, &rec, 100);
	}
	close(fd);
}

/* A health check over TLS, then the node holds nothing for the input. */
static void check_node(void)
{
	struct fz_conn *c = fz_conn_open();
	struct fz_buf resp = {0};
	int st = fz_unary(c, "/grpc.health.v1.Health/Check", "", 0, &resp);
	uint64_t serving = 0;
	if (st != 0 || !fz_pb_find(resp.p, resp.len, 1, &serving, NULL, NULL) || serving != 1)
		fz_fail("after the input, a health check over TLS answered status %d, serving %llu",
			st, (unsigned long long)serving);
	fz_buf_free(&resp);
	fz_wait_idle(c, 10000);
	fz_conn_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		make_cert();
		fz_node_start_tls(cert_path, key_path, NULL);
		ready = true;
	}
	if (size == 0)
		return 0;
	if (data[0] < MODE_B) {
		/* Its own idle check at the end runs over TLS as well. */
		fz_tls_key_updates(data[0] >= MODE_A_KEY_UPDATES);
		fz_grpc_frames(data + 1, size - 1);
		fz_tls_key_updates(false);
		return 0;
	}
	raw_bytes(data + 1, size - 1);
	check_node();
	return 0;
}
