/* SPDX-License-Identifier: Apache-2.0 */
/*
 * h2.c - the nghttp2 server session of a connection and its callbacks.
 *
 * nghttp2 is used sans-I/O: server.c feeds it bytes (mem_recv) and conn.c
 * takes its output (mem_send).  Its callbacks, all running inside those two
 * calls, turn HTTP/2 events into gRPC call events (grpc.c):
 *
 *   on_begin_headers (request) ─► net_call_open()   a call from the pool, set
 *                                                    as the stream's user data
 *   on_header                  ─► net_call_header() (header block bounded to
 *                                                    RMQ_NET_HEADER_LIST_MAX)
 *   on_frame_recv  HEADERS     ─► net_call_headers_done(), or, without a
 *                                  call, net_refuse_stream()
 *                  DATA/HEADERS with END_STREAM ─► net_call_end_stream()
 *   on_data_chunk_recv         ─► net_call_data()   (gRPC message framing)
 *   on_stream_close            ─► net_call_detach()
 *   on_frame_send  END_STREAM while the client still sends
 *                              ─► RST_STREAM(NO_ERROR), as gRPC servers do
 *   send_data (NO_COPY DATA)   ─► net_call_send_data(): frame header and
 *                                  payload go straight from the call's send
 *                                  queue into the connection's output
 *
 * Settings sent first: MAX_CONCURRENT_STREAMS = max_streams,
 * INITIAL_WINDOW_SIZE = stream_window, MAX_HEADER_LIST_SIZE,
 * NO_RFC7540_PRIORITIES; then the connection window is raised to
 * conn_window.  nghttp2 refuses streams over the limit, validates HTTP
 * messaging (pseudo-headers, te, connection headers) and answers floods of
 * SETTINGS/PING/RST_STREAM itself.
 *
 * Layering: h2.c is called by server.c (session setup) and by nghttp2
 * from inside server.c's mem_recv and conn.c's gather; it calls grpc.c
 * only.  The output half of bytes-in/bytes-out is conn.c's
 * net_conn_gather(), shared with the client.
 */
#include "net/net_int.h"

#include "core/error.h"
#include "core/log.h"

#include <errno.h>
#include <string.h>

static struct rmq_call *stream_call(nghttp2_session *s, int32_t stream_id)
{
	return nghttp2_session_get_stream_user_data(s, stream_id);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct conn *conn = ud;

	conn->hdr_bytes = 0;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct rmq_call *c = net_call_open(conn, f->hd.stream_id);
	if (c)
		nghttp2_session_set_stream_user_data(s, f->hd.stream_id, c);
	return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *ud)
{
	struct conn *conn = ud;
	(void)flags;

	conn->hdr_bytes += namelen + valuelen + 32;
	if (conn->hdr_bytes > RMQ_NET_HEADER_LIST_MAX) {
		/* nghttp2 resets the stream (and keeps decoding, so the
		 * HPACK state stays in step). */
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0; /* client trailers carry nothing gRPC uses */
	struct rmq_call *c = stream_call(s, f->hd.stream_id);
	if (c)
		net_call_header(c, name, namelen, value, valuelen);
	return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct conn *conn = ud;
	struct rmq_call *c;
	bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

	switch (f->hd.type) {
	case NGHTTP2_HEADERS:
		c = stream_call(s, f->hd.stream_id);
		if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
			if (!c)
				net_refuse_stream(conn, f->hd.stream_id);
			else
				net_call_headers_done(c, end);
		} else if (c && end) {
			net_call_end_stream(c);
		}
		break;
	case NGHTTP2_DATA:
		c = stream_call(s, f->hd.stream_id);
		if (c && end)
			net_call_end_stream(c);
		break;
	case NGHTTP2_SETTINGS:
		/* The first one completes the client preface (server.c acts
		 * on it once mem_recv returns). */
		if (!(f->hd.flags & NGHTTP2_FLAG_ACK))
			conn->peer_settings = true;
		break;
	default:
		break;
	}
	return 0;
}

