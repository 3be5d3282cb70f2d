/* SPDX-License-Identifier: Apache-2.0 */
/*
 * methods.c - the method table (methods.h): every RPC of proto/, with its
 * kind, request and response types, handler, and the field of its
 * request's rustmq.common.ApiVersion.
 *
 * The gRPC layer calls dispatch() for every method; dispatch finds the
 * route by the method's place in rmq_broker_methods, refuses an API major
 * version this node does not speak (UNSUPPORTED_VERSION in the method's
 * own response), decodes the request with the route's descriptor and
 * hands it to the handler, so no handler decodes or version-checks for
 * itself.  The produce routes take the bytes instead: they parse in place
 * and copy the records verbatim (produce.c).
 */
#include "broker/methods.h"
#include "broker/elect.h"
#include "broker/isr.h"
#include "broker/partmgmt.h"

#include "broker/auth.h"
#include "broker/quota.h"
#include "broker/broker.h"
#include "broker/ctrl_net.h"
#include "broker/fleet.h"
#include "broker/group.h"
#include "broker/reply.h"
#include "broker/sec_admin.h"
#include "broker/health.pb-c.h"
#include "broker/partition.pb-c.h"
#include "broker/replication.pb-c.h"
#include "client/consumer.pb-c.h"
#include "client/metadata.pb-c.h"
#include "client/producer.pb-c.h"
#include "common/types.pb-c.h"
#include "controller/admin.pb-c.h"
#include "controller/cluster.pb-c.h"
#include "controller/raft.pb-c.h"
#include "core/assert.h"
#include "core/pbwire.h"
#include "core/util.h"
#include "grpc/health/v1/health.pb-c.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U RMQ_GRPC_UNARY
#define SS RMQ_GRPC_SERVER_STREAM
#define CS RMQ_GRPC_CLIENT_STREAM
#define BI RMQ_GRPC_BIDI
#define NOT_SERVED(path_, kind_) {.path = path_, .kind = kind_, .rpc = RMQ_RPC_NOT_SERVED, .on_bytes = rmq_not_served}

struct route {
	const char *path;
	enum rmq_grpc_kind kind;
	enum rmq_rpc rpc;
	const ProtobufCMessageDescriptor *req;  /* NULL: on_bytes */
	const ProtobufCMessageDescriptor *resp; /* for errors before the handler */
	rmq_rpc_fn on_request;
	rmq_rpc_bytes_fn on_bytes;
	void (*on_half_close)(struct rmq_call *c);
	void (*on_cancel)(struct rmq_call *c);
	void (*on_drain)(struct rmq_call *c);
	uint8_t version_field;                  /* 0: not checked */
	bool names;                             /* lists of names: --max-request-names */
};

