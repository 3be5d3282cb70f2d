/* SPDX-License-Identifier: Apache-2.0 */
/* controller.c - the cluster controller on shard 0 (controller.h). */
#include "broker/controller.h"

#include "broker/broker.h"
#include "broker/ctrl_net.h"
#include "broker/ctrl_store.h"
#include "broker/errcode.h"
#include "broker/elect.h"
#include "broker/group.h"
#include "broker/fleet.h"
#include "broker/heartbeat.h"
#include "broker/topics.h"
#include "core/assert.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "raft/raft.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(((struct rmq_broker *)0)->ctrl_leader_addr) == RMQ_RAFT_ADDR_MAX,
	       "the published quorum holds the leader's whole address");
_Static_assert(sizeof(((struct rmq_broker *)0)->ctrl_voters) / sizeof(uint32_t) ==
		       RMQ_RAFT_VOTERS_MAX,
	       "the published quorum holds every voter");

/* The first byte of a command (and of a snapshot's data). */
#define CMD_SET_TOPICS 1 /* a ClusterMetadata of topics (before brokers) */
#define CMD_SET_STATE 2  /* a ControllerState: the whole state after it */
#define ELECTION_TICKS 10
#define HEARTBEAT_TICKS 2
#define MAX_APPEND 64
#define INBOUND_MAX 4096 /* received Raft calls waiting for their answer */
#define ANSWERS_MAX 4096 /* answers to our calls waiting to be stepped */
/* How long a proposal waits: for a leader to be known (one voter starting
 * up takes a tick; a node cut off from a majority waits for none), then
 * for its entry to be applied. */
#define PROPOSAL_WAIT_NS (3000ULL * 1000 * 1000)
#define PROPOSAL_APPLY_NS (10000ULL * 1000 * 1000)
#define BATCH_OPS_MAX 256 /* changes decided into one entry */

/* A change of the state machine: queued until this node leads and has
 * applied everything committed, then decided (built) with others into one
 * entry, then waiting for that entry to be applied and published. */
struct op {
	struct op *next;
	struct rmq_meta *(*build)(void *arg, const struct rmq_meta *cur);
	void (*applied)(void *arg, int code);
	void *arg;
	uint64_t since_ns;
	int code;             /* refused: the answer */
};

/* The entry in flight: the ops decided into it (at most one at a time, so
 * every decision reads a state in which everything before it is applied). */
struct batch {
	struct op *ops;
	uint64_t index, term;
	bool ok;              /* its entry was applied (index and term matched) */
	uint64_t deadline_ns; /* answered TIMEOUT by then */
};

struct rmq_ctrl {
	struct rmq_bshard *bs;
	uint32_t self;
	bool stopping, failed;

	/* The core, its store and the Ready in flight (raft.h's discipline:
	 * while it is, ticks are counted and proposals and messages queued). */
	struct rmq_raft *raft;
	struct rmq_cstore *store;
	struct rmq_timer timer;
	uint32_t ticks_due;
	bool in_ready;
	struct rmq_raft_ready rd;
	bool sent_early;           /* this Ready's APPENDs left before it was durable */
	uint64_t durable_term;     /* the hard state's, as made durable */
	uint32_t durable_vote;
	uint32_t known_leader;     /* for the log line when it changes */
	uint64_t known_term;

	/* Changes: not yet decided, in flight (one entry), refused. */
	struct op *queue, *queue_tail;
	struct batch *inflight;
	struct op *refused;                  /* answered at the next tick */
	struct rmq_ctrl_change *changes, *changes_tail; /* membership calls */
	/* The topics of an older version's meta/topics: the first change this
	 * node decides when it leads (the others build on them). */
	enum { IMPORT_NONE, IMPORT_PENDING, IMPORT_PROPOSED } import;
	struct rmq_meta *imported;

	/* The network: received calls to step before the next Ready, then
	 * stepped (their answers are in the Ready after); answers to ours. */
	struct rmq_ctrl_peers *peers;
	struct rmq_ctrl_inbound *inq, *inq_tail, *stepped, *stepped_tail;
	unsigned n_inbound;
	struct rmq_raft_msg answers[ANSWERS_MAX];
	size_t n_answers;

	/* The state machine, as of applied, and its publishing to the shards
	 * (one at a time, the newest). */
	struct rmq_meta *meta;     /* one reference held here */
	uint64_t applied, applied_term;
	struct rmq_raft_conf conf;
	uint32_t outside_leader;   /* not a member: the leader its heartbeats reach */
	char outside_addr[RMQ_RAFT_ADDR_MAX];
	bool publishing;
	uint64_t published, publish_index;
	struct rmq_topics_publish pub;

	/* Snapshots: ours (saved on a helper thread, then compacted behind),
	 * the bytes of the newest (what InstallSnapshot sends), and a leader's
	 * being received (saved as DIR/snapshot.incoming, then stepped; its
	 * bytes wait for the Ready that installs it). */
	uint64_t snap_index;
	uint64_t bytes_since_snap;   /* of entries applied after snap_index */
	bool saving;
	uint64_t compact_to;       /* saved, to compact once no Ready is in flight */
	uint8_t *save_buf;         /* ... its bytes */
	size_t save_len;
	uint8_t *snap_data;
	size_t snap_len;
	bool logged_snapshot;
	bool incoming;
	uint8_t *incoming_data;
	size_t incoming_len;
};

static void pump(struct rmq_ctrl *c);
static void changes_step(struct rmq_ctrl *c);

static void ctrl_dir(char *buf, size_t len, const struct rmq_broker *b)
{
	if (b->cfg.metadata_dir && b->cfg.metadata_dir[0])
		snprintf(buf, len, "%s", b->cfg.metadata_dir);
	else
		snprintf(buf, len, "%s/controller", b->cfg.data_dir);
}

/* The node's id in the controller: --node-id, a number. */
static int node_id(const struct rmq_broker *b, uint32_t *id)
{
	*id = rmq_ctrl_node_id(b->cfg.node_id);
	if (!*id) {
		rmq_error("--node-id=%s: the controller needs a number from 1 to %u", b->cfg.node_id,
			  UINT32_MAX);
		return RMQ_EBADFLAG;
	}
	return 0;
}

