/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rmqd.c - the node: flags, signals, start-up line, run.
 *
 * SIGINT/SIGTERM once: in a cluster, have the controller move this
 * broker's leaderships to in-sync followers first (5 s at most: broker.c),
 * then stop accepting, let in-flight calls finish (5 s at most, then they
 * are cancelled), flush and sync every log, exit 0.  A
 * second signal exits at once with status 130; the logs recover on the
 * next start (that is what recovery is for).
 */
#include "broker/broker.h"
#include "broker/token.h"

#include "core/error.h"
#include "core/flags.h"
#include "core/log.h"
#include "net/tls.h"
#include "storage/codec.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <mntent.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static struct rmq_broker broker;
static bool insecure_warning;
static volatile sig_atomic_t signals_seen;

static void on_signal(int sig)
{
	(void)sig;
	if (signals_seen++ > 0)
		_exit(130);
	if (broker.rt)
		rmq_runtime_stop(broker.rt);
}

/*
 * Warns about two mount settings of the data directory's filesystem that
 * cost every --fsync=always producer (docs/rmqd.md, "Disks"):
 *
 * - online discard (mount option "discard"): deleting a 256 MiB segment
 *   took 72 ms here, 67 ms of it three discard requests, and produce
 *   stalled as long (docs/storage.md).  Recycled segments free nothing,
 *   but truncation, topic deletion and retention beyond one segment per
 *   roll still do.
 * - ext4 without a journal: an fdatasync after the file's mtime moved (once
 *   per clock tick while it is written) also writes the inode's block, a
 *   second dependent write in about one synced write of three at 330k
 *   msgs/s (docs/benchmarks-notes.md, "What the disk does at half peak").
 *   /sys/fs/ext4/<device>/journal_task says "<none>" then.
 */
static void warn_data_dir_mount(const char *dir)
{
	char real[PATH_MAX], where[PATH_MAX] = "", dev[PATH_MAX] = "";
	size_t best = 0;
	bool discard = false, ext4 = false;

	if (!realpath(dir, real))
		return;
	FILE *f = setmntent("/proc/self/mounts", "r");
	if (!f)
		return;
	struct mntent *m;
	while ((m = getmntent(f)) != NULL) {
		size_t n = strlen(m->mnt_dir);
		bool under = strncmp(real, m->mnt_dir, n) == 0 &&
			     (n == 1 || real[n] == '/' || real[n] == '\0');
		if (under && n >= best) {
			best = n;
			discard = hasmntopt(m, "discard") != NULL;
			ext4 = strcmp(m->mnt_type, "ext4") == 0;
			snprintf(where, sizeof(where), "%s", m->mnt_dir);
			snprintf(dev, sizeof(dev), "%s", m->mnt_fsname);
		}
	}
	endmntent(f);
	if (discard)
		rmq_warn("the data directory is on %s, mounted with 'discard': deleting a segment "
			 "stalls synced writes while the device discards it; prefer 'nodiscard' and a "
			 "periodic fstrim (docs/rmqd.md, \"Disks\")",
			 where);

	char devreal[PATH_MAX], path[PATH_MAX + 64], task[32] = "";
	if (!ext4 || !realpath(dev, devreal))
		return;
	const char *name = strrchr(devreal, '/');
	snprintf(path, sizeof(path), "/sys/fs/ext4/%s/journal_task", name ? name + 1 : devreal);
	FILE *j = fopen(path, "r");
	if (!j)
		return; /* an older kernel, or not a block device */
	bool none = fgets(task, sizeof(task), j) && strncmp(task, "<none>", 6) == 0;
	fclose(j);
	if (none)
		rmq_warn("the data directory is on %s, ext4 without a journal: each synced write "
			 "can also write its file's inode; prefer ext4 with its journal "
			 "(docs/rmqd.md, \"Disks\")",
			 where);
}

/*
 * Raises the open-files soft limit to the hard one, as brokers do (and,
 * as root, the hard one to fs.nr_open): every segment of every partition
 * holds its data file (and an O_DIRECT one while written or read from the
 * disk), every partition its directory, and each connection a socket, so
 * the usual soft limit of 1024 is a few hundred partitions.  Said when it
 * stays low.
 */
