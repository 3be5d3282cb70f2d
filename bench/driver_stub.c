/* SPDX-License-Identifier: Apache-2.0 */
/*
 * driver_stub.c - stands in for a peer driver whose client library was not
 * found at configure time (bench/CMakeLists.txt): the build still links,
 * and --target names what to install.  Compiled with BENCH_STUB_NATS
 * and/or BENCH_STUB_REDIS.
 */
#include "bench.h"

#include <errno.h>

static int stub_work(struct bench_peer_worker *w)
{
	(void)w;
	return -ENOSYS;
}

static int stub_teardown(const struct bench_opts *o)
{
	(void)o;
	return 0;
}

#define STUB(sym, nm, pkg)                                                                         \
	static int sym##_setup(const struct bench_opts *o, char *err, size_t errlen)               \
	{                                                                                          \
		(void)o;                                                                           \
		snprintf(err, errlen, "rmq-bench was built without " pkg                           \
				      " (install it, then reconfigure)");                          \
		return -ENOSYS;                                                                    \
	}                                                                                          \
	const struct bench_driver sym = {                                                          \
		.name = nm, .produce_rpc = "-", .consume_rpc = "-", .setup = sym##_setup,          \
		.produce = stub_work, .consume = stub_work, .teardown = stub_teardown,             \
	};

#ifdef BENCH_STUB_NATS
STUB(bench_driver_nats, "nats", "libnats-dev")
#endif
#ifdef BENCH_STUB_REDIS
STUB(bench_driver_redis, "redis", "libhiredis-dev")
#endif
