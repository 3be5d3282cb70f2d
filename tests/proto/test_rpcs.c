/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_rpcs.c - the compiled protocol still is the protocol design's.
 *
 * Three tables, copied from the design (shared/seeds/000_*.txt) and from
 * rmq's documented additions, are checked against what the build compiled:
 *
 *   seed_rpcs      every RPC: service, method, request and response types,
 *                  and streaming shape;
 *   seed_fields    every field and enum value the design shows, by name and
 *                  number;
 *   added_rpcs     the RPCs rmq added, so none silently disappears.
 *
 * Types come from protoc-c's descriptors (what the C code links against).
 * protoc-c does not record streaming, so the shape comes from the
 * FileDescriptorSet that protoc wrote from the same proto/ tree at build time
 * (RMQ_DESCRIPTOR_SET), decoded with protoc-c's compilation of
 * descriptor.proto.  A renamed, removed or reshaped RPC fails this test.
 */
#include "descriptors.h"
#include "google/protobuf/descriptor.pb-c.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum shape { UNARY, SERVER_STREAM, CLIENT_STREAM, BIDI };

struct rpc {
	const char *service; /* full name */
	const char *method;
	const char *request; /* full name */
	const char *response;
	enum shape shape;
};

#define C "rustmq.client."
#define B "rustmq.broker."
#define K "rustmq.controller."
#define S "rustmq.streaming."