int rmq_ctrl_flag_voters(const struct rmq_broker *b, struct rmq_raft_conf *conf)
{
	const char *spec = b->cfg.controller_voters;
	memset(conf, 0, sizeof(*conf));
	for (const char *p = spec; p && *p;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		char item[RMQ_RAFT_ADDR_MAX + 16], id[16];
		const char *at = memchr(p, '@', n);
		if (n >= sizeof(item) || !at || (size_t)(at - p) >= sizeof(id) ||
		    n - (size_t)(at - p) - 1 >= RMQ_RAFT_ADDR_MAX || !memchr(at, ':', n - (size_t)(at - p)))
			goto bad;
		memcpy(item, p, n);
		item[n] = '\0';
		memcpy(id, p, (size_t)(at - p));
		id[at - p] = '\0';
		struct rmq_raft_server sv = {.id = rmq_ctrl_node_id(id), .role = RMQ_RAFT_VOTER};
		snprintf(sv.addr, sizeof(sv.addr), "%s", item + (at - p) + 1);
		if (sv.id == 0 || conf->n == RMQ_RAFT_VOTERS_MAX || rmq_raft_conf_find(conf, sv.id))
			goto bad;
		uint32_t k = conf->n++;
		while (k > 0 && conf->servers[k - 1].id > sv.id) {
			conf->servers[k] = conf->servers[k - 1];
			k--;
		}
		conf->servers[k] = sv;
		p = end ? end + 1 : p + n;
	}
	return 0;
bad:
	rmq_error("--controller-voters=%s: expected id@host:port,... with distinct ids from 1 and "
		  "at most %d voters",
		  spec, RMQ_RAFT_VOTERS_MAX);
	return RMQ_EBADFLAG;
}

/* The first configuration of a new cluster: --controller-voters, or this
 * node alone at its advertised address; none when this node is not among
 * the voters (it joins).  Returns 0 or RMQ_EBADFLAG (logged). */
static int first_conf(const struct rmq_broker *b, uint32_t self, struct rmq_raft_conf *conf)
{
	int rc = rmq_ctrl_flag_voters(b, conf);
	if (rc < 0 || conf->n > 0) {
		if (rc == 0 && !rmq_raft_conf_find(conf, self)) {
			/* A node that joins an existing cluster: it knows no
			 * configuration until the leader adds it (AddPeer). */
			rmq_info("controller: this node (%u) is not one of --controller-voters: a "
				 "broker only (AddPeer on the leader makes it a voter)",
				 self);
			memset(conf, 0, sizeof(*conf));
		}
		return rc;
	}
	conf->n = 1;
	conf->servers[0] = (struct rmq_raft_server){.id = self, .role = RMQ_RAFT_VOTER};
	snprintf(conf->servers[0].addr, sizeof(conf->servers[0].addr), "%s:%u",
		 b->cfg.advertised_host ? b->cfg.advertised_host : b->cfg.net.host, b->cfg.net.port);
	return 0;
}

/* The state a command (or a snapshot's data) holds (refs = 0): a
 * SET_STATE, or what versions before the brokers wrote (a SET_TOPICS
 * command, a snapshot of bare ClusterMetadata), whose partitions are this
 * node's.  Returns 0, RMQ_ECORRUPT or -ENOMEM. */
static int state_decode(const struct rmq_broker *b, const uint8_t *data, size_t len, bool snapshot,
			struct rmq_meta **out)
{
	if (len >= 1 && data[0] == CMD_SET_STATE)
		return rmq_meta_decode(data + 1, len - 1, &b->cfg.topic_defaults, out);
	if (len >= 1 && data[0] == CMD_SET_TOPICS)
		return rmq_meta_decode_topics(data + 1, len - 1, &b->cfg.topic_defaults, b->self, out);
	if (snapshot) /* a ClusterMetadata's first byte is a field's tag, never 1 or 2 */
		return rmq_meta_decode_topics(data, len, &b->cfg.topic_defaults, b->self, out);
	return RMQ_ECORRUPT;
}

/* The state a command entry holds (refs = 0), or NULL when e is none. */
static struct rmq_meta *command_state(const struct rmq_broker *b, const struct rmq_raft_entry *e)
{
	struct rmq_meta *m;
	if (e->type != RMQ_RAFT_ENTRY_NORMAL || e->len < 1)
		return NULL;
	if (state_decode(b, e->data, e->len, false, &m) < 0) {
		rmq_error("controller: entry %" PRIu64 " does not decode; ignored", e->index);
		return NULL;
	}
	m->version = e->index;
	return m;
}

/* The state as a command, malloc'd into *buf.  Returns 0 or -ENOMEM. */
static int state_encode(const struct rmq_meta *m, uint8_t **buf, size_t *len)
{
	if (rmq_meta_encode(m, 1, buf, len) < 0)
		return -ENOMEM;
	(*buf)[0] = CMD_SET_STATE;
	*len += 1;
	return 0;
}

int rmq_ctrl_recover(struct rmq_broker *b, struct rmq_meta **initial)
{
	char dir[4200];
	struct rmq_io *io;
	struct rmq_io_config ic = {.entries = 64, .fixed_buffers = 4};
	struct rmq_cstore *cs;
	struct rmq_cstore_state st;
	struct rmq_meta *m = NULL;
	uint32_t id;

	struct rmq_raft_conf conf;
	int rc = node_id(b, &id);
	if (rc == 0)
		rc = first_conf(b, id, &conf); /* checked now: a bad flag stops the start */
	if (rc < 0)
		return rc;
	ctrl_dir(dir, sizeof(dir), b);
	rc = rmq_io_create(&ic, &io);
	if (rc < 0)
		return rc;
	rc = rmq_cstore_open(io, dir, &cs, &st);
	if (rc < 0) {
		rmq_error("cannot open the controller's state in %s: %s", dir, rmq_strerror(rc));
		rmq_io_destroy(io);
		return rc;
	}
	if (st.snap_index) {
		rc = state_decode(b, st.snap_data, st.snap_len, true, &m);
		if (rc < 0)
			rmq_error("controller: the snapshot's state does not decode");
		else
			m->version = st.snap_index;
	}
	/* Every command holds the whole set of topics: the newest committed
	 * one is the state. */
	for (size_t i = st.n_entries; rc == 0 && i-- > 0;) {
		if (st.entries[i].index > st.hs.commit)
			continue;
		struct rmq_meta *cm = command_state(b, &st.entries[i]);
		if (cm) {
			rmq_meta_free(m);
			m = cm;
			break;
		}
	}
	bool fresh = st.snap_index == 0 && st.n_entries == 0;
	rmq_cstore_close(cs);
	rmq_cstore_state_free(&st);
	rmq_io_destroy(io);
	if (rc == 0 && fresh) {
		/* An older version kept the topics in meta/topics. */
		rc = rmq_meta_load(b->cfg.data_dir, &b->cfg.topic_defaults, b->self, &m);
		b->ctrl_import = rc == 0 && m->ntopics > 0;
		if (rc == 0)
			m->version = 0; /* the controller's versions are its indexes */
	}
	if (rc == 0 && !m) {
		m = rmq_meta_new(0);
		if (!m)
			rc = -ENOMEM;
		else
			m->defaults = b->cfg.topic_defaults;
	}
	if (rc < 0) {
		rmq_meta_free(m);
		return rc;
	}
	*initial = m;
	return 0;
}

/* ---- publishing ------------------------------------------------------------ */

static void finish(struct op *o, int code)
{
	o->applied(o->arg, code);
	free(o);
}

static void finish_all(struct op *o, int code)
{
	while (o) {
		struct op *next = o->next;
		finish(o, code);
		o = next;
	}
}