static const struct route routes[] = {
	/* ProducerService */
	{.path = "/rustmq.client.ProducerService/Produce", .kind = U, .rpc = RMQ_RPC_PRODUCE, .on_bytes = rmq_produce_unary, .resp = &rustmq__client__produce_response__descriptor, .version_field = 1},
	{.path = "/rustmq.client.ProducerService/ProduceBatch", .kind = U, .rpc = RMQ_RPC_PRODUCE_BATCH, .on_bytes = rmq_produce_batch, .resp = &rustmq__client__produce_batch_response__descriptor, .version_field = 1},
	{.path = "/rustmq.client.ProducerService/ProduceStream", .kind = BI, .rpc = RMQ_RPC_PRODUCE_STREAM, .on_bytes = rmq_produce_stream_msg, .resp = &rustmq__client__produce_response__descriptor, .on_half_close = rmq_produce_stream_half_close, .on_cancel = rmq_produce_cancel, .version_field = 1},
	{.path = "/rustmq.client.ProducerService/InitTransaction", .kind = U, .rpc = RMQ_RPC_FLEET, .req = &rustmq__client__init_transaction_request__descriptor, .on_request = rmq_producer_init, .resp = &rustmq__client__init_transaction_response__descriptor, .version_field = 1},
	NOT_SERVED("/rustmq.client.ProducerService/CommitTransaction", U),
	NOT_SERVED("/rustmq.client.ProducerService/AbortTransaction", U),
	/* ConsumerService */
	{.path = "/rustmq.client.ConsumerService/Fetch", .kind = U, .rpc = RMQ_RPC_FETCH, .req = &rustmq__client__fetch_request__descriptor, .on_request = rmq_fetch_unary, .resp = &rustmq__client__fetch_response__descriptor, .on_cancel = rmq_fetch_cancel, .version_field = 1},
	{.path = "/rustmq.client.ConsumerService/FetchBatch", .kind = U, .rpc = RMQ_RPC_FETCH_BATCH, .req = &rustmq__client__fetch_batch_request__descriptor, .on_request = rmq_fetch_batch, .resp = &rustmq__client__fetch_batch_response__descriptor, .on_cancel = rmq_fetch_cancel, .version_field = 1},
	{.path = "/rustmq.client.ConsumerService/Subscribe", .kind = SS, .rpc = RMQ_RPC_SUBSCRIBE, .req = &rustmq__client__subscribe_request__descriptor, .on_request = rmq_fetch_subscribe, .resp = &rustmq__client__fetch_response__descriptor, .on_cancel = rmq_fetch_cancel, .on_drain = rmq_fetch_drain, .version_field = 1},
	{.path = "/rustmq.client.ConsumerService/ListOffsets", .kind = U, .rpc = RMQ_RPC_LIST_OFFSETS, .req = &rustmq__client__list_offsets_request__descriptor, .on_request = rmq_list_offsets, .resp = &rustmq__client__list_offsets_response__descriptor, .version_field = 1},
	{.path = "/rustmq.client.ConsumerService/JoinGroup", .kind = U, .rpc = RMQ_RPC_JOIN_GROUP, .req = &rustmq__client__join_group_request__descriptor, .on_request = rmq_group_join, .resp = &rustmq__client__join_group_response__descriptor, .version_field = 1},
	{.path = "/rustmq.client.ConsumerService/LeaveGroup", .kind = U, .rpc = RMQ_RPC_LEAVE_GROUP, .req = &rustmq__client__leave_group_request__descriptor, .on_request = rmq_group_leave, .resp = &rustmq__client__leave_group_response__descriptor, .version_field = 1},
	{.path = "/rustmq.client.ConsumerService/CommitOffsets", .kind = U, .rpc = RMQ_RPC_COMMIT_OFFSETS, .req = &rustmq__client__commit_offsets_request__descriptor, .on_request = rmq_group_commit, .resp = &rustmq__client__commit_offsets_response__descriptor, .version_field = 1},
	{.path = "/rustmq.client.ConsumerService/Heartbeat", .kind = U, .rpc = RMQ_RPC_HEARTBEAT, .req = &rustmq__client__group_heartbeat_request__descriptor, .on_request = rmq_group_heartbeat, .resp = &rustmq__client__group_heartbeat_response__descriptor, .version_field = 1},
	{.path = "/rustmq.client.ConsumerService/SyncGroup", .kind = U, .rpc = RMQ_RPC_SYNC_GROUP, .req = &rustmq__client__sync_group_request__descriptor, .on_request = rmq_group_sync, .resp = &rustmq__client__sync_group_response__descriptor, .version_field = 1},
	{.path = "/rustmq.client.ConsumerService/FetchOffsets", .kind = U, .rpc = RMQ_RPC_FETCH_OFFSETS, .req = &rustmq__client__fetch_offsets_request__descriptor, .on_request = rmq_group_fetch_offsets, .resp = &rustmq__client__fetch_offsets_response__descriptor, .version_field = 1},
	/* MetadataService */
	{.path = "/rustmq.client.MetadataService/GetTopicMetadata", .kind = U, .rpc = RMQ_RPC_TOPIC_METADATA, .req = &rustmq__client__get_topic_metadata_request__descriptor, .on_request = rmq_md_topic_metadata, .resp = &rustmq__client__get_topic_metadata_response__descriptor, .version_field = 1, .names = true},
	{.path = "/rustmq.client.MetadataService/ListTopics", .kind = U, .rpc = RMQ_RPC_MD_LIST_TOPICS, .req = &rustmq__client__list_topics_request__descriptor, .on_request = rmq_md_list_topics, .resp = &rustmq__client__list_topics_response__descriptor, .version_field = 1},
	{.path = "/rustmq.client.MetadataService/GetBrokerList", .kind = U, .rpc = RMQ_RPC_BROKER_LIST, .req = &rustmq__client__get_broker_list_request__descriptor, .on_request = rmq_md_broker_list, .resp = &rustmq__client__get_broker_list_response__descriptor, .version_field = 1},
	{.path = "/rustmq.client.MetadataService/GetPartitionLeader", .kind = U, .rpc = RMQ_RPC_PARTITION_LEADER, .req = &rustmq__client__get_partition_leader_request__descriptor, .on_request = rmq_md_partition_leader, .resp = &rustmq__client__get_partition_leader_response__descriptor, .version_field = 1},
	{.path = "/rustmq.client.MetadataService/GetClusterMetadata", .kind = U, .rpc = RMQ_RPC_CLUSTER_METADATA, .req = &rustmq__client__get_cluster_metadata_request__descriptor, .on_request = rmq_md_cluster_metadata, .resp = &rustmq__client__get_cluster_metadata_response__descriptor, .version_field = 1},
	{.path = "/rustmq.client.MetadataService/FindCoordinator", .kind = U, .rpc = RMQ_RPC_FIND_COORDINATOR, .req = &rustmq__client__find_coordinator_request__descriptor, .on_request = rmq_md_find_coordinator, .resp = &rustmq__client__find_coordinator_response__descriptor, .version_field = 1, .names = true},
	/* AuthService */
	{.path = "/rustmq.client.AuthService/Authenticate", .kind = U, .rpc = RMQ_RPC_AUTHENTICATE, .req = &rustmq__common__authentication_request__descriptor, .on_request = rmq_auth_authenticate, .resp = &rustmq__common__authentication_response__descriptor, .version_field = 3},
	/* AdminService */
	{.path = "/rustmq.controller.AdminService/CreateTopics", .kind = U, .rpc = RMQ_RPC_CREATE_TOPICS, .req = &rustmq__controller__create_topics_request__descriptor, .on_request = rmq_admin_create_topics, .resp = &rustmq__controller__create_topics_response__descriptor, .version_field = 1, .names = true},
	{.path = "/rustmq.controller.AdminService/DeleteTopics", .kind = U, .rpc = RMQ_RPC_DELETE_TOPICS, .req = &rustmq__controller__delete_topics_request__descriptor, .on_request = rmq_admin_delete_topics, .resp = &rustmq__controller__delete_topics_response__descriptor, .version_field = 1, .names = true},
	{.path = "/rustmq.controller.AdminService/ListTopics", .kind = U, .rpc = RMQ_RPC_LIST_TOPICS, .req = &rustmq__controller__list_topics_request__descriptor, .on_request = rmq_admin_list_topics, .resp = &rustmq__controller__list_topics_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.AdminService/DescribeTopics", .kind = U, .rpc = RMQ_RPC_DESCRIBE_TOPICS, .req = &rustmq__controller__describe_topics_request__descriptor, .on_request = rmq_admin_describe_topics, .resp = &rustmq__controller__describe_topics_response__descriptor, .version_field = 1, .names = true},
	{.path = "/rustmq.controller.AdminService/AlterConfigs", .kind = U, .rpc = RMQ_RPC_ALTER_CONFIGS, .req = &rustmq__controller__alter_configs_request__descriptor, .on_request = rmq_admin_alter_configs, .resp = &rustmq__controller__alter_configs_response__descriptor, .version_field = 1, .names = true},
	{.path = "/rustmq.controller.AdminService/DescribeConfigs", .kind = U, .rpc = RMQ_RPC_DESCRIBE_CONFIGS, .req = &rustmq__controller__describe_configs_request__descriptor, .on_request = rmq_admin_describe_configs, .resp = &rustmq__controller__describe_configs_response__descriptor, .version_field = 1, .names = true},
	{.path = "/rustmq.controller.AdminService/DescribeCluster", .kind = U, .rpc = RMQ_RPC_DESCRIBE_CLUSTER, .req = &rustmq__controller__describe_cluster_request__descriptor, .on_request = rmq_admin_describe_cluster, .resp = &rustmq__controller__describe_cluster_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.AdminService/ListGroups", .kind = U, .rpc = RMQ_RPC_LIST_GROUPS, .req = &rustmq__controller__list_groups_request__descriptor, .on_request = rmq_group_list, .resp = &rustmq__controller__list_groups_response__descriptor, .version_field = 1, .names = true},
	{.path = "/rustmq.controller.AdminService/DescribeGroups", .kind = U, .rpc = RMQ_RPC_DESCRIBE_GROUPS, .req = &rustmq__controller__describe_groups_request__descriptor, .on_request = rmq_group_describe, .resp = &rustmq__controller__describe_groups_response__descriptor, .version_field = 1, .names = true},
	{.path = "/rustmq.controller.AdminService/DeleteGroups", .kind = U, .rpc = RMQ_RPC_DELETE_GROUPS, .req = &rustmq__controller__delete_groups_request__descriptor, .on_request = rmq_group_delete, .resp = &rustmq__controller__delete_groups_response__descriptor, .version_field = 1, .names = true},
	{.path = "/rustmq.controller.AdminService/ResetGroupOffsets", .kind = U, .rpc = RMQ_RPC_RESET_GROUP_OFFSETS, .req = &rustmq__controller__reset_group_offsets_request__descriptor, .on_request = rmq_group_reset, .resp = &rustmq__controller__reset_group_offsets_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.AdminService/ElectLeaders", .kind = U, .rpc = RMQ_RPC_FLEET, .req = &rustmq__controller__elect_leaders_request__descriptor, .on_request = rmq_elect_leaders, .resp = &rustmq__controller__elect_leaders_response__descriptor, .version_field = 1},
	/* AdminService: users, ACLs and quotas (sec_admin.h) */
	{.path = "/rustmq.controller.AdminService/UpsertUsers", .kind = U, .rpc = RMQ_RPC_UPSERT_USERS, .req = &rustmq__controller__upsert_users_request__descriptor, .on_request = rmq_sec_upsert_users, .resp = &rustmq__controller__upsert_users_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.AdminService/DeleteUsers", .kind = U, .rpc = RMQ_RPC_DELETE_USERS, .req = &rustmq__controller__delete_users_request__descriptor, .on_request = rmq_sec_delete_users, .resp = &rustmq__controller__delete_users_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.AdminService/ListUsers", .kind = U, .rpc = RMQ_RPC_LIST_USERS, .req = &rustmq__controller__list_users_request__descriptor, .on_request = rmq_sec_list_users, .resp = &rustmq__controller__list_users_response__descriptor, .version_field = 1, .names = true},
	{.path = "/rustmq.controller.AdminService/CreateAcls", .kind = U, .rpc = RMQ_RPC_CREATE_ACLS, .req = &rustmq__controller__create_acls_request__descriptor, .on_request = rmq_sec_create_acls, .resp = &rustmq__controller__create_acls_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.AdminService/DeleteAcls", .kind = U, .rpc = RMQ_RPC_DELETE_ACLS, .req = &rustmq__controller__delete_acls_request__descriptor, .on_request = rmq_sec_delete_acls, .resp = &rustmq__controller__delete_acls_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.AdminService/DescribeAcls", .kind = U, .rpc = RMQ_RPC_DESCRIBE_ACLS, .req = &rustmq__controller__describe_acls_request__descriptor, .on_request = rmq_sec_describe_acls, .resp = &rustmq__controller__describe_acls_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.AdminService/AlterQuotas", .kind = U, .rpc = RMQ_RPC_ALTER_QUOTAS, .req = &rustmq__controller__alter_quotas_request__descriptor, .on_request = rmq_sec_alter_quotas, .resp = &rustmq__controller__alter_quotas_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.AdminService/DescribeQuotas", .kind = U, .rpc = RMQ_RPC_DESCRIBE_QUOTAS, .req = &rustmq__controller__describe_quotas_request__descriptor, .on_request = rmq_sec_describe_quotas, .resp = &rustmq__controller__describe_quotas_response__descriptor, .version_field = 1, .names = true},
	/* Health */
	{.path = "/grpc.health.v1.Health/Check", .kind = U, .rpc = RMQ_RPC_HEALTH_CHECK, .req = &grpc__health__v1__health_check_request__descriptor, .on_request = rmq_health_check, .resp = &grpc__health__v1__health_check_response__descriptor},
	{.path = "/grpc.health.v1.Health/Watch", .kind = SS, .rpc = RMQ_RPC_HEALTH_WATCH, .req = &grpc__health__v1__health_check_request__descriptor, .on_request = rmq_health_watch, .resp = &grpc__health__v1__health_check_response__descriptor, .on_cancel = rmq_health_watch_cancel},
	/* BrokerHealthService */
	{.path = "/rustmq.broker.BrokerHealthService/HealthCheck", .kind = U, .rpc = RMQ_RPC_BROKER_HEALTH, .req = &rustmq__broker__health_check_request__descriptor, .on_request = rmq_broker_health, .resp = &rustmq__broker__health_check_response__descriptor, .version_field = 1},
	{.path = "/rustmq.broker.BrokerHealthService/GetMetrics", .kind = U, .rpc = RMQ_RPC_METRICS, .req = &rustmq__broker__metrics_request__descriptor, .on_request = rmq_broker_metrics, .resp = &rustmq__broker__metrics_response__descriptor, .version_field = 4},
	/* BrokerReplicationService */
	{.path = "/rustmq.broker.BrokerReplicationService/ReplicateData", .kind = U, .rpc = RMQ_RPC_REPLICATE, .on_bytes = rmq_follow_replicate, .resp = &rustmq__broker__replicate_data_response__descriptor, .on_cancel = rmq_follow_cancel, .version_field = 1},
	{.path = "/rustmq.broker.BrokerReplicationService/ReplicateStream", .kind = BI, .rpc = RMQ_RPC_REPLICATE, .on_bytes = rmq_follow_stream_msg, .resp = &rustmq__broker__replicate_data_response__descriptor, .on_half_close = rmq_follow_stream_half_close, .on_cancel = rmq_follow_cancel, .version_field = 1},
	{.path = "/rustmq.broker.BrokerReplicationService/SendHeartbeat", .kind = U, .rpc = RMQ_RPC_REPLICATE, .req = &rustmq__broker__heartbeat_request__descriptor, .on_request = rmq_replica_heartbeat, .resp = &rustmq__broker__heartbeat_response__descriptor, .version_field = 1},
	{.path = "/rustmq.broker.BrokerReplicationService/TransferLeadership", .kind = U, .rpc = RMQ_RPC_FLEET, .req = &rustmq__broker__transfer_leadership_request__descriptor, .on_request = rmq_elect_transfer, .resp = &rustmq__broker__transfer_leadership_response__descriptor, .version_field = 1},
	{.path = "/rustmq.broker.BrokerReplicationService/GetLeaderEpoch", .kind = U, .rpc = RMQ_RPC_REPLICATE, .req = &rustmq__broker__get_leader_epoch_request__descriptor, .on_request = rmq_get_leader_epoch, .resp = &rustmq__broker__get_leader_epoch_response__descriptor, .version_field = 1},
	{.path = "/rustmq.broker.BrokerReplicationService/UpdateISR", .kind = U, .rpc = RMQ_RPC_FLEET, .req = &rustmq__broker__update_isrrequest__descriptor, .on_request = rmq_isr_update, .resp = &rustmq__broker__update_isrresponse__descriptor, .version_field = 1},
	{.path = "/rustmq.broker.BrokerReplicationService/GetISR", .kind = U, .rpc = RMQ_RPC_REPLICATE, .req = &rustmq__broker__get_isrrequest__descriptor, .on_request = rmq_get_isr, .resp = &rustmq__broker__get_isrresponse__descriptor, .version_field = 1, .names = true},
	/* PartitionManagementService */
	{.path = "/rustmq.broker.PartitionManagementService/AssignPartition", .kind = U, .rpc = RMQ_RPC_FLEET, .req = &rustmq__broker__assign_partition_request__descriptor, .on_request = rmq_pm_assign, .resp = &rustmq__broker__assign_partition_response__descriptor, .version_field = 1},
	{.path = "/rustmq.broker.PartitionManagementService/RemovePartition", .kind = U, .rpc = RMQ_RPC_FLEET, .req = &rustmq__broker__remove_partition_request__descriptor, .on_request = rmq_pm_remove, .resp = &rustmq__broker__remove_partition_response__descriptor, .version_field = 1},
	{.path = "/rustmq.broker.PartitionManagementService/MigratePartition", .kind = SS, .rpc = RMQ_RPC_FLEET, .req = &rustmq__broker__migrate_partition_request__descriptor, .on_request = rmq_pm_migrate, .resp = &rustmq__broker__migrate_partition_progress__descriptor, .on_cancel = rmq_pm_migrate_cancel, .version_field = 1},
	{.path = "/rustmq.broker.PartitionManagementService/GetPartitionState", .kind = U, .rpc = RMQ_RPC_REPLICATE, .req = &rustmq__broker__get_partition_state_request__descriptor, .on_request = rmq_pm_state, .resp = &rustmq__broker__get_partition_state_response__descriptor, .version_field = 1},
	{.path = "/rustmq.broker.PartitionManagementService/UpdatePartitionConfig", .kind = U, .rpc = RMQ_RPC_ALTER_CONFIGS, .req = &rustmq__broker__update_partition_config_request__descriptor, .on_request = rmq_pm_config, .resp = &rustmq__broker__update_partition_config_response__descriptor, .version_field = 1},
	/* ControllerRaftService */
	{.path = "/rustmq.controller.ControllerRaftService/RequestVote", .kind = U, .rpc = RMQ_RPC_RAFT, .on_bytes = rmq_ctrl_rpc_vote, .resp = &rustmq__controller__vote_response__descriptor, .version_field = 6},
	{.path = "/rustmq.controller.ControllerRaftService/AppendEntries", .kind = U, .rpc = RMQ_RPC_RAFT, .on_bytes = rmq_ctrl_rpc_append, .resp = &rustmq__controller__append_entries_response__descriptor, .version_field = 7},
	{.path = "/rustmq.controller.ControllerRaftService/InstallSnapshot", .kind = CS, .rpc = RMQ_RPC_RAFT, .on_bytes = rmq_ctrl_snapshot_chunk, .on_half_close = rmq_ctrl_snapshot_end, .on_cancel = rmq_ctrl_snapshot_cancel, .resp = &rustmq__controller__install_snapshot_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.ControllerRaftService/PreVote", .kind = U, .rpc = RMQ_RPC_RAFT, .on_bytes = rmq_ctrl_rpc_prevote, .resp = &rustmq__controller__pre_vote_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.ControllerRaftService/TimeoutNow", .kind = U, .rpc = RMQ_RPC_RAFT, .on_bytes = rmq_ctrl_rpc_timeout_now, .resp = &rustmq__controller__timeout_now_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.ControllerRaftService/AddPeer", .kind = U, .rpc = RMQ_RPC_RAFT, .req = &rustmq__controller__add_peer_request__descriptor, .on_request = rmq_ctrl_add_peer, .resp = &rustmq__controller__add_peer_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.ControllerRaftService/RemovePeer", .kind = U, .rpc = RMQ_RPC_RAFT, .req = &rustmq__controller__remove_peer_request__descriptor, .on_request = rmq_ctrl_remove_peer, .resp = &rustmq__controller__remove_peer_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.ControllerRaftService/GetConfiguration", .kind = U, .rpc = RMQ_RPC_RAFT, .req = &rustmq__controller__get_configuration_request__descriptor, .on_request = rmq_ctrl_get_configuration, .resp = &rustmq__controller__get_configuration_response__descriptor, .version_field = 1},
	/* ControllerBrokerService */
	{.path = "/rustmq.controller.ControllerBrokerService/RegisterBroker", .kind = U, .rpc = RMQ_RPC_FLEET, .req = &rustmq__controller__register_broker_request__descriptor, .on_request = rmq_fleet_rpc_register, .resp = &rustmq__controller__register_broker_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.ControllerBrokerService/UnregisterBroker", .kind = U, .rpc = RMQ_RPC_FLEET, .req = &rustmq__controller__unregister_broker_request__descriptor, .on_request = rmq_fleet_rpc_unregister, .resp = &rustmq__controller__unregister_broker_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.ControllerBrokerService/HeartbeatBroker", .kind = U, .rpc = RMQ_RPC_FLEET, .req = &rustmq__controller__broker_heartbeat_request__descriptor, .on_request = rmq_fleet_rpc_heartbeat, .resp = &rustmq__controller__broker_heartbeat_response__descriptor, .version_field = 1},
	{.path = "/rustmq.controller.ControllerBrokerService/CreatePartitions", .kind = U, .rpc = RMQ_RPC_FLEET, .req = &rustmq__controller__create_partitions_request__descriptor, .on_request = rmq_resize_create_partitions, .resp = &rustmq__controller__create_partitions_response__descriptor, .version_field = 1, .names = true},
	{.path = "/rustmq.controller.ControllerBrokerService/DeletePartitions", .kind = U, .rpc = RMQ_RPC_FLEET, .req = &rustmq__controller__delete_partitions_request__descriptor, .on_request = rmq_resize_delete_partitions, .resp = &rustmq__controller__delete_partitions_response__descriptor, .version_field = 1, .names = true},
	{.path = "/rustmq.controller.ControllerBrokerService/ReassignPartitions", .kind = SS, .rpc = RMQ_RPC_FLEET, .req = &rustmq__controller__reassign_partitions_request__descriptor, .on_request = rmq_reassign_partitions, .resp = &rustmq__controller__reassign_partitions_progress__descriptor, .on_cancel = rmq_reassign_cancel, .version_field = 1, .names = true},
	{.path = "/rustmq.controller.ControllerBrokerService/UpdateClusterConfig", .kind = U, .rpc = RMQ_RPC_FLEET, .req = &rustmq__controller__update_cluster_config_request__descriptor, .on_request = rmq_cluster_update_config, .resp = &rustmq__controller__update_cluster_config_response__descriptor, .version_field = 1, .names = true},
	{.path = "/rustmq.controller.ControllerBrokerService/GetClusterConfig", .kind = U, .rpc = RMQ_RPC_FLEET, .req = &rustmq__controller__get_cluster_config_request__descriptor, .on_request = rmq_cluster_get_config, .resp = &rustmq__controller__get_cluster_config_response__descriptor, .version_field = 1, .names = true},
	/* StreamingService */
	NOT_SERVED("/rustmq.streaming.StreamingService/InteractiveQuery", BI),
	NOT_SERVED("/rustmq.streaming.StreamingService/Subscribe", SS),
	NOT_SERVED("/rustmq.streaming.StreamingService/BulkLoad", CS),
};

#define NROUTES RMQ_ARRAY_SIZE(routes)

struct rmq_grpc_method rmq_broker_methods[NROUTES];
const size_t rmq_broker_nmethods = NROUTES;

static const struct route *route_of(const struct rmq_call *c)
{
	size_t i = (size_t)(rmq_call_method(c) - rmq_broker_methods);
	RMQ_ASSERT(i < NROUTES);
	return &routes[i];
}

enum rmq_rpc rmq_call_rpc(const struct rmq_call *c)
{
	return route_of(c)->rpc;
}

void rmq_refuse(struct rmq_call *c, int code, const char *fmt, ...)
{
	char text[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	rmq_reply_error(c, route_of(c)->resp, code, "%s", text);
}

/* The API major version this node speaks. */
#define RMQ_API_MAJOR 1

/* Reads ApiVersion.major from field `field` of an encoded request; 0 when
 * absent (an unversioned request is taken as the current version). */
static uint64_t api_major(const uint8_t *msg, size_t len, uint32_t field)
{
	const uint8_t *p = msg, *end = msg + len;
	while (p < end) {
		uint32_t f, w;
		uint64_t num = 0;
		const uint8_t *val = NULL;
		size_t vlen = 0;
		size_t n = rmq_pb_next(p, end, &f, &w, &num, &val, &vlen);
		if (n == 0)
			return 0; /* malformed: the decoder says so */
		if (f == field && w == RMQ_PB_LEN) {
			const uint8_t *q = val, *qe = val + vlen;
			while (q < qe) {
				uint32_t f2, w2;
				uint64_t v2 = 0;
				const uint8_t *x;
				size_t xl;
				size_t k = rmq_pb_next(q, qe, &f2, &w2, &v2, &x, &xl);
				if (k == 0)
					return 0;
				if (f2 == 1 && w2 == RMQ_PB_VARINT)
					return v2;
				q += k;
			}
			return 0;
		}
		p += n;
	}
	return 0;
}

/* The largest element count among the top-level repeated fields of req,
 * and that field's name. */
static size_t most_repeated(const ProtobufCMessageDescriptor *d, const void *req, const char **field)
{
	size_t most = 0;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->label != PROTOBUF_C_LABEL_REPEATED)
			continue;
		size_t n = *(const size_t *)((const char *)req + f->quantifier_offset);
		if (n > most) {
			most = n;
			*field = f->name;
		}
	}
	return most;
}

static void run(struct rmq_call *c, const uint8_t *msg, size_t len);

/* ---- quotas: calls that wait before their method runs (quota.h) --------------------- */

/* A message held for a quota, or a half-close behind held messages. */
struct held {
	struct held *next;
	uint64_t due_ns;
	bool half_close;
	size_t len;
	uint8_t msg[];
};

/* A call's held messages, in order (a stream's are never reordered). */
struct held_call {
	struct rmq_call *call;        /* a reference held */
	struct rmq_bshard *bs;
	struct held *head, *tail;
	size_t bytes;                 /* of the messages held */
	bool muted;                   /* its connection's reading stopped */
	struct rmq_timer timer;
	struct held_call *next;       /* the shard's */
};

static struct held_call *held_find(struct rmq_bshard *bs, const struct rmq_call *c)
{
	for (struct held_call *h = bs->held; h; h = h->next)
		if (h->call == c)
			return h;
	return NULL;
}

static void held_release(struct held_call *h)
{
	struct held_call **pp = &h->bs->held;
	while (*pp != h)
		pp = &(*pp)->next;
	*pp = h->next;
	while (h->head) {
		struct held *m = h->head;
		h->head = m->next;
		free(m);
	}
	rmq_timer_cancel(h->bs->s, &h->timer);
	if (h->muted)
		rmq_call_mute(h->call, false);
	rmq_call_unref(h->call);
	free(h);
}

/* A call holding more than HELD_MAX bytes stops its connection's reading
 * until it is down to half: the client waits, the node does not buffer. */
#define HELD_MAX (1u << 20)

static void held_mute(struct held_call *h)
{
	bool want = h->muted ? h->bytes > HELD_MAX / 2 : h->bytes > HELD_MAX;
	if (want != h->muted) {
		h->muted = want;
		rmq_call_mute(h->call, want);
	}
}

static void held_fire(struct rmq_timer *t)
{
	struct held_call *h = RMQ_CONTAINER_OF(t, struct held_call, timer);
	const uint64_t now = rmq_now_ns();
	while (h->head && h->head->due_ns <= now && !rmq_call_done(h->call)) {
		struct held *m = h->head;
		h->head = m->next;
		if (!h->head)
			h->tail = NULL;
		h->bytes -= m->len;
		held_mute(h);
		if (m->half_close) {
			if (route_of(h->call)->on_half_close)
				route_of(h->call)->on_half_close(h->call);
		} else {
			run(h->call, m->msg, m->len);
		}
		free(m);
	}
	if (!h->head || rmq_call_done(h->call)) {
		held_release(h);
		return;
	}
	if (rmq_timer_start(h->bs->s, &h->timer, h->head->due_ns, held_fire) < 0) {
		rmq_call_finish(h->call, RMQ_GRPC_RESOURCE_EXHAUSTED, "no timer left for a quota's wait");
		held_release(h);
	}
}

/* Holds msg (or a half-close) of c until due_ns, behind those it holds
 * already.  False when out of memory or timers (c is answered then). */
static bool hold(struct rmq_bshard *bs, struct rmq_call *c, const uint8_t *msg, size_t len,
		 uint64_t due_ns, bool half_close)
{
	struct held_call *h = held_find(bs, c);
	struct held *m = malloc(sizeof(*m) + len);
	if (!m || (!h && !(h = calloc(1, sizeof(*h))))) {
		free(m);
		rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return false;
	}
	*m = (struct held){.due_ns = due_ns, .half_close = half_close, .len = len};
	if (len)
		memcpy(m->msg, msg, len);
	if (!h->call) {
		h->call = c;
		h->bs = bs;
		rmq_call_ref(c);
		h->next = bs->held;
		bs->held = h;
		if (rmq_timer_start(bs->s, &h->timer, due_ns, held_fire) < 0) {
			free(m);
			held_release(h);
			rmq_call_finish(c, RMQ_GRPC_RESOURCE_EXHAUSTED, "no timer left for a quota's wait");
			return false;
		}
	}
	if (h->tail)
		h->tail->next = m;
	else
		h->head = m;
	h->tail = m;
	h->bytes += len;
	held_mute(h);
	return true;
}

/* Calls a quota counts: every one but authenticating and health checks. */
static bool counted(enum rmq_rpc rpc)
{
	return rpc != RMQ_RPC_AUTHENTICATE && rpc != RMQ_RPC_HEALTH_CHECK &&
	       rpc != RMQ_RPC_HEALTH_WATCH && rpc != RMQ_RPC_BROKER_HEALTH && rpc != RMQ_RPC_RAFT &&
	       rpc != RMQ_RPC_REPLICATE && rpc != RMQ_RPC_FLEET;
}

static void dispatch(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	const enum rmq_rpc rpc = route_of(c)->rpc;
	struct held_call *h = bs->held ? held_find(bs, c) : NULL;
	uint64_t wait = 0;
	if (rmq_quota_any(bs) && counted(rpc)) {
		const char *principal = rmq_call_principal(c);
		const bool produce = rpc == RMQ_RPC_PRODUCE || rpc == RMQ_RPC_PRODUCE_BATCH ||
				     rpc == RMQ_RPC_PRODUCE_STREAM;
		wait = rmq_quota_charge(bs, principal ? principal : RMQ_AUTH_ANONYMOUS,
					produce ? len : 0, 0, true);
	}
	if (wait > 0 || h) {
		/* Held, behind what the call holds already (a stream's
		 * messages stay in order), until its own debt is paid. */
		uint64_t due = rmq_now_ns() + wait;
		if (h && h->tail && h->tail->due_ns > due)
			due = h->tail->due_ns;
		rmq_call_set_throttle_ms(c, (uint32_t)(wait / 1000000));
		(void)hold(bs, c, msg, len, due, false);
		return;
	}
	run(c, msg, len);
}

/* A stream's half-close goes behind its held messages. */
static void half_close(struct rmq_call *c)
{
	struct rmq_bshard *bs = rmq_call_app(c);
	struct held_call *h = bs->held ? held_find(bs, c) : NULL;
	if (h) {
		(void)hold(bs, c, NULL, 0, h->tail ? h->tail->due_ns : 0, true);
		return;
	}
	route_of(c)->on_half_close(c);
}

static void run(struct rmq_call *c, const uint8_t *msg, size_t len)
{
	const struct route *r = route_of(c);
	if (r->version_field) {
		uint64_t major = api_major(msg, len, r->version_field);
		if (major > RMQ_API_MAJOR) {
			rmq_reply_error(c, r->resp, EC_UNSUPPORTED_VERSION,
					"API major version %llu is not spoken by this node (it speaks %d.x)",
					(unsigned long long)major, RMQ_API_MAJOR);
			/* A streaming request's handler may hold state and a
			 * reference for this call from an earlier message
			 * (ProduceStream's stream).  The call ended without it:
			 * tell it, as the net layer does when it ends a call
			 * (found by tests/fuzz/fuzz_grpc: the reference was
			 * never dropped and rmqd could not drain). */
			if ((r->kind == BI || r->kind == CS) && r->on_cancel)
				r->on_cancel(c);
			return;
		}
	}
	if (r->on_bytes) {
		r->on_bytes(c, msg, len);
		return;
	}
	void *req = protobuf_c_message_unpack(r->req, NULL, len, msg);
	if (!req) {
		rmq_call_finishf(c, RMQ_GRPC_INVALID_ARGUMENT, "%s does not decode", r->req->name);
		return;
	}
	/* The per-request cap on entries (request.h), before any work. */
	const struct rmq_bshard *bs = rmq_call_app(c);
	uint32_t max = r->names ? bs->b->cfg.max_request_names : bs->b->cfg.max_request_partitions;
	const char *field = NULL;
	size_t most = most_repeated(r->req, req, &field);
	if (most > max) {
		protobuf_c_message_free_unpacked(req, NULL);
		rmq_reply_error(c, r->resp, EC_INVALID_REQUEST,
				"%s has %zu entries; this node takes at most %u per request "
				"(--max-request-%s): split it",
				field, most, max, r->names ? "names" : "partitions");
		return;
	}
	r->on_request(c, req);
}

void rmq_methods_fini(struct rmq_bshard *bs)
{
	while (bs->held)
		held_release(bs->held);
}

void rmq_methods_init(void)
{
	for (size_t i = 0; i < NROUTES; i++) {
		rmq_broker_methods[i] = (struct rmq_grpc_method){
			.path = routes[i].path,
			.kind = routes[i].kind,
			.on_message = dispatch,
			.on_half_close = routes[i].on_half_close ? half_close : NULL,
			.on_cancel = routes[i].on_cancel,
			.on_drain = routes[i].on_drain,
		};
	}
}
