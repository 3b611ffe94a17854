"""Job workspaces spread over the file system, not packed where the last ones died.

ext2/3/4 put a directory's files in the block group of the directory, and a new
subdirectory near its parent. On ext4 without a journal, creating a file steps over
every inode of its group freed in the last minute or so (the kernel's
`recently_deleted`), one block lookup each. A runner creates and deletes thousands of
checkouts in one directory, so its group fills with such inodes: on this project's
benchmark machine a 50-file checkout grew from 4 ms to 47 ms of kernel time within a
few hundred jobs (ADR 0019). The directory attribute `T` (`chattr +T`, FS_TOPDIR_FL)
tells the allocator that the subdirectories are unrelated, so each workspace is placed
in a group of the allocator's choosing; the checkout stayed at 4-5 ms. Where a file
system has no such attribute, nothing changes.
"""

import array
import fcntl
import logging
import os
from pathlib import Path

logger = logging.getLogger("conveyor.runner")

# <linux/fs.h>, as x86_64, aarch64, riscv64 and s390x encode them (elsewhere: ENOTTY,
# nothing spread). They say `long`; the kernel reads and writes an int.
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000

_DONE: set[Path] = set()


def spread_subdirectories(directory: Path) -> bool:
    """Create `directory` if need be, and mark its subdirectories as unrelated for the
    block allocator: True once marked; False where it cannot be (not ext2/3/4, not the
    runner's directory, a read-only mount), which changes nothing else."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & FS_TOPDIR_FL:
            flags[0] |= FS_TOPDIR_FL
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags, True)
    except OSError as exc:  # ENOTTY, EOPNOTSUPP: not ext2/3/4; EPERM, EROFS
        logger.debug("%s: workspaces not spread apart: %s", directory, exc)
        return False
    finally:
        os.close(fd)
    return True


def spread_once(directory: Path) -> None:
    """spread_subdirectories, the first time this process meets `directory` only."""
    if directory not in _DONE:
        spread_subdirectories(directory)
        _DONE.add(directory)