/* Answers the changes refused while the store was failed. */
static void answer_refused(struct rmq_ctrl *c)
{
	struct op *o = c->refused;
	c->refused = NULL;
	finish_all(o, EC_STORAGE_ERROR);
}

/* Answers the entry in flight once it is applied up to index: code when
 * its entry was, else NOT_CONTROLLER (another leader's entry took its
 * place: it never will be). */
static void answer_upto(struct rmq_ctrl *c, uint64_t index, int code)
{
	struct batch *bt = c->inflight;
	if (!bt || bt->index > index)
		return;
	c->inflight = NULL;
	finish_all(bt->ops, bt->ok ? code : EC_NOT_CONTROLLER);
	free(bt);
}

static void publish(struct rmq_ctrl *c);

static void published(void *arg)
{
	struct rmq_ctrl *c = arg;
	c->publishing = false;
	c->published = c->publish_index;
	answer_upto(c, c->published, EC_OK);
	publish(c);
	pump(c); /* proposals held behind an import go on */
}

/* Sends the newest applied state to every shard, unless they have it. */
static void publish(struct rmq_ctrl *c)
{
	if (!c->publishing && rmq_runtime_stopping(c->bs->b->rt) &&
	    atomic_load(&c->bs->b->handing_off) != 1) {
		/* Not while the node stops (the other shards may be gone; a
		 * controlled shutdown holds them all, and needs the state that
		 * says its leaderships moved); what was applied is committed:
		 * its changes are answered so, or the calls waiting for them
		 * would hold the stop forever. */
		answer_upto(c, c->meta->version, EC_OK);
		return;
	}
	if (c->publishing || c->meta->version <= c->published)
		return;
	c->publishing = true;
	c->publish_index = c->meta->version;
	rmq_topics_publish(c->bs, c->meta, &c->pub, published, c);
}

/* ---- the state machine ------------------------------------------------------- */

static void import_done(void *arg, int code)
{
	struct rmq_ctrl *c = arg;
	char from[4200], to[4200];
	if (code != EC_OK) {
		c->import = IMPORT_PENDING; /* again when this node leads */
		return;
	}
	c->import = IMPORT_NONE;
	rmq_meta_unref(c->imported);
	c->imported = NULL;
	snprintf(from, sizeof(from), "%s/meta/topics", c->bs->b->cfg.data_dir);
	snprintf(to, sizeof(to), "%s/meta/topics.imported", c->bs->b->cfg.data_dir);
	if (rename(from, to) < 0)
		rmq_warn("controller: cannot rename %s: %s", from, rmq_strerror(-errno));
	rmq_info("controller: imported %zu topics of %s", c->meta->ntopics, from);
}

/* The imported topics replace whatever the new cluster holds (nothing but
 * brokers registered meanwhile, which are kept). */
static struct rmq_meta *import_build(void *arg, const struct rmq_meta *cur)
{
	struct rmq_ctrl *c = arg;
	struct rmq_meta *m = rmq_meta_copy(c->imported, 0);
	if (!m)
		return NULL;
	free(m->brokers);
	m->brokers = calloc(cur->nbrokers + 1, sizeof(*m->brokers));
	if (!m->brokers) {
		m->nbrokers = 0;
		rmq_meta_free(m);
		return NULL;
	}
	memcpy(m->brokers, cur->brokers, cur->nbrokers * sizeof(*cur->brokers));
	m->nbrokers = cur->nbrokers;
	memcpy(m->cluster_id, cur->cluster_id, sizeof(m->cluster_id));
	return m;
}

static void apply(struct rmq_ctrl *c, const struct rmq_raft_entry *e)
{
	if (e->type == RMQ_RAFT_ENTRY_CONF) {
		(void)rmq_raft_conf_decode(e->data, e->len, &c->conf); /* checked by the core */
	} else {
		struct rmq_meta *m = command_state(c->bs->b, e);
		if (m) {
			rmq_meta_ref(m);
			rmq_meta_unref(c->meta);
			c->meta = m;
		}
	}
	c->applied = e->index;
	c->applied_term = e->term;
	c->bytes_since_snap += e->len;
	if (c->inflight && c->inflight->index == e->index)
		c->inflight->ok = c->inflight->term == e->term;
}

/* ---- snapshots ----------------------------------------------------------------- */

/* A snapshot file written on a helper thread.  The job owns what it
 * writes (it may outlive a controller that stops meanwhile: its done then
 * finds none and only lets go). */
struct snap_job {
	struct rmq_offload job;
	struct rmq_bshard *bs;
	char dir[4200];
	struct rmq_ctrl_inbound *in; /* a leader's snapshot received; NULL: our own */
	uint64_t index, term;
	struct rmq_raft_conf conf;
	uint8_t *data;               /* owned (a received one: in->buf) */
	size_t len;
	int rc;
};

static void snap_job_work(struct rmq_offload *job)
{
	struct snap_job *j = RMQ_CONTAINER_OF(job, struct snap_job, job);
	j->rc = rmq_cstore_snapshot_save(j->dir, j->in != NULL, j->index, j->term, &j->conf,
					 j->data, j->len);
}

static void incoming_saved(struct rmq_ctrl *c, struct snap_job *j);

static void snap_job_done(struct rmq_offload *job)
{
	struct snap_job *j = RMQ_CONTAINER_OF(job, struct snap_job, job);
	struct rmq_ctrl *c = j->bs->ctrl;
	if (j->in) {
		if (c) {
			incoming_saved(c, j);
		} else {
			free(j->data);
			j->in->buf = NULL;
			rmq_ctrl_answer(j->bs, j->in, NULL, 0, RMQ_GRPC_UNAVAILABLE);
		}
		free(j);
		return;
	}
	if (!c) {
		free(j->data);
		free(j);
		return;
	}
	c->saving = false;
	if (j->rc < 0) {
		rmq_warn("controller: cannot save a snapshot at %" PRIu64 ": %s (the log keeps "
			 "growing until one is saved)",
			 j->index, rmq_strerror(j->rc));
		free(j->data);
	} else {
		/* Compacted by pump (outside a Ready); then InstallSnapshot sends it. */
		c->compact_to = j->index;
		c->save_buf = j->data;
		c->save_len = j->len;
	}
	free(j);
	pump(c);
}

static struct snap_job *snap_job_new(struct rmq_ctrl *c, uint64_t index, uint64_t term,
				     const struct rmq_raft_conf *conf)
{
	struct snap_job *j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	j->bs = c->bs;
	ctrl_dir(j->dir, sizeof(j->dir), c->bs->b);
	j->index = index;
	j->term = term;
	j->conf = *conf;
	j->job.work = snap_job_work;
	j->job.done = snap_job_done;
	return j;
}

/* Every --controller-snapshot-entries applied entries (or
 * RMQ_CTRL_SNAPSHOT_BYTES of them), the state machine is saved on a helper
 * thread; the log is compacted behind it (pump). */
