/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http1.h - a small HTTP/1.1 server on one shard's ring, for plain-text
 * endpoints such as Prometheus's GET /metrics (docs/rmqd.md, "Metrics").
 *
 * GET and HEAD only, no request bodies, one request at a time per
 * connection (pipelined ones wait their turn), keep-alive unless the
 * client asks otherwise.  The application answers each request, at once
 * or later (it may gather from other shards first); a connection waiting
 * for its answer is not read.  Bounded everywhere: at most
 * RMQ_HTTP1_CONNS connections (a new one takes the slot of the one idle
 * longest, else it is closed at accept), a request's
 * head at most RMQ_HTTP1_HEAD_MAX bytes (431), RMQ_HTTP1_IDLE_NS for a
 * request to arrive whole and for an answer to be taken (slow clients are
 * cut); bad requests get 400 and the connection closes (after reading
 * what the client still sends, for at most RMQ_HTTP1_LINGER_NS, so that a
 * reset does not make it lose the answer).
 */
#ifndef RMQ_NET_HTTP1_H
#define RMQ_NET_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmq_shard;
struct rmq_http1;
struct rmq_http1_req;

#define RMQ_HTTP1_CONNS 32
#define RMQ_HTTP1_HEAD_MAX 8192
#define RMQ_HTTP1_IDLE_NS (30ULL * 1000 * 1000 * 1000)
#define RMQ_HTTP1_LINGER_NS (2ULL * 1000 * 1000 * 1000) /* after a closing answer */
#define RMQ_HTTP1_PATH_MAX 256

/* A request's head, as the server reads it. */
struct rmq_http1_head {
	bool get, head;                 /* the method: GET, HEAD, or another */
	bool close;                     /* the connection ends after the answer */
	char path[RMQ_HTTP1_PATH_MAX];  /* the target without its query */
};

/* Parses in[0, len), a request's head ending in CRLF CRLF (sans-I/O; the
 * server's, and fuzz_http1's).  Returns 0 with *out, or the status to
 * refuse with (400, 414) and *why. */
int rmq_http1_parse_head(const char *in, size_t len, struct rmq_http1_head *out,
			 const char **why);

/* A request for path (the target without its query), to be answered with
 * rmq_http1_answer exactly once, on the server's shard. */
typedef void (*rmq_http1_handler)(void *arg, struct rmq_http1_req *r, const char *path);

/* Answers r: status (200, 404, 503, ...), the content type, and body
 * (len bytes, copied; HEAD sends the head alone).  r is gone after. */
void rmq_http1_answer(struct rmq_http1_req *r, int status, const char *content_type,
		      const char *body, size_t len);

/* Listens on host:port (port 0: any; *bound says which) on shard s, whose
 * thread calls this.  Returns 0 and *out, or a negated errno (-EADDRINUSE,
 * -EADDRNOTAVAIL, -ENOMEM, ...). */
int rmq_http1_start(struct rmq_shard *s, const char *host, uint16_t port,
		    rmq_http1_handler handler, void *arg, struct rmq_http1 **out, uint16_t *bound);

/* Stops: no more connections, every connection cut.  Requests waiting
 * for their answers still get rmq_http1_answer (into nothing).  Returns
 * true once nothing is in flight any more; call it again until it does,
 * then rmq_http1_free. */
bool rmq_http1_stop(struct rmq_http1 *h);
void rmq_http1_free(struct rmq_http1 *h);

#endif /* RMQ_NET_HTTP1_H */