static const struct rpc seed_rpcs[] = {
	{C "ProducerService", "Produce", C "ProduceRequest", C "ProduceResponse", UNARY},
	{C "ProducerService", "ProduceBatch", C "ProduceBatchRequest", C "ProduceBatchResponse", UNARY},
	{C "ProducerService", "ProduceStream", C "ProduceRequest", C "ProduceResponse", BIDI},
	{C "ProducerService", "InitTransaction", C "InitTransactionRequest", C "InitTransactionResponse", UNARY},
	{C "ProducerService", "CommitTransaction", C "CommitTransactionRequest", C "CommitTransactionResponse", UNARY},
	{C "ProducerService", "AbortTransaction", C "AbortTransactionRequest", C "AbortTransactionResponse", UNARY},

	{C "ConsumerService", "Fetch", C "FetchRequest", C "FetchResponse", UNARY},
	{C "ConsumerService", "FetchBatch", C "FetchBatchRequest", C "FetchBatchResponse", UNARY},
	{C "ConsumerService", "Subscribe", C "SubscribeRequest", C "FetchResponse", SERVER_STREAM},
	{C "ConsumerService", "JoinGroup", C "JoinGroupRequest", C "JoinGroupResponse", UNARY},
	{C "ConsumerService", "LeaveGroup", C "LeaveGroupRequest", C "LeaveGroupResponse", UNARY},
	{C "ConsumerService", "CommitOffsets", C "CommitOffsetsRequest", C "CommitOffsetsResponse", UNARY},

	{C "MetadataService", "GetTopicMetadata", C "GetTopicMetadataRequest", C "GetTopicMetadataResponse", UNARY},
	{C "MetadataService", "ListTopics", C "ListTopicsRequest", C "ListTopicsResponse", UNARY},
	{C "MetadataService", "GetBrokerList", C "GetBrokerListRequest", C "GetBrokerListResponse", UNARY},
	{C "MetadataService", "GetPartitionLeader", C "GetPartitionLeaderRequest", C "GetPartitionLeaderResponse", UNARY},
	{C "MetadataService", "GetClusterMetadata", C "GetClusterMetadataRequest", C "GetClusterMetadataResponse", UNARY},

	{B "BrokerReplicationService", "ReplicateData", B "ReplicateDataRequest", B "ReplicateDataResponse", UNARY},
	{B "BrokerReplicationService", "ReplicateStream", B "ReplicateDataRequest", B "ReplicateDataResponse", BIDI},
	{B "BrokerReplicationService", "SendHeartbeat", B "HeartbeatRequest", B "HeartbeatResponse", UNARY},
	{B "BrokerReplicationService", "TransferLeadership", B "TransferLeadershipRequest", B "TransferLeadershipResponse", UNARY},
	{B "BrokerReplicationService", "GetLeaderEpoch", B "GetLeaderEpochRequest", B "GetLeaderEpochResponse", UNARY},
	{B "BrokerReplicationService", "UpdateISR", B "UpdateISRRequest", B "UpdateISRResponse", UNARY},
	{B "BrokerReplicationService", "GetISR", B "GetISRRequest", B "GetISRResponse", UNARY},

	{B "PartitionManagementService", "AssignPartition", B "AssignPartitionRequest", B "AssignPartitionResponse", UNARY},
	{B "PartitionManagementService", "RemovePartition", B "RemovePartitionRequest", B "RemovePartitionResponse", UNARY},
	{B "PartitionManagementService", "MigratePartition", B "MigratePartitionRequest", B "MigratePartitionProgress", SERVER_STREAM},
	{B "PartitionManagementService", "GetPartitionState", B "GetPartitionStateRequest", B "GetPartitionStateResponse", UNARY},
	{B "PartitionManagementService", "UpdatePartitionConfig", B "UpdatePartitionConfigRequest", B "UpdatePartitionConfigResponse", UNARY},

	{K "ControllerRaftService", "RequestVote", K "VoteRequest", K "VoteResponse", UNARY},
	{K "ControllerRaftService", "AppendEntries", K "AppendEntriesRequest", K "AppendEntriesResponse", UNARY},
	{K "ControllerRaftService", "InstallSnapshot", K "InstallSnapshotRequest", K "InstallSnapshotResponse", CLIENT_STREAM},
	{K "ControllerRaftService", "PreVote", K "PreVoteRequest", K "PreVoteResponse", UNARY},
	{K "ControllerRaftService", "TimeoutNow", K "TimeoutNowRequest", K "TimeoutNowResponse", UNARY},
	{K "ControllerRaftService", "AddPeer", K "AddPeerRequest", K "AddPeerResponse", UNARY},
	{K "ControllerRaftService", "RemovePeer", K "RemovePeerRequest", K "RemovePeerResponse", UNARY},
	{K "ControllerRaftService", "GetConfiguration", K "GetConfigurationRequest", K "GetConfigurationResponse", UNARY},

	{K "ControllerBrokerService", "RegisterBroker", K "RegisterBrokerRequest", K "RegisterBrokerResponse", UNARY},
	{K "ControllerBrokerService", "UnregisterBroker", K "UnregisterBrokerRequest", K "UnregisterBrokerResponse", UNARY},
	{K "ControllerBrokerService", "HeartbeatBroker", K "BrokerHeartbeatRequest", K "BrokerHeartbeatResponse", UNARY},
	{K "ControllerBrokerService", "CreatePartitions", K "CreatePartitionsRequest", K "CreatePartitionsResponse", UNARY},
	{K "ControllerBrokerService", "DeletePartitions", K "DeletePartitionsRequest", K "DeletePartitionsResponse", UNARY},
	{K "ControllerBrokerService", "ReassignPartitions", K "ReassignPartitionsRequest", K "ReassignPartitionsProgress", SERVER_STREAM},
	{K "ControllerBrokerService", "UpdateClusterConfig", K "UpdateClusterConfigRequest", K "UpdateClusterConfigResponse", UNARY},
	{K "ControllerBrokerService", "GetClusterConfig", K "GetClusterConfigRequest", K "GetClusterConfigResponse", UNARY},

	{S "StreamingService", "InteractiveQuery", S "QueryRequest", S "QueryResponse", BIDI},
	{S "StreamingService", "Subscribe", S "SubscriptionRequest", S "Event", SERVER_STREAM},
	{S "StreamingService", "BulkLoad", S "BulkLoadRequest", S "BulkLoadResponse", CLIENT_STREAM},
};