static int on_data_chunk_recv(nghttp2_session *s, uint8_t flags, int32_t stream_id,
			      const uint8_t *data, size_t len, void *ud)
{
	(void)flags;
	(void)ud;
	struct rmq_call *c = stream_call(s, stream_id);
	if (c)
		net_call_data(c, data, len);
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *ud)
{
	(void)error_code;
	(void)ud;
	struct rmq_call *c = stream_call(s, stream_id);
	if (c) {
		nghttp2_session_set_stream_user_data(s, stream_id, NULL);
		net_call_detach(c);
	}
	return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct conn *conn = ud;

	if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR &&
	    !conn->counted_error) {
		/* nghttp2 ended the connection for a protocol violation (or a
		 * flood) on its own. */
		conn->counted_error = true;
		conn->srv->stats.protocol_errors++;
	}
	if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
	    (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    nghttp2_session_get_stream_remote_close(s, f->hd.stream_id) == 0) {
		/* Our answer is complete but the client is still sending
		 * (an error before its END_STREAM): stop it, like gRPC
		 * servers do, so the stream is released. */
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
	}
	return 0;
}

static int on_send_data(nghttp2_session *s, nghttp2_frame *f, const uint8_t *framehd,
			size_t length, nghttp2_data_source *source, void *ud)
{
	(void)s;
	return net_call_send_data(ud, f, framehd, length, source);
}

static int on_invalid_frame_recv(nghttp2_session *s, const nghttp2_frame *f, int lib_error,
				 void *ud)
{
	(void)s;
	struct conn *conn = ud;
	rmq_debug("net: fd %d: invalid frame type %u on stream %d: %s", conn->nc.fd,
		  (unsigned)f->hd.type, f->hd.stream_id, nghttp2_strerror(lib_error));
	return 0;
}

int net_h2_init(struct rmq_server *srv)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;

	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return -ENOMEM;
	if (nghttp2_option_new(&opt) != 0) {
		nghttp2_session_callbacks_del(cbs);
		return -ENOMEM;
	}
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
	nghttp2_session_callbacks_set_send_data_callback(cbs, on_send_data);
	nghttp2_session_callbacks_set_data_source_read_length_callback(cbs, net_h2_read_length);
	nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame_recv);
	/* Closed streams are not kept for the RFC 7540 priority tree. */
	nghttp2_option_set_no_closed_streams(opt, 1);
	srv->cbs = cbs;
	srv->opt = opt;
	return 0;
}

void net_h2_fini(struct rmq_server *srv)
{
	if (srv->cbs)
		nghttp2_session_callbacks_del(srv->cbs);
	if (srv->opt)
		nghttp2_option_del(srv->opt);
	srv->cbs = NULL;
	srv->opt = NULL;
}

int net_h2_session_new(struct conn *conn)
{
	const struct rmq_net_config *cfg = &conn->srv->cfg;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->max_streams},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, cfg->stream_window},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, RMQ_NET_HEADER_LIST_MAX},
		{NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
		/* Clients may send large DATA frames (net_h2_read_length):
		 * nghttp2 hands their payload on in chunks as it arrives,
		 * so a large frame holds no more memory than a small one. */
		{NGHTTP2_SETTINGS_MAX_FRAME_SIZE, RMQ_NET_DATA_FRAME_MAX},
	};
	int rv;

	rv = nghttp2_session_server_new2(&conn->h2, conn->srv->cbs, conn, conn->srv->opt);
	if (rv != 0)
		return -ENOMEM;
	rv = nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, iv,
				     sizeof(iv) / sizeof(iv[0]));
	if (rv == 0)
		rv = nghttp2_session_set_local_window_size(conn->h2, NGHTTP2_FLAG_NONE, 0,
							   (int32_t)cfg->conn_window);
	if (rv != 0) {
		nghttp2_session_del(conn->h2);
		conn->h2 = NULL;
		return -ENOMEM;
	}
	return 0;
}
