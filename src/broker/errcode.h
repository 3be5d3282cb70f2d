/* SPDX-License-Identifier: Apache-2.0 */
/*
 * errcode.h - rustmq.common.ErrorCode (proto/common/errors.proto), the
 * application errors every response carries, under short names.
 *
 * Plain int macros on purpose: the same value goes into the generated
 * enum of many messages (an enum constant would need a cast at each), and
 * into fields packed by hand.  proto/ is the reference
 * for what each code means; a static assertion in broker.c checks a few
 * values against the generated enum so the two cannot drift apart.
 */
#ifndef RMQ_BROKER_ERRCODE_H
#define RMQ_BROKER_ERRCODE_H

#define EC_OK 0
#define EC_UNKNOWN 1
#define EC_INVALID_REQUEST 2
#define EC_NOT_LEADER 3
#define EC_NOT_AVAILABLE 4
#define EC_TIMEOUT 5
#define EC_DUPLICATE_REQUEST 6
#define EC_STALE_EPOCH 7
#define EC_UNAUTHORIZED 8
#define EC_TOPIC_NOT_FOUND 9
#define EC_PARTITION_NOT_FOUND 10
#define EC_OFFSET_OUT_OF_RANGE 11
#define EC_CORRUPT_MESSAGE 12
#define EC_MESSAGE_TOO_LARGE 13
#define EC_INVALID_TOPIC 14
#define EC_TOPIC_ALREADY_EXISTS 15
#define EC_INVALID_PARTITIONS 16
#define EC_INVALID_REPLICATION_FACTOR 17
#define EC_INVALID_CONFIG 18
#define EC_NOT_ENOUGH_REPLICAS 19
#define EC_NOT_ENOUGH_REPLICAS_AFTER_APPEND 20
#define EC_LEADER_NOT_AVAILABLE 21
#define EC_NOT_CONTROLLER 22
#define EC_COORDINATOR_NOT_AVAILABLE 23
#define EC_NOT_COORDINATOR 24
#define EC_COORDINATOR_LOAD_IN_PROGRESS 25
#define EC_UNKNOWN_MEMBER_ID 26
#define EC_ILLEGAL_GENERATION 27
#define EC_REBALANCE_IN_PROGRESS 28
#define EC_INCONSISTENT_GROUP_PROTOCOL 29
#define EC_GROUP_ID_NOT_FOUND 30
#define EC_INVALID_SESSION_TIMEOUT 31
#define EC_OFFSET_METADATA_TOO_LARGE 32
#define EC_UNSUPPORTED_VERSION 33
#define EC_UNSUPPORTED_COMPRESSION_TYPE 34
#define EC_OUT_OF_ORDER_SEQUENCE 35
#define EC_DUPLICATE_SEQUENCE 36
#define EC_INVALID_PRODUCER_EPOCH 37
#define EC_UNKNOWN_PRODUCER_ID 38
#define EC_INVALID_TRANSACTION_STATE 39
#define EC_TRANSACTION_TIMEOUT 40
#define EC_CONCURRENT_TRANSACTIONS 41
#define EC_AUTHENTICATION_FAILED 42
#define EC_UNSUPPORTED_SASL_MECHANISM 43
#define EC_POLICY_VIOLATION 44
#define EC_STORAGE_ERROR 45
#define EC_RESOURCE_EXHAUSTED 46
#define EC_UNKNOWN_LEADER_EPOCH 47
#define EC_REPLICA_NOT_AVAILABLE 48
#define EC_BROKER_NOT_AVAILABLE 49
#define EC_REASSIGNMENT_IN_PROGRESS 50
#define EC_NO_REASSIGNMENT_IN_PROGRESS 51
#define EC_INVALID_TIMESTAMP 52
#define EC_INVALID_RECORD 53
#define EC_GROUP_NOT_EMPTY 54
#define EC_GROUP_MAX_SIZE_REACHED 55
#define EC_MEMBER_ID_REQUIRED 56
#define EC_OFFSET_NOT_AVAILABLE 57
#define EC_ELECTION_NOT_NEEDED 58
#define EC_THROTTLED 59
#define EC_SHUTTING_DOWN 60
#define EC_FEATURE_NOT_ENABLED 61
#define EC_INVALID_OFFSET 62

#endif /* RMQ_BROKER_ERRCODE_H */