/* rmq's additions (docs/protocol.md lists them with their reasons). */
static const struct rpc added_rpcs[] = {
	{C "ConsumerService", "Heartbeat", C "GroupHeartbeatRequest", C "GroupHeartbeatResponse", UNARY},
	{C "ConsumerService", "SyncGroup", C "SyncGroupRequest", C "SyncGroupResponse", UNARY},
	{C "ConsumerService", "FetchOffsets", C "FetchOffsetsRequest", C "FetchOffsetsResponse", UNARY},
	{C "ConsumerService", "ListOffsets", C "ListOffsetsRequest", C "ListOffsetsResponse", UNARY},
	{C "AuthService", "Authenticate", "rustmq.common.AuthenticationRequest", "rustmq.common.AuthenticationResponse", UNARY},
	{B "BrokerHealthService", "HealthCheck", B "HealthCheckRequest", B "HealthCheckResponse", UNARY},
	{B "BrokerHealthService", "GetMetrics", B "MetricsRequest", B "MetricsResponse", UNARY},
	{K "AdminService", "CreateTopics", NULL, NULL, UNARY},
	{K "AdminService", "DeleteTopics", NULL, NULL, UNARY},
	{K "AdminService", "ListTopics", NULL, NULL, UNARY},
	{K "AdminService", "DescribeTopics", NULL, NULL, UNARY},
	{K "AdminService", "AlterConfigs", NULL, NULL, UNARY},
	{K "AdminService", "DescribeConfigs", NULL, NULL, UNARY},
	{K "AdminService", "DescribeCluster", NULL, NULL, UNARY},
	{K "AdminService", "ListGroups", NULL, NULL, UNARY},
	{K "AdminService", "DescribeGroups", NULL, NULL, UNARY},
	{K "AdminService", "DeleteGroups", NULL, NULL, UNARY},
	{K "AdminService", "ResetGroupOffsets", NULL, NULL, UNARY},
	{K "AdminService", "ElectLeaders", NULL, NULL, UNARY},
	{"grpc.health.v1.Health", "Check", "grpc.health.v1.HealthCheckRequest", "grpc.health.v1.HealthCheckResponse", UNARY},
	{"grpc.health.v1.Health", "Watch", "grpc.health.v1.HealthCheckRequest", "grpc.health.v1.HealthCheckResponse", SERVER_STREAM},
};