static void raise_open_files(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	/* With CAP_SYS_RESOURCE (root) the hard limit itself may go up to
	 * the kernel's fs.nr_open; without it the attempt fails, harmlessly. */
	FILE *f = fopen("/proc/sys/fs/nr_open", "r");
	unsigned long long nr_open = 0;
	if (f) {
		if (fscanf(f, "%llu", &nr_open) != 1)
			nr_open = 0;
		fclose(f);
	}
	if (nr_open > rl.rlim_max) {
		struct rlimit up = {.rlim_cur = (rlim_t)nr_open, .rlim_max = (rlim_t)nr_open};
		if (setrlimit(RLIMIT_NOFILE, &up) == 0) {
			rmq_debug("open files: the limits raised from %llu/%llu to %llu",
				  (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
				  nr_open);
			rl = up;
		}
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			rmq_debug("open files: the soft limit raised from %llu to %llu",
				  (unsigned long long)was, (unsigned long long)rl.rlim_max);
		else
			rl.rlim_cur = was;
	}
	if (rl.rlim_cur < 65536)
		rmq_info("open files: the limit is %llu: with several segments per partition, "
			 "a few thousand partitions can use them up (partitions then fail to "
			 "open, EMFILE); raise it with ulimit -n or LimitNOFILE (docs/rmqd.md, "
			 "\"Sizing\")",
			 (unsigned long long)rl.rlim_cur);
}

/* Reads data_dir/meta/cluster_id, creating it on the first start. */
static int cluster_id(const char *data_dir, char id[40])
{
	char path[4096], dir[4096];
	snprintf(dir, sizeof(dir), "%s/meta", data_dir);
	snprintf(path, sizeof(path), "%s/meta/cluster_id", data_dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, id, 39);
		close(fd);
		if (n <= 0)
			return -EIO;
		id[n] = '\0';
		id[strcspn(id, "\n")] = '\0';
		return 0;
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	rmq_uuid(id);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	ssize_t w = write(fd, id, strlen(id));
	int rc = (w == (ssize_t)strlen(id) && fsync(fd) == 0) ? 0 : -EIO;
	close(fd);
	return rc;
}

/*
 * One rmqd per data directory: a second one would append to the same
 * segments (and per --metadata-dir: to the same controller log).  An
 * exclusive flock on DIR/lock, held for the life of the process (the
 * descriptor stays open; the kernel drops the lock when the process ends,
 * however it ends).  *predecessor: an earlier rmqd served this directory
 * (the file names its pid), so a listen address still in use may be that
 * one's, closing late after a crash.  flag names the directory's flag.
 */
static int lock_dir(const char *flag, const char *dir, bool *predecessor)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/lock", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "rmqd: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		fprintf(stderr, "rmqd: --%s %s is in use by another rmqd (pid %s): stop it or "
				"pick another directory\n", flag, dir, pid[0] ? pid : "unknown");
		close(fd);
		return -1;
	}
	char pid[32];
	*predecessor = pread(fd, pid, sizeof(pid), 0) > 0;
	int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) != len)
		fprintf(stderr, "rmqd: warning: cannot write the pid into %s\n", path);
	return 0; /* fd stays open: the lock lives as long as the process */
}

/* Reads the token secret: the file's bytes (a trailing newline dropped),
 * 32 to 1024 of them, into cfg. */
static int read_secret(const char *path, struct rmq_broker_config *cfg, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	size_t n = fread(cfg->token_secret, 1, sizeof(cfg->token_secret), f);
	int more = fgetc(f);
	fclose(f);
	while (n > 0 && (cfg->token_secret[n - 1] == '\n' || cfg->token_secret[n - 1] == '\r'))
		n--;
	if (more != EOF || n < RMQ_TOKEN_SECRET_MIN) {
		snprintf(err, errlen, "%s: %zu bytes; it must hold %d to %zu (e.g. head -c 48 "
			 "/dev/urandom | base64 > FILE)",
			 path, n, RMQ_TOKEN_SECRET_MIN, sizeof(cfg->token_secret));
		return -1;
	}
	cfg->token_secret_len = n;
	return 0;
}