static void maybe_snapshot(struct rmq_ctrl *c)
{
	if (c->saving || c->compact_to || c->applied == c->snap_index ||
	    (c->applied < c->snap_index + c->bs->b->cfg.ctrl_snapshot_entries &&
	     c->bytes_since_snap < RMQ_CTRL_SNAPSHOT_BYTES))
		return;
	struct snap_job *j = snap_job_new(c, c->applied, c->applied_term, &c->conf);
	if (!j || state_encode(c->meta, &j->data, &j->len) < 0) {
		free(j);
		return; /* tried again at the next entry */
	}
	c->saving = true;
	rmq_offload(c->bs->b->offload, c->bs->s, &j->job);
}

/* ---- the network ------------------------------------------------------------------ */

static void incoming_save(struct rmq_ctrl *c, struct rmq_ctrl_inbound *in);

static void inbound_push(struct rmq_ctrl_inbound **head, struct rmq_ctrl_inbound **tail,
			 struct rmq_ctrl_inbound *in)
{
	in->next = NULL;
	if (*tail)
		(*tail)->next = in;
	else
		*head = in;
	*tail = in;
}

static void answer(struct rmq_ctrl *c, struct rmq_ctrl_inbound *in, const struct rmq_raft_msg *m,
		   int code, const char *why)
{
	uint8_t *buf;
	size_t len;
	c->n_inbound--;
	if (rmq_ctrl_wire_encode_response(in->rpc, m, rmq_raft_term(c->raft), c->self, code, why,
					  &buf, &len) == 0)
		rmq_ctrl_answer(c->bs, in, buf, len, 0);
	else
		rmq_ctrl_answer(c->bs, in, NULL, 0, RMQ_GRPC_RESOURCE_EXHAUSTED);
}

void rmq_ctrl_receive(struct rmq_bshard *bs, struct rmq_ctrl_inbound *in)
{
	struct rmq_ctrl *c = bs->ctrl;
	if (!c || c->failed || c->stopping || c->n_inbound >= INBOUND_MAX) {
		rmq_ctrl_answer(bs, in, NULL, 0, RMQ_GRPC_UNAVAILABLE);
		return;
	}
	c->n_inbound++;
	int rc = 0;
	if (in->rpc == RMQ_CTRL_RPC_SNAPSHOT)
		in->m.to = c->self; /* decoded and checked on its shard (ctrl_net.c) */
	else
		rc = rmq_ctrl_wire_decode_request(in->rpc, in->buf, in->len, "", c->self, &in->m,
						  &in->hold);
	if (rc < 0) {
		answer(c, in, NULL, EC_INVALID_REQUEST,
		       rc == RMQ_EPROTO ? "a request of another cluster" : "the request does not decode");
		return;
	}
	/* Only members talk to the controller (a node that waits to be added
	 * knows no configuration, and takes its leader's word): a stranger's
	 * vote request of a high term would otherwise depose the leader. */
	const struct rmq_raft_conf *conf = rmq_raft_conf(c->raft, NULL);
	if (conf->n > 0 && !rmq_raft_conf_find(conf, in->m.from)) {
		answer(c, in, NULL, EC_INVALID_REQUEST,
		       "the sender is not a member of this controller's configuration");
		return;
	}
	if (in->rpc == RMQ_CTRL_RPC_SNAPSHOT) {
		incoming_save(c, in);
		return;
	}
	inbound_push(&c->inq, &c->inq_tail, in);
	pump(c);
}

/* The leader's snapshot is DIR/snapshot.incoming: step it (the core's
 * answer, in the Ready that installs it, answers the call). */
static void incoming_saved(struct rmq_ctrl *c, struct snap_job *j)
{
	struct rmq_ctrl_inbound *in = j->in;
	c->incoming = false;
	in->buf = NULL; /* j->data */
	if (j->rc < 0 || c->stopping) {
		free(j->data);
		answer(c, in, NULL, EC_STORAGE_ERROR, "the snapshot could not be saved");
		return;
	}
	free(c->incoming_data);
	c->incoming_data = j->data; /* installed by the Ready (durable) */
	c->incoming_len = j->len;
	inbound_push(&c->inq, &c->inq_tail, in);
	pump(c);
}

static void incoming_save(struct rmq_ctrl *c, struct rmq_ctrl_inbound *in)
{
	struct snap_job *j = c->incoming ? NULL : snap_job_new(c, in->m.index, in->m.log_term, &in->conf);
	if (!j) {
		answer(c, in, NULL, EC_NOT_AVAILABLE,
		       c->incoming ? "another snapshot is being received" : "out of memory");
		return;
	}
	c->incoming = true;
	j->in = in;
	j->data = in->buf;
	j->len = in->len;
	rmq_offload(c->bs->b->offload, c->bs->s, &j->job);
}

static void on_answer(void *arg, const struct rmq_raft_msg *m)
{
	struct rmq_ctrl *c = arg;
	if (c->n_answers == ANSWERS_MAX)
		return; /* lost, as the network may lose it */
	c->answers[c->n_answers++] = *m;
	pump(c);
}

/* The core message answering a request of type t. */
static enum rmq_raft_msg_type answer_type(enum rmq_raft_msg_type t)
{
	return t == RMQ_RAFT_MSG_PREVOTE ? RMQ_RAFT_MSG_PREVOTE_RESP
	       : t == RMQ_RAFT_MSG_VOTE  ? RMQ_RAFT_MSG_VOTE_RESP
	       : t == RMQ_RAFT_MSG_APPEND || t == RMQ_RAFT_MSG_SNAPSHOT ? RMQ_RAFT_MSG_APPEND_RESP
									    : 0;
}

/* A message of a durable Ready: an answer goes to the call it answers, a
 * request to its peer. */
static void send_msg(struct rmq_ctrl *c, const struct rmq_raft_msg *m)
{
	if (m->type == RMQ_RAFT_MSG_PREVOTE_RESP || m->type == RMQ_RAFT_MSG_VOTE_RESP ||
	    m->type == RMQ_RAFT_MSG_APPEND_RESP) {
		struct rmq_ctrl_inbound **pp = &c->stepped, *prev = NULL;
		for (; *pp; prev = *pp, pp = &(*pp)->next) {
			struct rmq_ctrl_inbound *in = *pp;
			if (in->m.from != m->to || answer_type(in->m.type) != m->type)
				continue;
			*pp = in->next;
			if (c->stepped_tail == in)
				c->stepped_tail = prev;
			answer(c, in, m, 0, NULL);
			return;
		}
		return; /* its call is gone */
	}
	const struct rmq_raft_server *sv = rmq_raft_conf_find(rmq_raft_conf(c->raft, NULL), m->to);
	if (!sv || !c->peers)
		return;
	if (m->type != RMQ_RAFT_MSG_SNAPSHOT) {
		rmq_ctrl_peers_send(c->peers, m, sv->addr);
	} else if (c->snap_data && m->index == c->snap_index) {
		rmq_ctrl_peers_send_snapshot(c->peers, m, sv->addr, c->snap_data, c->snap_len);
	} else if (!c->logged_snapshot) {
		/* the core sends its newest: ours is saved, not yet compacted */
		rmq_warn("controller: node %u needs the snapshot at %" PRIu64 ", which is not "
			 "in memory",
			 m->to, m->index);
		c->logged_snapshot = true;
	}
}

