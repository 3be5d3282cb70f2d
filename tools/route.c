/* SPDX-License-Identifier: Apache-2.0 */
/* route.c - partitions to the brokers that lead them (route.h). */
#include "route.h"

#include "bench.h"
#include "cli.h"

#include "client/metadata.pb-c.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>

#define BROKERS_MAX 256

static struct {
	char *topic;              /* the topic whose leaders are known */
	uint32_t nparts;
	char **leader;            /* per partition: "host:port", NULL = unknown */
	size_t nconns;
	struct {
		char *endpoint;
		struct rmq_rpc *rpc;
	} conns[BROKERS_MAX];
	char *coordinator;        /* the group's coordinator, "host:port"; NULL = unknown */
} R;

static void forget(void)
{
	for (uint32_t p = 0; p < R.nparts; p++)
		free(R.leader[p]);
	free(R.leader);
	free(R.topic);
	R.leader = NULL;
	R.topic = NULL;
	R.nparts = 0;
}

/* Reads topic's leaders from the bootstrap broker's metadata. */
static void load(const char *topic)
{
	forget();
	Rustmq__Client__GetTopicMetadataRequest req = RUSTMQ__CLIENT__GET_TOPIC_METADATA_REQUEST__INIT;
	char *names[1] = {(char *)topic};
	req.version = &api_v1;
	req.client_id = "rmq";
	req.n_topics = 1;
	req.topics = names;
	Rustmq__Client__GetTopicMetadataResponse *r =
		PB_CALL("GetTopicMetadata", "/rustmq.client.MetadataService/GetTopicMetadata", &req,
			Rustmq__Client__GetTopicMetadataResponse,
			rustmq__client__get_topic_metadata_response__descriptor);
	R.topic = xstrdup(topic);
	if (r->error_code == 0 && r->n_topics == 1 && r->topics[0]->error_code == 0) {
		const Rustmq__Common__TopicMetadata *t = r->topics[0];
		R.nparts = (uint32_t)t->n_partitions;
		R.leader = calloc(R.nparts ? R.nparts : 1, sizeof(*R.leader));
		if (!R.leader)
			die("out of memory");
		for (uint32_t p = 0; p < R.nparts; p++) {
			const char *id = t->partitions[p]->leader_id;
			for (size_t b = 0; *id && b < r->n_brokers; b++) {
				const Rustmq__Common__BrokerInfo *bi = r->brokers[b];
				if (bi->id && strcmp(bi->id->id, id) == 0) {
					char ep[300];
					snprintf(ep, sizeof(ep), strchr(bi->host, ':') ? "[%s]:%u" : "%s:%u",
						 bi->host, bi->port);
					R.leader[p] = xstrdup(ep);
				}
			}
		}
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

static struct rmq_rpc *conn_to(const char *endpoint)
{
	for (size_t i = 0; i < R.nconns; i++)
		if (strcmp(R.conns[i].endpoint, endpoint) == 0)
			return R.conns[i].rpc;
	if (strcmp(endpoint, cli.bootstrap) == 0 || R.nconns == BROKERS_MAX)
		return cli.rpc;
	char host[256], err[128];
	uint16_t port;
	struct rmq_rpc *rpc;
	if (bench_parse_target(endpoint, host, sizeof(host), &port, err, sizeof(err)) < 0)
		die("the metadata names a broker at '%s': %s", endpoint, err);
	int rc = rmq_rpc_open(host, port, 10 * NS, &rpc);
	if (rc < 0)
		die("cannot connect to broker %s, which leads a partition: %s", endpoint, rmq_strerror(rc));
	if (cli.verbose)
		fprintf(stderr, "rmq: connected to broker %s\n", endpoint);
	R.conns[R.nconns].endpoint = xstrdup(endpoint);
	R.conns[R.nconns++].rpc = rpc;
	return rpc;
}

struct rmq_rpc *route_rpc(const char *topic, uint32_t p)
{
	if (!R.topic || strcmp(R.topic, topic) != 0)
		load(topic);
	return p < R.nparts && R.leader[p] ? conn_to(R.leader[p]) : cli.rpc;
}

bool route_retry(const char *topic, uint32_t p, int code, const char *endpoint, int *tries)
{
	/* A leader that does not know the partition the metadata showed has
	 * not applied its creation yet (it follows the controller a moment
	 * behind): ask again. */
	bool behind = ((code == EC(TOPIC_NOT_FOUND) || code == EC(PARTITION_NOT_FOUND)) && R.topic &&
		       strcmp(R.topic, topic) == 0 && p < R.nparts && R.leader[p] &&
		       strcmp(R.leader[p], cli.bootstrap) != 0) ||
		      code == EC(NOT_AVAILABLE); /* its log is being opened: retriable */
	if ((code != EC(NOT_LEADER) && code != EC(LEADER_NOT_AVAILABLE) && !behind) ||
	    ++*tries > ROUTE_TRIES_MAX)
		return false;
	if (behind) {
		sleep_ns(100 * MS);
		return true;
	}
	if (code == EC(NOT_LEADER) && endpoint && *endpoint && R.topic &&
	    strcmp(R.topic, topic) == 0 && p < R.nparts) {
		free(R.leader[p]);
		R.leader[p] = xstrdup(endpoint);
	} else {
		if (code == EC(LEADER_NOT_AVAILABLE))
			sleep_ns(100 * MS);
		load(topic);
	}
	if (cli.verbose)
		fprintf(stderr, "rmq: %s/%u: %s; asking %s\n", topic, p, ec_name(code),
			p < R.nparts && R.leader[p] ? R.leader[p] : "the bootstrap broker");
	return true;
}

struct rmq_rpc *route_coordinator(const char *group, bool refresh)
{
	if (R.coordinator && !refresh)
		return conn_to(R.coordinator);
	free(R.coordinator);
	R.coordinator = NULL;
	Rustmq__Client__FindCoordinatorRequest req = RUSTMQ__CLIENT__FIND_COORDINATOR_REQUEST__INIT;
	char *keys[1] = {(char *)group};
	req.version = &api_v1;
	req.n_keys = 1;
	req.keys = keys;
	Rustmq__Client__FindCoordinatorResponse *r =
		PB_CALL("FindCoordinator", "/rustmq.client.MetadataService/FindCoordinator", &req,
			Rustmq__Client__FindCoordinatorResponse,
			rustmq__client__find_coordinator_response__descriptor);
	if (r->n_coordinators == 1 && r->coordinators[0]->error_code == 0 &&
	    r->coordinators[0]->broker && r->coordinators[0]->broker->host) {
		const Rustmq__Common__BrokerInfo *bi = r->coordinators[0]->broker;
		char ep[300];
		snprintf(ep, sizeof(ep), strchr(bi->host, ':') ? "[%s]:%u" : "%s:%u", bi->host,
			 bi->port);
		R.coordinator = xstrdup(ep);
		if (cli.verbose)
			fprintf(stderr, "rmq: group %s: coordinator %s\n", group, ep);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return R.coordinator ? conn_to(R.coordinator) : cli.rpc;
}

void route_close(void)
{
	free(R.coordinator);
	R.coordinator = NULL;
	for (size_t i = 0; i < R.nconns; i++) {
		rmq_rpc_close(R.conns[i].rpc);
		free(R.conns[i].endpoint);
	}
	R.nconns = 0;
	forget();
}
