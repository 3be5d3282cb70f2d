/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ec.h - the broker's error codes (rustmq.common.ErrorCode, common/
 * errors.proto) under short names for rmq and rmq-bench: EC(TOPIC_NOT_FOUND)
 * is protoc-c's RUSTMQ__COMMON__ERROR_CODE__TOPIC_NOT_FOUND, so no file keeps
 * a private copy of the numbers that could drift from the protocol.
 */
#ifndef RMQ_TOOLS_EC_H
#define RMQ_TOOLS_EC_H

#include "common/errors.pb-c.h"

#define EC(name) RUSTMQ__COMMON__ERROR_CODE__##name

#endif /* RMQ_TOOLS_EC_H */