/* Whether host names this machine only: 127.0.0.0/8, ::1, localhost. */
static bool loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (strcmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/*
 * SIGHUP reads the TLS certificate and key again (new connections take
 * them; open ones keep theirs).  A thread of its own waits for it, as
 * OpenSSL cannot run in a signal handler; every other thread blocks it.
 */
static void *reload_thread(void *arg)
{
	struct rmq_broker_config *cfg = arg;
	struct rmq_tls_ctx *tls = cfg->net.tls;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	for (;;) {
		int sig;
		char err[512];
		if (sigwait(&set, &sig) != 0)
			continue;
		if (rmq_tls_ctx_reload(tls, err, sizeof(err)) < 0 ||
		    rmq_tls_ctx_reload(cfg->peer_tls, err, sizeof(err)) < 0)
			rmq_error("SIGHUP: the TLS certificate was not reloaded, the old one serves on: %s",
				  err);
		else
			rmq_info("SIGHUP: TLS certificate and key reloaded for new connections");
	}
	return NULL;
}

static int split_listen(const char *flag, const char *s, char *host, size_t hlen, uint16_t *port,
			char *err, size_t errlen)
{
	const char *colon = strrchr(s, ':');
	uint64_t p;
	if (!colon || colon == s || (size_t)(colon - s) >= hlen) {
		snprintf(err, errlen, "--%s: '%s' is not host:port (e.g. 127.0.0.1:%s)", flag, s,
			 strcmp(flag, "listen") == 0 ? "9092" : "9644");
		return -1;
	}
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	char why[256];
	if (rmq_parse_uint(colon + 1, 0, 65535, &p, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "--%s: port: %s", flag, why);
		return -1;
	}
	*port = (uint16_t)p;
	return 0;
}

int main(int argc, char **argv)
{
	struct rmq_broker_config *cfg = &broker.cfg;
	const char *listen, *fsync, *prealloc, *level, *compression;
	const char *tls_cert, *tls_key, *tls_client_ca, *tls_ca, *auth, *secret_file, *fetch_send;
	uint64_t token_ttl;
	bool allow_insecure;
	uint64_t cores, seg_bytes, seg_ms, ret_ms, ret_bytes, idx, wbuf, parts, max_msg, max_conns,
		max_streams, max_calls, sw, cw, keepalive, idle, max_wait, ret_check, inflight, listen_retry,
		recv_bufs, recv_buf_bytes, send_queue, poll, off_parts, off_seg, g_min, g_max, g_delay, g_size,
		md_max, off_ret;
	uint64_t req_parts, req_names, io_helpers, req_mem, max_groups, g_pending, handshake, prod_timeout;
	bool pin, auto_create, ret_forever, fetch_copy, dsync, recycle;
	uint64_t read_ahead, ctrl_snap, metrics_parts;
	const char *metrics_listen;
	char err[512];
	int npos;
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	char cores_def[24];
	snprintf(cores_def, sizeof(cores_def), "%ld", online > 0 ? online : 1);

	const struct rmq_flag flags[] = {
		{"listen", RMQ_FLAG_STRING, &listen, "127.0.0.1:9092", "address to serve gRPC on, host:port (0.0.0.0 for every interface; port 0 = any free port)", 0, 0, NULL},
		{"tls-cert", RMQ_FLAG_STRING, &tls_cert, "", "PEM certificate chain: serve TLS 1.3 (ALPN h2) on --listen, with --tls-key; SIGHUP reads both again (docs/security.md)", 0, 0, NULL},
		{"tls-key", RMQ_FLAG_STRING, &tls_key, "", "PEM private key of --tls-cert", 0, 0, NULL},
		{"tls-client-ca", RMQ_FLAG_STRING, &tls_client_ca, "", "PEM CAs: clients must present a certificate they signed (mutual TLS)", 0, 0, NULL},
		{"tls-ca", RMQ_FLAG_STRING, &tls_ca, "", "PEM CAs that signed the other brokers' certificates: with --tls-cert, replication and the controller's calls go over TLS, presenting --tls-cert (default: --tls-client-ca, else the system's CAs)", 0, 0, NULL},
		{"auth", RMQ_FLAG_CHOICE, &auth, "none", "required: every call but Authenticate and health checks needs a session token or a client certificate, and ACLs apply (docs/security.md)", 0, 0, "none|required"},
		{"token-secret-file", RMQ_FLAG_STRING, &secret_file, "", "a file of at least 32 bytes, the same on every node: signs session tokens and names unknown SCRAM users' fake salts; required by --auth required", 0, 0, NULL},
		{"token-ttl", RMQ_FLAG_DURATION, &token_ttl, "1h", "lifetime of the session tokens AuthService.Authenticate issues", 1000000000ULL, 30ULL * 24 * 3600 * 1000000000ULL, NULL},
		{"super-users", RMQ_FLAG_STRING, &cfg->super_users, "", "principals every ACL allows, comma-separated (e.g. User:admin)", 0, 0, NULL},
		{"allow-insecure", RMQ_FLAG_BOOL, &allow_insecure, "false", "serve on an address other than loopback without TLS and --auth required (a warning at start)", 0, 0, NULL},
		{"listen-retry", RMQ_FLAG_DURATION, &listen_retry, "10s", "when the data directory was served before, how long a listen address still in use is retried (a crashed predecessor's sockets close late); 0s = fail at once", 0, 0, NULL},
		{"data-dir", RMQ_FLAG_STRING, &cfg->data_dir, "rmq-data", "directory of the partition logs and metadata", 0, 0, NULL},
		{"metadata-dir", RMQ_FLAG_STRING, &cfg->metadata_dir, "", "directory of the controller's log and snapshots (Kafka's metadata.log.dir): a disk of their own keeps their syncs from waiting behind the partitions'; empty: DATA_DIR/controller", 0, 0, NULL},
		{"node-id", RMQ_FLAG_STRING, &cfg->node_id, "1", "this node's id, a number from 1: in the controller's quorum and in metadata", 0, 0, NULL},
		{"advertised-host", RMQ_FLAG_STRING, &cfg->advertised_host, "", "host clients are told to connect to (default: the listen host)", 0, 0, NULL},
		{"cores", RMQ_FLAG_UINT, &cores, cores_def, "shard threads, one per core (default below: the online CPUs)", 1, 1024, NULL},
		{"pin", RMQ_FLAG_BOOL, &pin, "true", "pin each shard thread to its CPU", 0, 0, NULL},
		{"poll", RMQ_FLAG_DURATION, &poll, "0s", "busy-poll a shard's ring this long before it sleeps (lower latency for more CPU); 0s = sleep at once", 0, 0, NULL},
		{"fsync", RMQ_FLAG_CHOICE, &fsync, "always", "durability: always (ack after fdatasync, group commit), never, or interval:<duration>", 0, 0, "always|never|interval:"},
		{"dsync-writes", RMQ_FLAG_BOOL, &dsync, "true", "with --fsync=always: each O_DIRECT write carries RWF_DSYNC instead of a group-commit fdatasync after it", 0, 0, NULL},
		{"recycle-segments", RMQ_FLAG_BOOL, &recycle, "true", "a new segment reuses the file of one retention deleted (written blocks: no extent conversions)", 0, 0, NULL},
		{"segment-bytes", RMQ_FLAG_SIZE, &seg_bytes, "1GiB", "default segment size (topic segment.bytes)", 1ULL << 14, (1ULL << 32) - 1, NULL},
		{"segment-ms", RMQ_FLAG_DURATION, &seg_ms, "7d", "default segment age before a roll (topic segment.ms)", 1000000ULL, 0, NULL},
		{"retention-ms", RMQ_FLAG_DURATION, &ret_ms, "7d", "default time records are kept (topic retention.ms)", 1000000ULL, 0, NULL},
		{"retention-forever", RMQ_FLAG_BOOL, &ret_forever, "false", "keep records forever by default (retention.ms=-1)", 0, 0, NULL},
		{"retention-bytes", RMQ_FLAG_SIZE, &ret_bytes, "0", "default partition size limit (topic retention.bytes); 0 = unlimited", 0, 0, NULL},
		{"retention-check", RMQ_FLAG_DURATION, &ret_check, "5m", "how often retention and segment age are checked (retention also runs at each segment roll)", 1000000ULL, 0, NULL},
		{"index-interval", RMQ_FLAG_SIZE, &idx, "4KiB", "log bytes between offset index entries", 64, 1ULL << 30, NULL},
		{"write-buffer", RMQ_FLAG_SIZE, &wbuf, "4MiB", "most write buffer one partition holds: a ring from its shard's pool of 8 x this (a batch over half of it is written without it)", 64ULL << 10, 1ULL << 30, NULL},
		{"prealloc", RMQ_FLAG_CHOICE, &prealloc, "zero", "segment preallocation: zero (fallocate; zeros written ahead of page-cache writes), fallocate, none", 0, 0, "zero|fallocate|none"},
		{"partitions", RMQ_FLAG_UINT, &parts, "1", "partitions of a topic created without a count", 1, RMQ_PARTITIONS_MAX, NULL},
		{"auto-create-topics", RMQ_FLAG_BOOL, &auto_create, "false", "create unknown topics on first produce", 0, 0, NULL},
		{"compression", RMQ_FLAG_CHOICE, &compression, "producer", "default topic compression.type", 0, 0, "producer|none|lz4|zstd|snappy"},
		{"max-message-bytes", RMQ_FLAG_SIZE, &max_msg, "16MiB", "largest gRPC message in either direction (and batch, max.message.bytes)", 1024, 1ULL << 30, NULL},
		{"max-connections", RMQ_FLAG_UINT, &max_conns, "4096", "client connections per shard", 1, 1000000, NULL},
		{"max-streams", RMQ_FLAG_UINT, &max_streams, "1024", "concurrent calls per connection", 1, 1u << 20, NULL},
		{"max-calls", RMQ_FLAG_UINT, &max_calls, "16384", "calls in flight per shard", 1, 1u << 24, NULL},
		{"max-request-memory", RMQ_FLAG_SIZE, &req_mem, "256MiB", "memory per shard for requests being received or worked on (their bytes and what the node builds for them); above it the shard stops reading from its connections until work completes", 1ULL << 20, 0, NULL},
		{"produce-timeout", RMQ_FLAG_DURATION, &prod_timeout, "30s", "how long a produce waits for its acks before it is answered TIMEOUT, when the request sets no timeout (the batch may still be stored later)", 1000000ULL, 0, NULL},
		{"max-inflight-produce", RMQ_FLAG_UINT, &inflight, "16384", "produce appends in flight per shard", 1, 1u << 24, NULL},
		{"max-request-partitions", RMQ_FLAG_UINT, &req_parts, "10000", "partition entries one request may name (Fetch, FetchBatch, Subscribe, ListOffsets, ProduceBatch, CommitOffsets, FetchOffsets); more are refused with INVALID_REQUEST", 1, 1u << 24, NULL},
		{"max-request-names", RMQ_FLAG_UINT, &req_names, "1000", "topic or group names one admin or metadata request may name; more are refused with INVALID_REQUEST", 1, 1u << 24, NULL},
		{"io-helpers", RMQ_FLAG_UINT, &io_helpers, "2", "helper threads for blocking file work (opening and recovering logs, closing them, removing deleted partitions), so that no shard thread blocks on it", 1, 64, NULL},
		{"stream-window", RMQ_FLAG_SIZE, &sw, "16MiB", "HTTP/2 initial stream flow-control window", 65535, (1ULL << 31) - 1, NULL},
		{"conn-window", RMQ_FLAG_SIZE, &cw, "64MiB", "HTTP/2 connection flow-control window", 65535, (1ULL << 31) - 1, NULL},
		{"recv-buffers", RMQ_FLAG_UINT, &recv_bufs, "1024", "provided receive buffers per shard (power of 2)", 8, 32768, NULL},
		{"recv-buffer-bytes", RMQ_FLAG_SIZE, &recv_buf_bytes, "64KiB", "bytes per receive buffer", 4096, 1ULL << 24, NULL},
		{"send-queue-bytes", RMQ_FLAG_SIZE, &send_queue, "64MiB", "queued response bytes per call before backpressure", 1ULL << 16, 1ULL << 32, NULL},
		{"keepalive", RMQ_FLAG_DURATION, &keepalive, "60s", "PING a connection idle this long; 0s = never", 0, 0, NULL},
		{"handshake-timeout", RMQ_FLAG_DURATION, &handshake, "1s", "close a connection that has not sent the HTTP/2 client preface and its SETTINGS this long after it was accepted (and, when the connection pool is full, such connections make room for new ones first)", 1000000ULL, 0, NULL},
		{"idle-timeout", RMQ_FLAG_DURATION, &idle, "10m", "close a connection idle this long; 0s = never", 0, 0, NULL},
		{"max-fetch-wait", RMQ_FLAG_DURATION, &max_wait, "30s", "cap on a fetch's max_wait", 0, 0, NULL},
		{"offsets-partitions", RMQ_FLAG_UINT, &off_parts, "0", "partitions of the internal __consumer_offsets log, fixed when first used (0 = what the data directory has, else 16)", 0, 1024, NULL},
		{"rack", RMQ_FLAG_STRING, &cfg->rack, "", "this broker's rack or zone: a partition's replicas are spread over racks", 0, 0, NULL},
		{"broker-heartbeat", RMQ_FLAG_DURATION, &cfg->broker_heartbeat_ns, "500ms", "how often this broker heartbeats to the controller's leader", 10000000ULL, 60000000000ULL, NULL},
		{"broker-session-timeout", RMQ_FLAG_DURATION, &cfg->broker_session_ns, "5s", "on the controller's leader: a broker without a heartbeat this long is fenced (the partitions it leads move to in-sync replicas, or have no leader)", 100000000ULL, 3600000000000ULL, NULL},
		{"replica-lag-max", RMQ_FLAG_DURATION, &cfg->replica_lag_ns, "30s", "a partition's leader asks the controller to take a follower out of the ISR once it has not caught up for this long (Kafka's replica.lag.time.max.ms)", 100000000ULL, 3600000000000ULL, NULL},
		{"reassign-throttle", RMQ_FLAG_SIZE, &cfg->reassign_throttle, "0", "bytes per second each shard of a partition's leader sends to replicas a reassignment adds while they are not in the ISR (Kafka's leader.replication.throttled.rate); in-sync replicas are never throttled; 0 = unthrottled", 0, 0, NULL},
		{"leader-rebalance-interval", RMQ_FLAG_DURATION, &cfg->leader_rebalance_ns, "300s", "on the controller's leader: this often, every partition whose preferred replica (its first) is in sync and running is led by it again (Kafka's auto.leader.rebalance.enable); 0s = never", 0, 0, NULL},
		{"controller-voters", RMQ_FLAG_STRING, &cfg->controller_voters, "", "the controller's voters when a new cluster starts: id@host:port,... (this node among them; every node given the same list); empty: this node alone", 0, 0, NULL},
		{"controller-snapshot-entries", RMQ_FLAG_UINT, &ctrl_snap, "1000", "controller log entries applied between snapshots of its state (also one per 16 MiB of entries); the log is compacted behind each", 2, 1u << 30, NULL},
		{"offsets-replication-factor", RMQ_FLAG_UINT, &cfg->offsets_replication_factor, "3", "in a cluster: replicas of each __consumer_offsets partition (Kafka's offsets.topic.replication.factor); the controller's leader creates the topic at the first FindCoordinator, once this many brokers run (as many as are registered, when fewer)", 1, 16, NULL},
		{"offsets-segment-bytes", RMQ_FLAG_SIZE, &off_seg, "16MiB", "segment size of __consumer_offsets (compaction keeps about 2 segments + twice the live offsets)", 1ULL << 14, 1ULL << 30, NULL},
		{"group-min-session-timeout", RMQ_FLAG_DURATION, &g_min, "6s", "shortest session timeout a consumer may ask for", 1000000ULL, 0, NULL},
		{"group-max-session-timeout", RMQ_FLAG_DURATION, &g_max, "30m", "longest session timeout a consumer may ask for", 1000000ULL, 0, NULL},
		{"group-initial-rebalance-delay", RMQ_FLAG_DURATION, &g_delay, "3s", "how long a group starting from empty waits for more members before its first generation", 0, 0, NULL},
		{"group-max-size", RMQ_FLAG_UINT, &g_size, "0", "members per group; 0 = unlimited", 0, 1u << 20, NULL},
		{"group-max-pending-members", RMQ_FLAG_UINT, &g_pending, "1000", "member ids a group hands out (MEMBER_ID_REQUIRED) that have not joined yet; more joins are refused with GROUP_MAX_SIZE_REACHED until they join or expire", 1, 1u << 20, NULL},
		{"max-groups", RMQ_FLAG_UINT, &max_groups, "100000", "consumer groups the node keeps (members or committed offsets); a new group beyond it is refused with RESOURCE_EXHAUSTED", 1, 1u << 26, NULL},
		{"offsets-retention", RMQ_FLAG_DURATION, &off_ret, "7d", "delete the committed offsets of a group empty this long (checked every --retention-check); 0s = keep forever", 0, 0, NULL},
		{"offset-metadata-max-bytes", RMQ_FLAG_SIZE, &md_max, "4KiB", "longest metadata string stored with a committed offset", 0, 1ULL << 20, NULL},
		{"read-ahead", RMQ_FLAG_SIZE, &read_ahead, "64MiB", "memory per shard for reading cold data ahead of consumers that read it in order (at most 8 MiB per partition); 0 = no read-ahead", 0, 1ULL << 40, NULL},
		{"metrics-listen", RMQ_FLAG_STRING, &metrics_listen, "", "serve Prometheus's GET /metrics (HTTP/1.1, no TLS or authentication) on host:port; empty = off (docs/rmqd.md, \"Metrics\")", 0, 0, NULL},
		{"metrics-partitions-max", RMQ_FLAG_UINT, &metrics_parts, "1000", "partitions whose own series a /metrics scrape carries, in shard order; the rest are counted in rmq_metrics_partitions_omitted; 0 = none", 0, 1u << 24, NULL},
		{"fetch-send", RMQ_FLAG_CHOICE, &fetch_send, "sendmsg", "how fetch answers carry resident batches: sendmsg (referenced from the segment mapping, the kernel copies them into the socket), splice (the page cache's pages into the socket, no copy; plaintext connections), copy (copied into each answer, the old path)", 0, 0, "sendmsg|splice|copy"},
		{"fetch-copy", RMQ_FLAG_BOOL, &fetch_copy, "false", "the same as --fetch-send copy (kept for scripts)", 0, 0, NULL},
		{"log-level", RMQ_FLAG_CHOICE, &level, "info", "log threshold", 0, 0, "debug|info|warn|error|off"},
	};
	size_t nflags = sizeof(flags) / sizeof(flags[0]);

	int rc = rmq_flags_parse(argc, argv, flags, nflags, &npos, err, sizeof(err));
	if (rc == 1) {
		printf("usage: rmqd [flags]\n\nrmqd serves the RustMQ gRPC protocol: topics and partitions stored as\n"
		       "crash-safe logs, one shard thread per core.\n\nflags:\n");
		rmq_flags_usage(stdout, flags, nflags);
		return 0;
	}
	if (rc < 0 || npos > 0) {
		fprintf(stderr, "rmqd: %s\n", rc < 0 ? err : "unexpected argument (flags start with --)");
		return 2;
	}
	static char host[256];
	struct rmq_net_config *net = &cfg->net;
	rmq_net_config_default(net);
	if (split_listen("listen", listen, host, sizeof(host), &net->port, err, sizeof(err)) < 0) {
		fprintf(stderr, "rmqd: %s\n", err);
		return 2;
	}
	if (recv_bufs & (recv_bufs - 1)) {
		fprintf(stderr, "rmqd: --recv-buffers: %" PRIu64 " is not a power of 2\n", recv_bufs);
		return 2;
	}
	rmq_log_set_level((enum rmq_log_level)rmq_log_parse_level(level));
	net->host = host;
	if (tls_cert[0] || tls_key[0] || tls_client_ca[0]) {
		struct rmq_tls_config tc = {.server = true,
					    .cert = tls_cert[0] ? tls_cert : NULL,
					    .key = tls_key[0] ? tls_key : NULL,
					    .ca = tls_client_ca[0] ? tls_client_ca : NULL};
		if (rmq_tls_ctx_new(&tc, &net->tls, err, sizeof(err)) < 0) {
			fprintf(stderr, "rmqd: --tls-cert/--tls-key/--tls-client-ca: %s\n", err);
			return 2;
		}
		/* Other brokers are TLS servers as this one is: reached with
		 * this certificate (their --tls-client-ca may ask for it). */
		struct rmq_tls_config pc = {.cert = tc.cert, .key = tc.key,
					    .ca = tls_ca[0] ? tls_ca : tc.ca};
		if (rmq_tls_ctx_new(&pc, &cfg->peer_tls, err, sizeof(err)) < 0) {
			fprintf(stderr, "rmqd: --tls-ca: %s\n", err);
			return 2;
		}
	} else if (tls_ca[0]) {
		fprintf(stderr, "rmqd: --tls-ca needs --tls-cert and --tls-key (brokers talk TLS to "
				"each other when they serve it)\n");
		return 2;
	}
	cfg->auth_required = strcmp(auth, "required") == 0;
	cfg->token_ttl_ns = token_ttl;
	if (secret_file[0] && read_secret(secret_file, cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "rmqd: --token-secret-file: %s\n", err);
		return 2;
	}
	if (cfg->token_secret_len) {
		/* This broker's calls to the others carry a token it signs
		 * itself: a broker principal (auth.h), renewed at each start. */
		char p[64], tok[RMQ_TOKEN_TEXT_MAX + 1];
		snprintf(p, sizeof(p), "Broker:%s", cfg->node_id);
		int n = rmq_token_make(cfg->token_secret, cfg->token_secret_len, p, strlen(p),
				       rmq_wall_ms(), 10ULL * 365 * 24 * 3600 * 1000, NULL, tok, sizeof(tok));
		if (n < 0 || (size_t)n + 8 > sizeof(cfg->peer_authz)) {
			fprintf(stderr, "rmqd: cannot sign this broker's token: %s\n", rmq_strerror(n));
			return 1;
		}
		snprintf(cfg->peer_authz, sizeof(cfg->peer_authz), "Bearer %s", tok);
	}
	if (cfg->auth_required && !cfg->token_secret_len) {
		fprintf(stderr, "rmqd: --auth required needs --token-secret-file (the same file on every "
				"node: it signs the session tokens)\n");
		return 2;
	}
	/* Safe by default: anyone who reaches a port outside this host could
	 * read, write and delete every topic unless calls are authenticated
	 * over TLS. */
	if (!loopback(host) && !(net->tls && cfg->auth_required)) {
		if (!allow_insecure) {
			fprintf(stderr,
				"rmqd: --listen %s is reachable from other hosts without %s: anyone who "
				"reaches it could read, write and delete every topic. Pass --tls-cert, "
				"--tls-key and --auth required, listen on 127.0.0.1, or pass "
				"--allow-insecure (docs/security.md)\n",
				host, net->tls ? "--auth required" : "TLS and --auth required");
			return 2;
		}
		insecure_warning = true;
	}
	net->max_connections = (uint32_t)max_conns;
	net->max_streams = (uint32_t)max_streams;
	net->max_calls = (uint32_t)max_calls;
	net->request_bytes_max = req_mem;
	net->preface_timeout_ns = handshake;
	net->max_message_bytes = max_msg;
	net->stream_window = (uint32_t)sw;
	net->conn_window = (uint32_t)cw;
	net->recv_buffers = (uint32_t)recv_bufs;
	net->recv_buffer_bytes = (uint32_t)recv_buf_bytes;
	net->send_queue_bytes = send_queue;
	net->keepalive_ns = keepalive;
	net->idle_timeout_ns = idle;

	cfg->shards = (unsigned)cores;
	cfg->pin = pin;
	cfg->dsync_writes = dsync;
	cfg->recycle_segments = recycle;
	cfg->poll_ns = poll;
	if (strcmp(fsync, "always") == 0) {
		cfg->fsync = RMQ_FSYNC_ALWAYS;
	} else if (strcmp(fsync, "never") == 0) {
		cfg->fsync = RMQ_FSYNC_NEVER;
	} else {
		cfg->fsync = RMQ_FSYNC_INTERVAL;
		if (rmq_parse_duration(fsync + strlen("interval:"), &cfg->fsync_interval_ns, err, sizeof(err)) < 0 ||
		    cfg->fsync_interval_ns < 1000000ULL) {
			fprintf(stderr, "rmqd: --fsync: interval '%s': %s\n", fsync + strlen("interval:"),
				cfg->fsync_interval_ns < 1000000ULL ? "must be at least 1ms" : err);
			return 2;
		}
	}
	cfg->prealloc = strcmp(prealloc, "zero") == 0	     ? RMQ_PREALLOC_ZERO
			: strcmp(prealloc, "fallocate") == 0 ? RMQ_PREALLOC_FALLOCATE
							     : RMQ_PREALLOC_NONE;
	cfg->write_buffer_bytes = wbuf;
	cfg->index_interval_bytes = idx;
	cfg->default_partitions = (uint32_t)parts;
	cfg->auto_create_topics = auto_create;
	cfg->retention_check_ns = ret_check;
	cfg->max_fetch_wait_ns = max_wait;
	cfg->fetch_send = fetch_copy || strcmp(fetch_send, "copy") == 0 ? RMQ_FETCH_COPY
			  : strcmp(fetch_send, "splice") == 0	   ? RMQ_FETCH_SPLICE
								   : RMQ_FETCH_SENDMSG;
	net->splice = cfg->fetch_send == RMQ_FETCH_SPLICE;
	cfg->read_ahead_bytes = read_ahead;
	cfg->max_inflight_produce = (uint32_t)inflight;
	cfg->produce_timeout_ns = prod_timeout;
	cfg->max_request_partitions = (uint32_t)req_parts;
	cfg->max_request_names = (uint32_t)req_names;
	cfg->io_helpers = (uint32_t)io_helpers;
	cfg->offsets_partitions = (uint32_t)off_parts;
	cfg->offsets_segment_bytes = off_seg;
	cfg->ctrl_snapshot_entries = (uint32_t)ctrl_snap;
	cfg->group_min_session_ns = g_min;
	cfg->group_max_session_ns = g_max;
	cfg->group_initial_delay_ns = g_delay;
	cfg->group_max_size = (uint32_t)g_size;
	cfg->group_max_pending = (uint32_t)g_pending;
	cfg->max_groups = (uint32_t)max_groups;
	cfg->metrics_partitions_max = (uint32_t)metrics_parts;
	if (metrics_listen[0]) {
		static char mhost[256];
		if (split_listen("metrics-listen", metrics_listen, mhost, sizeof(mhost),
				 &cfg->metrics_port, err, sizeof(err)) < 0) {
			fprintf(stderr, "rmqd: %s\n", err);
			return 2;
		}
		cfg->metrics_host = mhost;
	}
	cfg->offset_metadata_max = (uint32_t)md_max;
	cfg->offsets_retention_ms = off_ret / 1000000ULL;
	if (g_min > g_max) {
		fprintf(stderr, "rmqd: --group-min-session-timeout is above --group-max-session-timeout\n");
		return 2;
	}
	if (cfg->advertised_host[0] == '\0')
		cfg->advertised_host = NULL;
	struct rmq_topic_config *td = &cfg->topic_defaults;
	memset(td, 0, sizeof(*td));
	td->retention_ms = ret_forever ? -1 : (int64_t)(ret_ms / 1000000ULL);
	td->retention_bytes = ret_bytes ? (int64_t)ret_bytes : -1;
	td->segment_bytes = seg_bytes;
	td->segment_ms = seg_ms / 1000000ULL;
	td->compression = strcmp(compression, "producer") == 0 ? -1 : rmq_codec_parse(compression);
	td->min_insync_replicas = 1;
	/* A topic's batches are at most one gRPC message; each topic also
	 * keeps them within one of its segments (rmq_topic_config_fit). */
	td->max_message_bytes = max_msg;

	rc = mkdir(cfg->data_dir, 0755);
	if (rc < 0 && errno != EEXIST) {
		fprintf(stderr, "rmqd: cannot create --data-dir %s: %s\n", cfg->data_dir, strerror(errno));
		return 1;
	}
	bool predecessor = false, unused;
	if (lock_dir("data-dir", cfg->data_dir, &predecessor) < 0)
		return 1;
	if (cfg->metadata_dir && cfg->metadata_dir[0]) {
		rc = mkdir(cfg->metadata_dir, 0755);
		if (rc < 0 && errno != EEXIST) {
			fprintf(stderr, "rmqd: cannot create --metadata-dir %s: %s\n", cfg->metadata_dir,
				strerror(errno));
			return 1;
		}
		if (lock_dir("metadata-dir", cfg->metadata_dir, &unused) < 0)
			return 1;
	}
	/* The shards' listener checks that nothing else listens on the port
	 * (src/net/server.c); only a successor waits for it. */
	net->listen_retry_ns = predecessor ? listen_retry : 0;
	warn_data_dir_mount(cfg->data_dir);
	raise_open_files();
	rc = cluster_id(cfg->data_dir, broker.cluster_id);
	if (rc < 0) {
		fprintf(stderr, "rmqd: cannot read or write %s/meta/cluster_id: %s\n", cfg->data_dir,
			rmq_strerror(rc));
		return 1;
	}
	char joined[8];
	broker.cluster_joined = rmq_meta_read_file(cfg->data_dir, RMQ_META_CLUSTER_JOINED, joined,
						   sizeof(joined)) >= 0;

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigset_t hup;
	sigemptyset(&hup);
	sigaddset(&hup, SIGHUP);
	pthread_t reloader;
	if (net->tls && (pthread_sigmask(SIG_BLOCK, &hup, NULL) != 0 ||
			 pthread_create(&reloader, NULL, reload_thread, cfg) != 0 ||
			 pthread_detach(reloader) != 0))
		rmq_warn("SIGHUP will not reload the TLS certificate: no thread for it");
	if (insecure_warning)
		rmq_warn("serving on %s without TLS and authentication (--allow-insecure): anyone who "
			 "reaches it can read, write and delete every topic",
			 host);
	if (net->tls)
		rmq_info("TLS 1.3 on %s:%u (ALPN h2%s)", host, net->port,
			 tls_client_ca[0] ? ", client certificates required" : "");

	broker.fsync_name = fsync;
	rc = rmq_broker_run(&broker);
	rmq_tls_ctx_free(net->tls); /* the reload thread waits for SIGHUP, blocked now */
	rmq_tls_ctx_free(cfg->peer_tls);
	if (rc < 0) {
		rmq_error("rmqd stopped: %s", rmq_strerror(rc));
		return 1;
	}
	rmq_info("rmqd stopped cleanly");
	return 0;
}
