/* SPDX-License-Identifier: Apache-2.0 */
/*
 * commands.h - the commands rmq.c dispatches to, one file each.  Each gets
 * argv from its own name on and returns the exit status.
 */
#ifndef RMQ_TOOLS_COMMANDS_H
#define RMQ_TOOLS_COMMANDS_H

int cmd_topic(int argc, char **argv);   /* topic.c */
int cmd_partition(int argc, char **argv); /* partition.c */
int cmd_produce(int argc, char **argv); /* produce.c */
int cmd_consume(int argc, char **argv); /* consume.c */
int cmd_group(int argc, char **argv);   /* group.c */
int cmd_user(int argc, char **argv);    /* security.c */
int cmd_acl(int argc, char **argv);     /* security.c */
int cmd_quota(int argc, char **argv);   /* security.c */

#endif /* RMQ_TOOLS_COMMANDS_H */