/* "Type: field=number ..." for every message and enum the design shows. */
static const char *const seed_fields[] = {
	"rustmq.common.ApiVersion: major=1 minor=2 patch=3",
	"rustmq.common.TopicPartition: topic=1 partition=2",
	"rustmq.common.BrokerId: id=1 rack_id=2",
	"rustmq.common.Record: key=1 value=2 headers=3 timestamp=4 compression_type=5 transactional_id=6",
	"rustmq.common.Header: key=1 value=2",
	"rustmq.common.RecordBatch: magic=1 compression_type=2 base_offset=3 last_offset_delta=4 "
	"first_timestamp=5 max_timestamp=6 records=7 crc32=8",
	"rustmq.common.TransactionMetadata: transaction_id=1 producer_id=2 producer_epoch=3 state=4 "
	"start_time=5 timeout=6",
	"rustmq.common.ErrorResponse: code=1 message=2 retriable=3 retry_after=4 leader_hint=5",
	"rustmq.common.AuthenticationRequest: mechanism=1 auth_data=2",
	"rustmq.common.AuthenticationResponse: authenticated=1 session_token=2 expires_in=3",
	"rustmq.client.ProduceRequest: version=1 client_id=2 topic_partition=3 records=4 acks=5 "
	"custom_ack_count=6 timeout=7 idempotency_key=8",
	"rustmq.client.ProduceBatchRequest: version=1 client_id=2 partitions=3 acks=4 timeout=5",
	"rustmq.client.ProducePartitionData: topic_partition=1 batch=2",
	"rustmq.client.ProduceResponse: error_code=1 error_message=2 offset=3 timestamp=4 "
	"log_append_time=5 leader_id=6",
	"rustmq.client.FetchRequest: version=1 client_id=2 replica_id=3 max_wait=4 min_bytes=5 "
	"max_bytes=6 partitions=7 isolation_level=8",
	"rustmq.client.FetchPartition: topic_partition=1 fetch_offset=2 log_start_offset=3 "
	"partition_max_bytes=4",
	"rustmq.client.FetchResponse: error_code=1 error_message=2 partitions=3",
	"rustmq.client.FetchPartitionResponse: topic_partition=1 error_code=2 high_watermark=3 "
	"last_stable_offset=4 log_start_offset=5 batches=6",
	"rustmq.controller.VoteRequest: term=1 candidate_id=2 last_log_index=3 last_log_term=4 pre_vote=5",
	"rustmq.controller.VoteResponse: term=1 vote_granted=2 reason=3",
	"rustmq.controller.AppendEntriesRequest: term=1 leader_id=2 prev_log_index=3 prev_log_term=4 "
	"entries=5 leader_commit=6",
	"rustmq.controller.AppendEntriesResponse: term=1 success=2 match_index=3 next_index=4 reason=5",
	"rustmq.controller.LogEntry: term=1 index=2 type=3 data=4 timestamp=5",
	"rustmq.broker.MetricsRequest: metric_names=1 start_time=2 end_time=3",
	"rustmq.broker.MetricsResponse: metrics=1",
	"rustmq.broker.Metric: name=1 value=2 labels=3 timestamp=4",
	"enum rustmq.common.AcknowledgmentLevel: ACK_NONE=0 ACK_LEADER=1 ACK_MAJORITY=2 ACK_ALL=3 ACK_CUSTOM=4",
	"enum rustmq.common.CompressionType: COMPRESSION_NONE=0 COMPRESSION_LZ4=1 COMPRESSION_ZSTD=2 "
	"COMPRESSION_SNAPPY=3",
	"enum rustmq.common.ErrorCode: OK=0 UNKNOWN_ERROR=1 INVALID_REQUEST=2 NOT_LEADER=3 NOT_AVAILABLE=4 "
	"TIMEOUT=5 DUPLICATE_REQUEST=6 STALE_EPOCH=7 UNAUTHORIZED=8 TOPIC_NOT_FOUND=9 "
	"PARTITION_NOT_FOUND=10 OFFSET_OUT_OF_RANGE=11",
	"enum rustmq.common.TransactionState: ONGOING=0 PREPARING=1 COMMITTED=2 ABORTED=3",
	"enum rustmq.controller.LogEntryType: LOG_COMMAND=0 LOG_CONFIGURATION=1 LOG_NOOP=2",
	"enum rustmq.common.IsolationLevel: READ_UNCOMMITTED=0 READ_COMMITTED=1",
};

/* Field types of seed fields whose type the design states; a changed type
 * breaks the wire as surely as a changed number. */
static const struct {
	const char *message, *field;
	ProtobufCType type;
	ProtobufCLabel label;
} seed_types[] = {
	{"rustmq.common.RecordBatch", "records", PROTOBUF_C_TYPE_MESSAGE, PROTOBUF_C_LABEL_REPEATED},
	{"rustmq.common.RecordBatch", "base_offset", PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_LABEL_NONE},
	{"rustmq.common.RecordBatch", "crc32", PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_LABEL_NONE},
	{"rustmq.common.Record", "key", PROTOBUF_C_TYPE_BYTES, PROTOBUF_C_LABEL_NONE},
	{"rustmq.common.Record", "value", PROTOBUF_C_TYPE_BYTES, PROTOBUF_C_LABEL_NONE},
	{"rustmq.client.ProduceRequest", "records", PROTOBUF_C_TYPE_MESSAGE, PROTOBUF_C_LABEL_REPEATED},
	{"rustmq.client.ProduceResponse", "offset", PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_LABEL_NONE},
	{"rustmq.client.FetchRequest", "replica_id", PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_LABEL_NONE},
	{"rustmq.client.FetchPartitionResponse", "batches", PROTOBUF_C_TYPE_MESSAGE, PROTOBUF_C_LABEL_REPEATED},
	{"rustmq.client.FetchPartitionResponse", "high_watermark", PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_LABEL_NONE},
	{"rustmq.controller.LogEntry", "data", PROTOBUF_C_TYPE_BYTES, PROTOBUF_C_LABEL_NONE},
	{"rustmq.broker.Metric", "value", PROTOBUF_C_TYPE_DOUBLE, PROTOBUF_C_LABEL_NONE},
	{"rustmq.broker.Metric", "labels", PROTOBUF_C_TYPE_MESSAGE, PROTOBUF_C_LABEL_REPEATED},
};

