/* SPDX-License-Identifier: Apache-2.0 */
/*
 * error.c - names and messages for rmq's errors (see error.h).
 *
 * strerror() may use a shared buffer, so negated errno values are described
 * with strerrordesc_np()/strerrorname_np() (glibc >= 2.32), which return
 * static strings.
 */
#include "core/error.h"

#include <string.h>

struct rmq_err_desc {
	int value;
	const char *name;
	const char *msg;
};

static const struct rmq_err_desc rmq_err_table[] = {
#define RMQ_ERR_ROW(name, value, msg) {value, #name, msg},
	RMQ_ERRORS(RMQ_ERR_ROW)
#undef RMQ_ERR_ROW
};

static const struct rmq_err_desc *rmq_err_find(int err)
{
	for (size_t i = 0; i < sizeof(rmq_err_table) / sizeof(rmq_err_table[0]); i++) {
		if (rmq_err_table[i].value == err)
			return &rmq_err_table[i];
	}
	return NULL;
}

const char *rmq_strerror(int err)
{
	if (err == 0)
		return "success";
	if (err > RMQ_ERR_BASE && err < 0) {
		const char *s = strerrordesc_np(-err);
		return s ? s : "unknown system error";
	}
	const struct rmq_err_desc *d = rmq_err_find(err);
	return d ? d->msg : "unknown error";
}

const char *rmq_errname(int err)
{
	if (err == 0)
		return "OK";
	if (err > RMQ_ERR_BASE && err < 0) {
		const char *s = strerrorname_np(-err);
		return s ? s : "UNKNOWN";
	}
	const struct rmq_err_desc *d = rmq_err_find(err);
	return d ? d->name : "UNKNOWN";
}