/* Answers every call that was stepped and got no answer from the core (a
 * vote ignored within a lease, TimeoutNow): a refusal with this term. */
static void answer_rest(struct rmq_ctrl *c, int code, const char *why)
{
	while (c->stepped) {
		struct rmq_ctrl_inbound *in = c->stepped;
		c->stepped = in->next;
		answer(c, in, NULL, code, why);
	}
	c->stepped_tail = NULL;
}

/* ---- the Ready loop -------------------------------------------------------------- */

static void change_answer(struct rmq_ctrl *c, struct rmq_ctrl_change *ch, int code,
			  const char *why);

/* Answers every proposal and membership call: the controller stops or its
 * store failed. */
static void fail_all(struct rmq_ctrl *c, int code)
{
	if (c->inflight) {
		finish_all(c->inflight->ops, code);
		free(c->inflight);
		c->inflight = NULL;
	}
	answer_refused(c);
	while (c->changes) {
		struct rmq_ctrl_change *ch = c->changes;
		c->changes = ch->next;
		change_answer(c, ch, EC_NOT_AVAILABLE, "the controller stopped on this node");
	}
	c->changes_tail = NULL;
	finish_all(c->queue, code == EC_STORAGE_ERROR ? code : EC_NOT_CONTROLLER);
	c->queue = c->queue_tail = NULL;
}

/* The leader's snapshot is durable (the store renamed it): the state
 * machine becomes it. */
static void install_snapshot(struct rmq_ctrl *c)
{
	const struct rmq_raft_ready *rd = &c->rd;
	struct rmq_meta *m = NULL;
	if (!c->incoming_data ||
	    state_decode(c->bs->b, c->incoming_data, c->incoming_len, true, &m) < 0) {
		/* Its CRC was checked: a leader's bug, or ours. */
		rmq_error("controller: the leader's snapshot at %" PRIu64 " does not decode; the "
			  "node stops",
			  rd->snapshot_index);
		c->failed = true;
		rmq_runtime_stop(c->bs->b->rt);
		return;
	}
	m->version = rd->snapshot_index;
	rmq_meta_ref(m);
	rmq_meta_unref(c->meta);
	c->meta = m;
	c->conf = *rd->snapshot_conf;
	c->applied = c->snap_index = rd->snapshot_index;
	c->applied_term = rd->snapshot_term;
	c->bytes_since_snap = 0;
	free(c->snap_data);
	c->snap_data = c->incoming_data;
	c->snap_len = c->incoming_len;
	c->incoming_data = NULL;
	rmq_info("controller: installed the leader's snapshot at %" PRIu64 " (%zu topics)",
		 rd->snapshot_index, m->ntopics);
}

/* What the other shards answer of the quorum (broker.h: a sequence lock). */
static void publish_quorum(struct rmq_ctrl *c)
{
	struct rmq_broker *b = c->bs->b;
	const struct rmq_raft_conf *conf = rmq_raft_conf(c->raft, NULL);
	uint32_t n = 0;
	atomic_fetch_add_explicit(&b->ctrl_seq, 1, memory_order_relaxed); /* odd: writing */
	atomic_thread_fence(memory_order_release);
	char addr[RMQ_RAFT_ADDR_MAX] = "";
	atomic_store_explicit(&b->ctrl_leader, (uint32_t)rmq_ctrl_leader(c->bs, addr, sizeof(addr)),
			      memory_order_relaxed);
	for (size_t i = 0; i < 8; i++) {
		uint64_t w;
		memcpy(&w, addr + 8 * i, 8);
		atomic_store_explicit(&b->ctrl_leader_addr[i], w, memory_order_relaxed);
	}
	atomic_store_explicit(&b->ctrl_term, rmq_raft_term(c->raft), memory_order_relaxed);
	for (uint32_t i = 0; i < conf->n && n < RMQ_RAFT_VOTERS_MAX; i++)
		if (conf->servers[i].role == RMQ_RAFT_VOTER)
			atomic_store_explicit(&b->ctrl_voters[n++], conf->servers[i].id,
					      memory_order_relaxed);
	atomic_store_explicit(&b->ctrl_nvoters, n, memory_order_relaxed);
	atomic_fetch_add_explicit(&b->ctrl_seq, 1, memory_order_release); /* even: done */
}

/* One line each time the leader (or its term) changes; and the quorum
 * published for the other shards. */
static void log_leader(struct rmq_ctrl *c)
{
	uint32_t leader = rmq_raft_leader(c->raft);
	uint64_t term = rmq_raft_term(c->raft);
	publish_quorum(c);
	if (!leader || (leader == c->known_leader && term == c->known_term))
		return;
	const struct rmq_raft_server *sv = rmq_raft_conf_find(rmq_raft_conf(c->raft, NULL), leader);
	if (leader == c->self) {
		rmq_info("controller: this node (%u) leads term %" PRIu64, leader, term);
		/* Its own broker is registered before any change it decides. */
		rmq_heartbeat_kick(c->bs);
	}
	else
		rmq_info("controller: node %u at %s leads term %" PRIu64, leader, sv ? sv->addr : "?",
			 term);
	c->known_leader = leader;
	c->known_term = term;
}

static void durable(void *arg, int res)
{
	struct rmq_ctrl *c = arg;
	if (res < 0) {
		/* The store failed: nothing more can be made durable, so this
		 * node must not take part any more. */
		rmq_error("controller: its store failed (%s); the node stops", rmq_strerror(res));
		c->failed = true;
		fail_all(c, EC_STORAGE_ERROR);
		rmq_runtime_stop(c->bs->b->rt);
		return;
	}
	if (c->rd.snapshot)
		install_snapshot(c);
	if (c->rd.hs_changed) {
		c->durable_term = c->rd.hs.term;
		c->durable_vote = c->rd.hs.vote;
	}
	for (size_t i = 0; i < c->rd.n_msgs; i++)
		if (!c->sent_early || c->rd.msgs[i].type != RMQ_RAFT_MSG_APPEND)
			send_msg(c, &c->rd.msgs[i]);
	answer_rest(c, 0, "no answer from the core");
	for (size_t i = 0; i < c->rd.n_committed; i++)
		apply(c, &c->rd.committed[i]);
	rmq_raft_advance(c->raft);
	c->in_ready = false;
	log_leader(c);
	if (c->stopping)
		return;
	publish(c);
	maybe_snapshot(c);
	pump(c);
}

/* Answers the changes whose time is up: queued with no leader known or
 * another leading (NOT_CONTROLLER: never decided, so safe to retry
 * elsewhere), or queued here too long, or decided and not applied in time
 * (TIMEOUT: the entry may still commit, as a partitioned leader's can).
 * An entry applied and being published waits for its shards however long
 * they take. */