static const ProtobufCMessageDescriptor *find_message(const char *full)
{
	for (size_t i = 0; i < rmq_all_messages_count; i++) {
		if (strcmp(rmq_all_messages[i]->name, full) == 0)
			return rmq_all_messages[i];
	}
	return NULL;
}

static const ProtobufCServiceDescriptor *find_service(const char *full)
{
	for (size_t i = 0; i < rmq_all_services_count; i++) {
		if (strcmp(rmq_all_services[i]->name, full) == 0)
			return rmq_all_services[i];
	}
	return NULL;
}

/* The FileDescriptorSet protoc wrote from proto/, for streaming flags. */
static Google__Protobuf__FileDescriptorSet *load_descriptor_set(void)
{
	FILE *f = fopen(RMQ_DESCRIPTOR_SET, "rb");
	cr_assert_not_null(f, "cannot open %s", RMQ_DESCRIPTOR_SET);
	static uint8_t buf[4 << 20];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	cr_assert_lt(n, sizeof(buf), "descriptor set larger than the test's buffer");
	Google__Protobuf__FileDescriptorSet *set =
		google__protobuf__file_descriptor_set__unpack(NULL, n, buf);
	cr_assert_not_null(set, "descriptor set does not decode");
	return set;
}

static const Google__Protobuf__MethodDescriptorProto *
find_method_proto(const Google__Protobuf__FileDescriptorSet *set, const char *service_full,
		  const char *method)
{
	for (size_t i = 0; i < set->n_file; i++) {
		const Google__Protobuf__FileDescriptorProto *fd = set->file[i];
		size_t plen = strlen(fd->package);
		if (strncmp(service_full, fd->package, plen) != 0 || service_full[plen] != '.')
			continue;
		for (size_t s = 0; s < fd->n_service; s++) {
			if (strcmp(fd->service[s]->name, service_full + plen + 1) != 0)
				continue;
			for (size_t m = 0; m < fd->service[s]->n_method; m++) {
				if (strcmp(fd->service[s]->method[m]->name, method) == 0)
					return fd->service[s]->method[m];
			}
		}
	}
	return NULL;
}

static void check_rpcs(const struct rpc *rpcs, size_t n)
{
	static const char *const shape_names[] = {"unary", "server-streaming",
						  "client-streaming", "bidirectional"};
	Google__Protobuf__FileDescriptorSet *set = load_descriptor_set();

	for (size_t i = 0; i < n; i++) {
		const struct rpc *r = &rpcs[i];
		const ProtobufCServiceDescriptor *sd = find_service(r->service);
		cr_assert_not_null(sd, "service %s is missing", r->service);
		const ProtobufCMethodDescriptor *md = protobuf_c_service_descriptor_get_method_by_name(sd, r->method);
		cr_assert_not_null(md, "%s/%s is missing", r->service, r->method);
		if (r->request) {
			cr_assert_str_eq(md->input->name, r->request, "%s/%s request type",
					 r->service, r->method);
			cr_assert_str_eq(md->output->name, r->response, "%s/%s response type",
					 r->service, r->method);
		}
		const Google__Protobuf__MethodDescriptorProto *mp =
			find_method_proto(set, r->service, r->method);
		cr_assert_not_null(mp, "%s/%s missing from the descriptor set", r->service,
				   r->method);
		enum shape got = (enum shape)((mp->client_streaming ? 2 : 0) |
					      (mp->server_streaming ? 1 : 0));
		cr_assert_eq(got, r->shape, "%s/%s is %s, the design says %s", r->service,
			     r->method, shape_names[got], shape_names[r->shape]);
	}
	google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
}

