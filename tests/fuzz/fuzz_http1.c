/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_http1 - the head of an HTTP/1.1 request as --metrics-listen reads it
 * (rmq_http1_parse_head, src/net/http1.c).
 *
 * Input: bytes up to the first CRLF CRLF (appended when absent), which is
 * what the server hands the parser, copied into a buffer of exactly that
 * size so that any read past it is a sanitizer report.
 *
 * Besides "no crash, no sanitizer report", each input checks properties:
 * - the answer is 0, 400 or 414, with a reason for a refusal;
 * - an accepted head has a path that starts with '/', holds no query, no
 *   space or control byte, and fits; GET and HEAD as the request line says;
 * - parsing again gives the same answer.
 *
 * Reproduce: build/fuzz/tests/fuzz/fuzz_http1 <input file>
 */
#include "net/http1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_http1: %s\n", what);
	abort();
}

static const char *find_end(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 4 <= n; i++)
		if (memcmp(p + i, "\r\n\r\n", 4) == 0)
			return (const char *)p + i + 4;
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *e = find_end(data, size);
	size_t len = e ? (size_t)(e - (const char *)data) : size + 4;
	if (len > RMQ_HTTP1_HEAD_MAX)
		return 0; /* the server answers 431 before parsing */
	char *in = malloc(len);
	if (!in)
		return 0;
	memcpy(in, data, e ? len : size);
	if (!e)
		memcpy(in + size, "\r\n\r\n", 4);
	struct rmq_http1_head h, again;
	const char *why = NULL, *why2 = NULL;
	int rc = rmq_http1_parse_head(in, len, &h, &why);
	if (rc != 0 && rc != 400 && rc != 414)
		fail("an unexpected status");
	if (rc != 0 && (!why || !why[0]))
		fail("a refusal without a reason");
	if (rc == 0) {
		size_t pl = strnlen(h.path, sizeof(h.path));
		if (pl == sizeof(h.path) || h.path[0] != '/')
			fail("a path that does not start with '/' or does not fit");
		for (size_t i = 0; i < pl; i++)
			if ((unsigned char)h.path[i] <= ' ' || h.path[i] == '?' || h.path[i] == 0x7f)
				fail("a path with a query, a space or a control byte");
		if (h.get != (len >= 4 && memcmp(in, "GET ", 4) == 0) ||
		    h.head != (len >= 5 && memcmp(in, "HEAD ", 5) == 0))
			fail("GET or HEAD not as the request line says");
	}
	if (rmq_http1_parse_head(in, len, &again, &why2) != rc ||
	    (rc == 0 && (again.get != h.get || again.head != h.head || again.close != h.close ||
			 strcmp(again.path, h.path) != 0)))
		fail("a second parse that differs");
	free(in);
	return 0;
}