static void expire(struct rmq_ctrl *c, uint64_t now)
{
	bool leads = rmq_raft_role(c->raft) == RMQ_RAFT_LEADER;
	while (c->queue &&
	       now - c->queue->since_ns >= (leads ? PROPOSAL_APPLY_NS : PROPOSAL_WAIT_NS)) {
		struct op *o = c->queue;
		c->queue = o->next;
		if (!c->queue)
			c->queue_tail = NULL;
		finish(o, leads ? EC_TIMEOUT : EC_NOT_CONTROLLER);
	}
	struct batch *bt = c->inflight;
	if (bt && !bt->ok && bt->deadline_ns <= now) {
		c->inflight = NULL;
		finish_all(bt->ops, EC_TIMEOUT);
		free(bt);
	}
}

/* Whether this node may decide changes now: it leads, has committed in its
 * term, and has applied all that is committed, with no entry in flight. */
static bool may_decide(struct rmq_ctrl *c)
{
	return !c->inflight && rmq_raft_leads_committed(c->raft) &&
	       c->applied >= rmq_raft_commit(c->raft);
}

/* Decides the queued changes (leader): each builds on the state the ones
 * before it left, and the last state is proposed as one entry that answers
 * them all.  When none changes anything they are answered at once. */
static void propose_queued(struct rmq_ctrl *c)
{
	if (!c->queue && c->import != IMPORT_PENDING)
		return;
	if (rmq_raft_role(c->raft) != RMQ_RAFT_LEADER) {
		if (rmq_raft_leader(c->raft) != 0) {
			/* Another node leads: the caller asks it. */
			finish_all(c->queue, EC_NOT_CONTROLLER);
			c->queue = c->queue_tail = NULL;
		}
		return; /* no leader known: wait for one (expire() bounds it) */
	}
	if (!may_decide(c))
		return;
	if (c->import == IMPORT_PENDING) {
		struct op *o = calloc(1, sizeof(*o));
		if (!o)
			return;
		*o = (struct op){.build = import_build, .applied = import_done, .arg = c,
				 .since_ns = rmq_now_ns(), .next = c->queue};
		c->queue = o;
		if (!c->queue_tail)
			c->queue_tail = o;
		c->import = IMPORT_PROPOSED;
	}
	struct batch *bt = calloc(1, sizeof(*bt));
	if (!bt)
		return; /* tried again at the next tick */
	struct rmq_meta *cur = c->meta;
	struct op **tail = &bt->ops;
	for (unsigned n = 0; c->queue && n < BATCH_OPS_MAX; n++) {
		struct op *o = c->queue;
		c->queue = o->next;
		if (!c->queue)
			c->queue_tail = NULL;
		o->next = NULL;
		*tail = o;
		tail = &o->next;
		struct rmq_meta *nm = o->build(o->arg, cur);
		if (nm) {
			if (cur != c->meta)
				rmq_meta_free(cur);
			cur = nm;
		}
	}
	if (cur == c->meta) { /* nothing changes */
		finish_all(bt->ops, EC_OK);
		free(bt);
		return;
	}
	uint8_t *buf = NULL;
	size_t len = 0;
	int64_t idx = state_encode(cur, &buf, &len) < 0 ? -ENOMEM
							: rmq_raft_propose(c->raft, buf, (uint32_t)len);
	rmq_meta_free(cur);
	free(buf); /* the core keeps a copy */
	if (idx < 0) {
		finish_all(bt->ops, idx == -ENOMEM ? EC_RESOURCE_EXHAUSTED : EC_NOT_CONTROLLER);
		free(bt);
		return;
	}
	bt->index = (uint64_t)idx;
	bt->term = rmq_raft_term(c->raft);
	bt->deadline_ns = rmq_now_ns() + PROPOSAL_APPLY_NS;
	c->inflight = bt;
}

/* Feeds the core what waited for the last Ready, then starts the next. */
static void pump(struct rmq_ctrl *c)
{
	if (c->in_ready || c->failed || c->stopping)
		return;
	for (size_t i = 0; i < c->n_answers; i++)
		(void)rmq_raft_step(c->raft, &c->answers[i]); /* a malformed one is ignored */
	c->n_answers = 0;
	while (c->inq) {
		struct rmq_ctrl_inbound *in = c->inq;
		c->inq = in->next;
		(void)rmq_raft_step(c->raft, &in->m);
		inbound_push(&c->stepped, &c->stepped_tail, in);
	}
	c->inq_tail = NULL;
	for (; c->ticks_due > 0; c->ticks_due--)
		rmq_raft_tick(c->raft);
	if (c->compact_to) {
		if (rmq_raft_compact(c->raft, c->compact_to) == 0) {
			rmq_cstore_compacted(c->store, c->compact_to);
			c->snap_index = c->compact_to;
			c->bytes_since_snap = 0;
			free(c->snap_data); /* what InstallSnapshot sends now */
			c->snap_data = c->save_buf;
			c->snap_len = c->save_len;
		} else {
			free(c->save_buf);
		}
		c->save_buf = NULL;
		c->compact_to = 0;
	}
	propose_queued(c);
	changes_step(c);
	if (!rmq_raft_has_ready(c->raft))
		return;
	rmq_raft_get_ready(c->raft, &c->rd);
	c->in_ready = true;
	/* The leader's APPENDs go out while its own write runs (thesis
	 * section 10.2.1): it counts its entries towards a commit only once
	 * they are durable (rmq_raft_advance), and a follower's copy is as
	 * good as its own.  Not when the Ready changes term or vote, which
	 * every message must find durable. */
	c->sent_early = !c->rd.hs_changed ||
			(c->rd.hs.term == c->durable_term && c->rd.hs.vote == c->durable_vote);
	if (c->sent_early)
		for (size_t i = 0; i < c->rd.n_msgs; i++)
			if (c->rd.msgs[i].type == RMQ_RAFT_MSG_APPEND)
				send_msg(c, &c->rd.msgs[i]);
	int rc = rmq_cstore_write(c->store, &c->rd, durable, c);
	if (rc < 0)
		durable(c, rc);
}

static void on_tick(struct rmq_timer *t)
{
	struct rmq_ctrl *c = RMQ_CONTAINER_OF(t, struct rmq_ctrl, timer);
	answer_refused(c);
	expire(c, rmq_now_ns());
	rmq_fleet_tick(c->bs);
	rmq_elect_tick(c->bs);
	rmq_offsets_topic_tick(c->bs);
	c->ticks_due++;
	pump(c); /* also a membership call's deadline, without a Ready */
	rmq_timer_start(c->bs->s, &c->timer, rmq_now_ns() + RMQ_CTRL_TICK_NS, on_tick);
}

