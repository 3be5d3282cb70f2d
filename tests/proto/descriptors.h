/* SPDX-License-Identifier: Apache-2.0 */
/* descriptors.h - every generated message and service descriptor
 * (the table is written at build time by gen_table.cmake). */
#ifndef RMQ_TESTS_PROTO_DESCRIPTORS_H
#define RMQ_TESTS_PROTO_DESCRIPTORS_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

extern const ProtobufCMessageDescriptor *const rmq_all_messages[];
extern const size_t rmq_all_messages_count;
extern const ProtobufCServiceDescriptor *const rmq_all_services[];
extern const size_t rmq_all_services_count;

#endif
