/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_node.h - what the handler and framing harnesses share: a real rmqd
 * in the harness process, an HTTP/2 client on a blocking socket, and the
 * script format their inputs use.
 *
 * The node.  rmqd's own main() (src/broker/rmqd.c, compiled into each
 * harness under another name) runs on a thread with ordinary flags: one
 * shard, 127.0.0.1 on a free port, a fresh temporary data directory, small
 * segments.  The harness sees it only as a gRPC server, so it keeps
 * working whatever the broker's internals (handler signatures, the method
 * table) and src/net's become: its inputs are request bodies on the wire.
 * Sanitizers and coverage see the node's threads, so a crash anywhere in
 * the node is reported against the input being sent.
 *
 *   LLVMFuzzerTestOneInput ─► fz_conn_open ─► calls (HEADERS + DATA, read
 *        │                                    until the stream closes)
 *        │                   fz_conn_close: FIN, then read to the node's FIN
 *        └─ each input waits for every answer, so what the node does for an
 *           input happens while that input is the current one
 *
 * The client.  nghttp2's client session driven over a non-blocking socket
 * with poll(): independent of src/net, so it checks the server instead of
 * sharing its mistakes.  Every wait is bounded by FZ_HANG_MS: a call the
 * node never answers aborts the harness with "HANG", which libFuzzer saves
 * as a crash input like any other failure.
 *
 * The script.  A handler harness's input is a sequence of calls:
 *
 *   OFFSET  SIZE  MEANING
 *   0       1     selector: bits 0-4 pick the method ((sel & 0x1f) % the
 *                 harness's method count), bits 5-7 are FZ_SEL_* below
 *   1       2     body length L, little-endian (clipped to what remains)
 *   3       L     the body
 *
 * so one input file replays one whole conversation, and a failure found
 * after several calls reproduces from that file alone.
 */
#ifndef RMQ_TESTS_FUZZ_NODE_H
#define RMQ_TESTS_FUZZ_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/* The longest any answer may take (the node caps long polls well below). */
#define FZ_HANG_MS 20000

/* ---- the node --------------------------------------------------------------- */

/*
 * Starts rmqd once per process (later calls return at once) with the
 * harness's extra flags (NULL-terminated; may be NULL) after the common
 * ones, and waits until it answers a health check.  Aborts when it cannot
 * start.  Set FZ_LOG_LEVEL=debug|info|warn to see the node's log (default:
 * error).
 */
void fz_node_start(const char *const *extra_flags);

/*
 * Where harnesses keep their files: $FZ_DIR, else /dev/shm when it is a
 * writable directory (tmpfs: the fsyncs of topic metadata and of recovery
 * cost nothing there, about 20 times more inputs a second; O_DIRECT falls
 * back to the page cache), else $TMPDIR, else /tmp.  A static string.
 */
static inline const char *fz_tmp_root(void)
{
	const char *d = getenv("FZ_DIR");
	if (d && *d)
		return d;
	if (access("/dev/shm", W_OK | X_OK) == 0)
		return "/dev/shm";
	d = getenv("TMPDIR");
	return d && *d ? d : "/tmp";
}

/*
 * The same with TLS (fuzz_tls): rmqd also gets --tls-cert=cert
 * --tls-key=key, and from then on fz_connect() returns one end of a
 * socketpair whose bytes a relay thread carries over TLS 1.3 (ALPN h2,
 * trusting cert, which must name IP 127.0.0.1) to the node.  The harness
 * sees plaintext as before, so fz_conn_open, fz_unary, the script and
 * fuzz_grpc's frames run unchanged; the node decrypts them in its TLS
 * stage (src/net/tls.c).  Half-close carries over: our end's EOF becomes
 * close_notify and a FIN, the node's close (or a TLS error) the EOF of
 * our end.  A handshake that fails aborts the harness.
 */
void fz_node_start_tls(const char *cert, const char *key, const char *const *extra_flags);

/* TLS mode: relays opened from now on ask for a KeyUpdate
 * (update_requested) before each record they write, so the node answers
 * with KeyUpdates of its own while it writes its answers. */
void fz_tls_key_updates(bool on);

/* The node's port. */
uint16_t fz_node_port(void);

/* A connection to the node, or abort: TCP (TCP_NODELAY), or in the TLS
 * mode the plaintext end of a relay (above). */
int fz_connect(void);

/* A TCP connection to the node in either mode, with nothing sent:
 * fuzz_tls's raw bytes to the TLS port. */
int fz_connect_tcp(void);

/* ---- a byte buffer ---------------------------------------------------------- */

struct fz_buf {
	uint8_t *p;
	size_t len, cap;
};

void fz_buf_put(struct fz_buf *b, const void *p, size_t n);
void fz_buf_reset(struct fz_buf *b);
void fz_buf_free(struct fz_buf *b);

/* Protobuf fields appended to b (pbwire.h underneath). */
void fz_pb_uint(struct fz_buf *b, uint32_t field, uint64_t v);
void fz_pb_bytes(struct fz_buf *b, uint32_t field, const void *p, size_t n);
void fz_pb_str(struct fz_buf *b, uint32_t field, const char *s);
/* A nested message: its bytes are m's. */
void fz_pb_msg(struct fz_buf *b, uint32_t field, const struct fz_buf *m);

/*
 * Finds field `field` in the encoded message [p, p+len): the last one, as
 * protobuf decodes a singular field.  Returns true with the varint in *num
 * or the value's bounds in *val and *vlen.  Nested paths: call again on *val.
 */
bool fz_pb_find(const uint8_t *p, size_t len, uint32_t field, uint64_t *num, const uint8_t **val,
		size_t *vlen);

/* ---- a connection and its calls --------------------------------------------- */

struct fz_conn;
struct fz_call;

/* Connects to the node and exchanges the HTTP/2 preface.  Aborts when it
 * cannot (the node is up, so that is a failure too). */
struct fz_conn *fz_conn_open(void);

/* Closes: our FIN, then reads until the node closes its side (bounded), so
 * the node has torn the connection down before the next input.  Frees c
 * and every call still open on it. */
void fz_conn_close(struct fz_conn *c);

/* True once the node sent GOAWAY or closed: open another connection. */
bool fz_conn_dead(const struct fz_conn *c);

/*
 * Starts a call of path with the given gRPC messages (each framed with the
 * 5-byte prefix; msgs[i] of lens[i] bytes, copied), a grpc-timeout of
 * timeout_ms (0 = none), and END_STREAM after the messages unless
 * keep_open.  Returns NULL when the connection cannot take it (dead, or
 * the node's stream limit).
 */
struct fz_call *fz_call_start(struct fz_conn *c, const char *path, const uint8_t *const *msgs,
			      const size_t *lens, size_t n, uint64_t timeout_ms, bool keep_open);

/* Resets the stream (RST_STREAM CANCEL), as a client that gives up. */
void fz_call_cancel(struct fz_call *k);

/* Serves the connection until k is closed (trailers, reset, or the
 * connection lost).  Aborts with HANG after FZ_HANG_MS. */
void fz_call_wait(struct fz_call *k);

/* Serves the connection until k received n messages or closed, or ms
 * passed.  Returns the messages received so far. */
size_t fz_call_wait_messages(struct fz_call *k, size_t n, uint64_t ms);

/* Serves the connection until every open call on it is closed (bounded
 * like fz_call_wait). */
void fz_conn_wait_all(struct fz_conn *c);

/* After close: grpc-status (-1 when the stream ended without one: reset,
 * or the connection lost). */
int fz_call_status(const struct fz_call *k);
/* Response messages received, and the i-th (valid until fz_call_free). */
size_t fz_call_nmsgs(const struct fz_call *k);
const uint8_t *fz_call_msg(const struct fz_call *k, size_t i, size_t *len);
/* Frees a closed (or cancelled) call's record.  Calls not freed are freed
 * with their connection. */
void fz_call_free(struct fz_call *k);

/*
 * Unary convenience: one message, wait, copy the response (if any) into
 * resp (reset first; may be NULL).  Returns the grpc-status or -1.
 */
int fz_unary(struct fz_conn *c, const char *path, const void *req, size_t len,
	     struct fz_buf *resp);

/* ---- the script ------------------------------------------------------------- */

#define FZ_SEL_METHOD 0x1f
#define FZ_SEL_INFLIGHT 0x20 /* leave the call in flight and go on */
#define FZ_SEL_CANCEL 0x40   /* reset the stream right after sending */
#define FZ_SEL_DEADLINE 0x80 /* grpc-timeout 1 ms */

struct fz_script {
	const uint8_t *p, *end;
};

struct fz_step {
	uint8_t sel;
	const uint8_t *body;
	size_t len;
};

void fz_script_init(struct fz_script *s, const uint8_t *data, size_t size);
/* The next call of the script; false at the end. */
bool fz_script_next(struct fz_script *s, struct fz_step *st);

/* Splits a body into gRPC messages for streaming calls: 2-byte LE lengths
 * each followed by that many bytes (the last clipped).  At most max. */
size_t fz_split_messages(const uint8_t *body, size_t len, const uint8_t **msgs, size_t *lens,
			 size_t max);

enum fz_kind {
	FZ_UNARY,         /* the body is the request */
	FZ_SERVER_STREAM, /* the body is the request; the harness reads the
			   * first answer (or 20 ms), then cancels */
	FZ_STREAM,        /* the body is split into messages
			   * (fz_split_messages), then END_STREAM */
	FZ_STREAM_OPEN,   /* the same without END_STREAM: the stream ends
			   * with the connection */
	FZ_LOCAL,         /* not a call: the harness's local() runs */
};

struct fz_method {
	const char *path;
	enum fz_kind kind;
	uint64_t timeout_ms; /* grpc-timeout of every such call; 0 = none
			      * (FZ_SEL_DEADLINE makes it 1 ms) */
};

struct fz_script_ops {
	const struct fz_method *methods;
	size_t nmethods;
	/* FZ_LOCAL steps. */
	void (*local)(struct fz_conn *c, const struct fz_step *st);
	/* May rewrite a call's body: append to out what to send instead
	 * (out is empty on entry); leaving out empty sends the body as is.
	 * May be NULL. */
	void (*patch)(unsigned method, const struct fz_step *st, struct fz_buf *out);
	/* A call closed (unary and streams alike), before it is freed; st is
	 * its step as the input has it (before patch).  May be NULL. */
	void (*answered)(unsigned method, const struct fz_step *st, struct fz_call *k);
};

/*
 * Runs a script on a fresh connection: each step as ops says, waiting
 * for each answer unless FZ_SEL_INFLIGHT; at the end waits for every call
 * in flight, then closes the connection (fz_conn_close).  A connection
 * the node closed is replaced by a new one for the steps that follow.
 */
void fz_run_script(const uint8_t *data, size_t size, const struct fz_script_ops *ops);

/* fuzz_grpc.c's input (its frames, on a fresh fz_connect() connection,
 * then the idle check); the node started.  fuzz_tls runs it over TLS. */
int fz_grpc_frames(const uint8_t *data, size_t size);

/* ---- shared setup and checks ------------------------------------------------- */

/* Creates topic name with the given partitions and "key=value" configs
 * (NULL-terminated; may be NULL) unless it exists.  Aborts on failure. */
void fz_create_topic(struct fz_conn *c, const char *name, uint32_t partitions,
		     const char *const *configs);

/* Deletes every topic whose name is not in keep (NULL-terminated; may be
 * NULL), internal topics aside.  Returns how many were deleted. */
int fz_delete_topics_except(struct fz_conn *c, const char *const *keep);

/* Produces n small records (value of `size` bytes) to topic/partition with
 * the given compression (0 none, 1 lz4, 2 zstd, 3 snappy), acks=LEADER.
 * Aborts unless the node answers OK. */
void fz_produce_records(struct fz_conn *c, const char *topic, uint32_t partition, unsigned n,
			size_t size, unsigned compression);

/*
 * Reads topic/partition from offset `from` to its high watermark with
 * Fetch and checks every batch the node serves: it must parse
 * (storage/batch.h), carry a correct CRC-32C, continue the previous
 * batch's offsets, hold record_count records when uncompressed, and use
 * codec (a topic's forced compression.type; -1 = any).  Aborts with what
 * was wrong.  Returns the offset after the last batch checked.
 */
uint64_t fz_check_partition(struct fz_conn *c, const char *topic, uint32_t partition,
			    uint64_t from, int codec);

/*
 * Waits until the node holds no call and no connection but c and the call
 * asking (GetMetrics: rmq_calls, rmq_connections), polling for at most
 * ms.  Call it after an input's connections were closed: a call the node
 * keeps after every client left is a leaked reference (such a node can
 * never drain at shutdown), reported against the input that left it.
 */
void fz_wait_idle(struct fz_conn *c, uint64_t ms);

/* Prints "fuzz: <what>" and aborts: libFuzzer keeps the input. */
__attribute__((noreturn, format(printf, 1, 2))) void fz_fail(const char *fmt, ...);

#endif /* RMQ_TESTS_FUZZ_NODE_H */