static void submit(struct rmq_bshard *bs,
		   struct rmq_meta *(*build)(void *arg, const struct rmq_meta *cur),
		   void (*applied)(void *arg, int code), void *arg, bool first)
{
	struct rmq_ctrl *c = bs->ctrl;
	if (!c) {
		applied(arg, EC_NOT_CONTROLLER); /* before the node serves: not reached */
		return;
	}
	struct op *o = malloc(sizeof(*o));
	if (!o) {
		applied(arg, EC_RESOURCE_EXHAUSTED); /* the one answer inside the call */
		return;
	}
	*o = (struct op){.build = build, .applied = applied, .arg = arg, .since_ns = rmq_now_ns()};
	if (c->failed) {
		/* Answered by the next tick, not inside this call. */
		o->next = c->refused;
		c->refused = o;
		return;
	}
	if (first) {
		o->next = c->queue;
		c->queue = o;
		if (!c->queue_tail)
			c->queue_tail = o;
	} else {
		if (c->queue_tail)
			c->queue_tail->next = o;
		else
			c->queue = o;
		c->queue_tail = o;
	}
	pump(c);
}

/* ---- changes from any shard ----------------------------------------------- */

static struct rmq_meta *req_build(void *arg, const struct rmq_meta *cur)
{
	struct rmq_ctrl_req *r = arg;
	return r->build(r, cur);
}

static void req_back(struct rmq_xmsg *x)
{
	struct rmq_ctrl_req *r = RMQ_CONTAINER_OF(x, struct rmq_ctrl_req, msg);
	r->back(r);
}

static void req_applied(void *arg, int code)
{
	struct rmq_ctrl_req *r = arg;
	r->code = code;
	r->msg.fn = req_back;
	rmq_shard_post(rmq_shard_current(), r->origin, &r->msg);
}

static void req_at_shard0(struct rmq_xmsg *x)
{
	struct rmq_ctrl_req *r = RMQ_CONTAINER_OF(x, struct rmq_ctrl_req, msg);
	rmq_ctrl_submit(rmq_bshard_current(), req_build, req_applied, r);
}

void rmq_ctrl_submit_from(struct rmq_bshard *bs, struct rmq_ctrl_req *r)
{
	r->origin = bs->id;
	r->msg.fn = req_at_shard0;
	rmq_shard_post(bs->s, 0, &r->msg);
}

void rmq_ctrl_submit(struct rmq_bshard *bs,
		     struct rmq_meta *(*build)(void *arg, const struct rmq_meta *cur),
		     void (*applied)(void *arg, int code), void *arg)
{
	submit(bs, build, applied, arg, false);
}

void rmq_ctrl_submit_first(struct rmq_bshard *bs,
			   struct rmq_meta *(*build)(void *arg, const struct rmq_meta *cur),
			   void (*applied)(void *arg, int code), void *arg)
{
	submit(bs, build, applied, arg, true);
}

/* ---- membership calls ------------------------------------------------------------ */

void rmq_ctrl_view(struct rmq_bshard *bs, struct rmq_ctrl_view *v)
{
	struct rmq_ctrl *c = bs->ctrl;
	memset(v, 0, sizeof(*v));
	if (!c || c->failed)
		return;
	v->running = true;
	v->self = c->self;
	v->leader = (uint32_t)rmq_ctrl_leader(bs, v->leader_addr, sizeof(v->leader_addr));
	v->term = rmq_raft_term(c->raft);
	v->commit = rmq_raft_commit(c->raft);
	v->conf = *rmq_raft_conf(c->raft, &v->conf_index);
	for (uint32_t i = 0; i < v->conf.n; i++) {
		uint32_t id = v->conf.servers[i].id;
		if (id != c->self &&
		    rmq_raft_progress(c->raft, id, &v->progress[v->n_progress].pr) == 0)
			v->progress[v->n_progress++].id = id;
	}
}

/* Whether ch's change is in the configuration and committed. */
static bool change_in_effect(struct rmq_ctrl *c, const struct rmq_ctrl_change *ch)
{
	uint64_t at;
	const struct rmq_raft_conf *conf = rmq_raft_conf(c->raft, &at);
	const struct rmq_raft_server *sv = rmq_raft_conf_find(conf, ch->id);
	if (at > rmq_raft_commit(c->raft))
		return false;
	return ch->remove ? !sv : sv && sv->role == ch->role;
}

static void change_answer(struct rmq_ctrl *c, struct rmq_ctrl_change *ch, int code,
			  const char *why)
{
	ch->code = code;
	snprintf(ch->err, sizeof(ch->err), "%s", why ? why : "");
	rmq_ctrl_view(c->bs, &ch->view);
	ch->done(ch);
}

/* Starts the membership calls waiting, and answers those done (outside a
 * Ready: the core's calls). */
static void changes_step(struct rmq_ctrl *c)
{
	struct rmq_ctrl_change **pp = &c->changes, *prev = NULL;
	uint64_t now = rmq_now_ns();
	while (*pp) {
		struct rmq_ctrl_change *ch = *pp;
		int code = -1;
		const char *why = NULL;
		int64_t rc = 0;
		if (!ch->started) {
			rc = ch->remove ? rmq_raft_remove_peer(c->raft, ch->id)
					: rmq_raft_add_peer(c->raft, ch->id, ch->addr, ch->role);
			ch->started = true;
		}
		bool leads = rmq_raft_role(c->raft) == RMQ_RAFT_LEADER;
		if (rc == RMQ_ESTATE && leads) {
			code = EC_NOT_AVAILABLE;
			why = "the leader has not committed in its term yet, or hands leadership over; retry";
		} else if (rc == RMQ_ESTATE) {
			code = EC_NOT_CONTROLLER;
			why = "this node does not lead the controller";
		} else if (rc == -EBUSY) {
			code = EC_NOT_AVAILABLE;
			why = "a configuration change is in progress; retry";
		} else if (rc == -EINVAL) {
			code = EC_INVALID_REQUEST;
			why = "refused: the last voter, too many servers or voters, a bad address, or "
			      "another address for a known id";
		} else if (rc < 0) {
			code = EC_RESOURCE_EXHAUSTED;
			why = "out of memory";
		} else if (change_in_effect(c, ch)) {
			code = EC_OK;
		} else if (!leads) {
			code = EC_NOT_CONTROLLER;
			why = "the leadership moved while the change was under way: ask the new leader";
		} else if (now >= ch->deadline_ns) {
			code = EC_TIMEOUT;
			why = "not committed (or the new voter not caught up) in time; it may still be: "
			      "see GetConfiguration";
		}
		if (code < 0) {
			prev = ch;
			pp = &ch->next;
			continue;
		}
		*pp = ch->next;
		if (c->changes_tail == ch)
			c->changes_tail = prev;
		change_answer(c, ch, code, why);
	}
}

void rmq_ctrl_change(struct rmq_bshard *bs, struct rmq_ctrl_change *ch)
{
	struct rmq_ctrl *c = bs->ctrl;
	ch->started = false;
	ch->next = NULL;
	if (!c || c->failed || c->stopping) {
		ch->code = EC_NOT_AVAILABLE;
		snprintf(ch->err, sizeof(ch->err), "the controller is not running on this node");
		rmq_ctrl_view(bs, &ch->view);
		ch->done(ch);
		return;
	}
	if (c->changes_tail)
		c->changes_tail->next = ch;
	else
		c->changes = ch;
	c->changes_tail = ch;
	pump(c);
}