Test(rpcs, every_seed_rpc_exists_with_its_types_and_shape)
{
	check_rpcs(seed_rpcs, sizeof(seed_rpcs) / sizeof(seed_rpcs[0]));
}

Test(rpcs, rmq_additions_exist)
{
	check_rpcs(added_rpcs, sizeof(added_rpcs) / sizeof(added_rpcs[0]));
}

/* Looks up every "name=number" of one seed_fields line. */
static void check_line(const char *line)
{
	char buf[1024];
	snprintf(buf, sizeof(buf), "%s", line);
	int is_enum = strncmp(buf, "enum ", 5) == 0;
	char *type = buf + (is_enum ? 5 : 0);
	char *colon = strchr(type, ':');
	cr_assert_not_null(colon);
	*colon = '\0';
	const ProtobufCMessageDescriptor *md = NULL;
	const ProtobufCEnumDescriptor *ed = NULL;
	if (is_enum) {
		/* Enums are reached through a field that uses them. */
		for (size_t i = 0; i < rmq_all_messages_count && !ed; i++) {
			const ProtobufCMessageDescriptor *d = rmq_all_messages[i];
			for (unsigned k = 0; k < d->n_fields; k++) {
				const ProtobufCFieldDescriptor *f = &d->fields[k];
				if (f->type == PROTOBUF_C_TYPE_ENUM &&
				    strcmp(((const ProtobufCEnumDescriptor *)f->descriptor)->name, type) == 0) {
					ed = f->descriptor;
					break;
				}
			}
		}
		cr_assert_not_null(ed, "enum %s is missing or unused", type);
	} else {
		md = find_message(type);
		cr_assert_not_null(md, "message %s is missing", type);
	}
	char *save = NULL;
	for (char *tok = strtok_r(colon + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(tok, '=');
		cr_assert_not_null(eq);
		*eq = '\0';
		int want = atoi(eq + 1);
		if (is_enum) {
			const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(ed, tok);
			cr_assert_not_null(v, "%s.%s is missing", type, tok);
			cr_assert_eq(v->value, want, "%s.%s is %d, the design says %d", type, tok,
				     v->value, want);
		} else {
			const ProtobufCFieldDescriptor *f =
				protobuf_c_message_descriptor_get_field_by_name(md, tok);
			cr_assert_not_null(f, "%s.%s is missing", type, tok);
			cr_assert_eq((int)f->id, want, "%s.%s is field %u, the design says %d", type,
				     tok, f->id, want);
		}
	}
}

Test(rpcs, every_seed_field_keeps_its_number)
{
	for (size_t i = 0; i < sizeof(seed_fields) / sizeof(seed_fields[0]); i++)
		check_line(seed_fields[i]);
	for (size_t i = 0; i < sizeof(seed_types) / sizeof(seed_types[0]); i++) {
		const ProtobufCMessageDescriptor *md = find_message(seed_types[i].message);
		cr_assert_not_null(md, "%s missing", seed_types[i].message);
		const ProtobufCFieldDescriptor *f =
			protobuf_c_message_descriptor_get_field_by_name(md, seed_types[i].field);
		cr_assert_not_null(f, "%s.%s missing", seed_types[i].message, seed_types[i].field);
		cr_assert_eq(f->type, seed_types[i].type, "%s.%s type", seed_types[i].message,
			     seed_types[i].field);
		cr_assert_eq(f->label, seed_types[i].label, "%s.%s label", seed_types[i].message,
			     seed_types[i].field);
	}
}

/* The on-disk format stores each batch as field 6 of FetchPartitionResponse
 * (key byte 0x32); storage and the fetch path rely on that number. */
Test(rpcs, stored_batch_key_is_field_6)
{
	const ProtobufCMessageDescriptor *md = find_message("rustmq.client.FetchPartitionResponse");
	cr_assert_not_null(md);
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(md, "batches");
	cr_assert_not_null(f);
	cr_assert_eq(f->id, 6);
	cr_assert_str_eq(((const ProtobufCMessageDescriptor *)f->descriptor)->name,
			 "rustmq.common.RecordBatch");
}
