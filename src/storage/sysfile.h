/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sysfile.h - the synchronous file calls storage makes (creating files,
 * fallocate, ftruncate, fsync), each offered first to the fault layer
 * (core/io.h rmq_io_fault_sys) so that tests can fail it.  Each behaves
 * like the call it wraps: -1 with errno set on failure, an injected error
 * included.  Unarmed, the check is one thread-local load.
 */
#ifndef RMQ_STORAGE_SYSFILE_H
#define RMQ_STORAGE_SYSFILE_H

#include "core/io.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>

/* Returns true (errno set) when the fault layer fails this call. */
static inline bool rmq_sys_faulted(enum rmq_io_fault_kind kind, int fd, const char *path)
{
	int rc = rmq_io_fault_sys(kind, fd, path);
	if (rc < 0) {
		errno = -rc;
		return true;
	}
	return false;
}

/* open(path, flags | O_CREAT, mode) */
static inline int rmq_sys_create(const char *path, int flags, mode_t mode)
{
	if (rmq_sys_faulted(RMQ_IO_FAULT_CREATE, -1, path))
		return -1;
	return open(path, flags | O_CREAT, mode);
}

static inline int rmq_sys_fallocate(int fd, int mode, off_t off, off_t len)
{
	if (rmq_sys_faulted(RMQ_IO_FAULT_FALLOCATE, fd, NULL))
		return -1;
	return fallocate(fd, mode, off, len);
}

static inline int rmq_sys_ftruncate(int fd, off_t len)
{
	if (rmq_sys_faulted(RMQ_IO_FAULT_FTRUNCATE, fd, NULL))
		return -1;
	return ftruncate(fd, len);
}

static inline int rmq_sys_fsync(int fd)
{
	if (rmq_sys_faulted(RMQ_IO_FAULT_FSYNC, fd, NULL))
		return -1;
	return fsync(fd);
}

static inline int rmq_sys_fdatasync(int fd)
{
	if (rmq_sys_faulted(RMQ_IO_FAULT_FSYNC, fd, NULL))
		return -1;
	return fdatasync(fd);
}

#endif /* RMQ_STORAGE_SYSFILE_H */