bool rmq_ctrl_has_member(struct rmq_bshard *bs, uint32_t id)
{
	struct rmq_ctrl *c = bs->ctrl;
	return c && !c->failed && rmq_raft_conf_find(rmq_raft_conf(c->raft, NULL), id);
}

bool rmq_ctrl_is_member(struct rmq_bshard *bs)
{
	return bs->ctrl && rmq_ctrl_has_member(bs, bs->ctrl->self);
}

void rmq_ctrl_install_image(struct rmq_bshard *bs, struct rmq_meta *m)
{
	struct rmq_ctrl *c = bs->ctrl;
	if (!c || c->failed || c->stopping || rmq_ctrl_is_member(bs) || m->version <= c->meta->version) {
		rmq_meta_free(m);
		return;
	}
	rmq_meta_ref(m);
	rmq_meta_unref(c->meta);
	c->meta = m;
	publish(c);
}

void rmq_ctrl_outside_leader(struct rmq_bshard *bs, uint32_t id, const char *addr)
{
	struct rmq_ctrl *c = bs->ctrl;
	if (!c || rmq_ctrl_is_member(bs) || (c->outside_leader == id &&
					      strcmp(c->outside_addr, addr) == 0))
		return;
	c->outside_leader = id;
	snprintf(c->outside_addr, sizeof(c->outside_addr), "%s", addr);
	publish_quorum(c);
}

int rmq_ctrl_leader(struct rmq_bshard *bs, char *addr, size_t len)
{
	struct rmq_ctrl *c = bs->ctrl;
	uint32_t leader = c ? rmq_raft_leader(c->raft) : 0;
	const struct rmq_raft_server *sv =
		leader ? rmq_raft_conf_find(rmq_raft_conf(c->raft, NULL), leader) : NULL;
	snprintf(addr, len, "%s", sv ? sv->addr : "");
	if (!leader && c && !rmq_ctrl_is_member(bs) && c->outside_leader) {
		leader = c->outside_leader; /* a broker only: its heartbeats' answer */
		snprintf(addr, len, "%s", c->outside_addr);
	}
	return (int)leader;
}

/* ---- life ----------------------------------------------------------------------- */

int rmq_ctrl_start(struct rmq_bshard *bs)
{
	struct rmq_broker *b = bs->b;
	char dir[4200];
	struct rmq_cstore_state st;
	uint32_t id;
	int rc = node_id(b, &id);
	if (rc < 0)
		return rc;
	struct rmq_ctrl *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->bs = bs;
	ctrl_dir(dir, sizeof(dir), b);
	rc = rmq_cstore_open(rmq_shard_io(bs->s), dir, &c->store, &st);
	if (rc < 0) {
		free(c);
		return rc;
	}
	struct rmq_raft_config rc_cfg = {
		.id = id,
		.election_ticks = ELECTION_TICKS,
		.heartbeat_ticks = HEARTBEAT_TICKS,
		.max_append_entries = MAX_APPEND,
		.pre_vote = true,
		.check_quorum = true,
		.seed = rmq_now_ns() ^ id,
		.applied = st.snap_index,
		.snap_index = st.snap_index,
		.snap_term = st.snap_term,
	};
	if (st.snap_index)
		rc_cfg.conf = st.snap_conf;
	else if (first_conf(b, id, &rc_cfg.conf) < 0) /* used when the log is empty */
		rc_cfg.conf.n = 0;
	c->conf = rc_cfg.conf;
	c->raft = rmq_raft_new(&rc_cfg, &st.hs, st.entries, st.n_entries);
	/* The state machine restarts from the snapshot; the core hands the
	 * committed entries after it out again. */
	c->meta = NULL;
	if (st.snap_index && state_decode(b, st.snap_data, st.snap_len, true, &c->meta) == 0)
		c->meta->version = st.snap_index;
	if (!c->meta && (c->meta = rmq_meta_new(0)))
		c->meta->defaults = b->cfg.topic_defaults;
	c->applied = c->snap_index = st.snap_index;
	c->applied_term = st.snap_term;
	c->durable_term = st.hs.term;
	c->durable_vote = st.hs.vote;
	c->snap_data = st.snap_data; /* taken over */
	c->snap_len = st.snap_len;
	st.snap_data = NULL;
	/* What the shards started with (rmq_ctrl_recover) counts as
	 * published: the same committed state. */
	c->published = bs->meta ? bs->meta->version : 0;
	c->import = IMPORT_NONE;
	if (b->ctrl_import && bs->meta) {
		c->import = IMPORT_PENDING;
		c->imported = bs->meta;
		rmq_meta_ref(c->imported);
	}
	rmq_cstore_state_free(&st);
	if (!c->raft || !c->meta) {
		rmq_error("controller: cannot restart its Raft core from %s", dir);
		rmq_raft_free(c->raft);
		rmq_meta_free(c->meta);
		rmq_cstore_close(c->store);
		free(c);
		return RMQ_ECORRUPT;
	}
	rmq_meta_ref(c->meta);
	c->self = id;
	rc = rmq_topics_publish_init(bs, &c->pub);
	if (rc == 0)
		rc = rmq_ctrl_peers_new(bs, id, "", on_answer, c, &c->peers);
	if (rc < 0) {
		rmq_topics_publish_fini(&c->pub);
		rmq_raft_free(c->raft);
		rmq_meta_unref(c->meta);
		rmq_cstore_close(c->store);
		free(c);
		return rc;
	}
	bs->ctrl = c;
	rc = rmq_timer_start(bs->s, &c->timer, rmq_now_ns() + RMQ_CTRL_TICK_NS, on_tick);
	if (rc < 0)
		return rc;
	pump(c);
	return 0;
}

void rmq_ctrl_stop(struct rmq_bshard *bs)
{
	struct rmq_ctrl *c = bs->ctrl;
	if (!c)
		return;
	rmq_timer_cancel(bs->s, &c->timer);
	c->stopping = true;
	fail_all(c, EC_NOT_CONTROLLER);
	rmq_fleet_free(bs);
	rmq_ctrl_peers_free(c->peers);
	c->peers = NULL;
	rmq_cstore_close(c->store); /* waits for its log to be idle */
	while (c->inq) {
		struct rmq_ctrl_inbound *in = c->inq;
		c->inq = in->next;
		c->n_inbound--;
		rmq_ctrl_answer(bs, in, NULL, 0, RMQ_GRPC_UNAVAILABLE);
	}
	answer_rest(c, EC_NOT_CONTROLLER, "the node is stopping");
	rmq_raft_free(c->raft);
	rmq_meta_unref(c->meta);
	rmq_meta_unref(c->imported);
	rmq_topics_publish_fini(&c->pub);
	free(c->save_buf);
	free(c->snap_data);
	free(c->incoming_data);
	free(c);
	bs->ctrl = NULL;
}
