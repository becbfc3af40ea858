"""Whether the process that left a file behind (a lock, a staging folder) still runs."""

import ctypes
import os
import signal
import socket
import sys


def this_host():
    """This machine's host name, as records of a process name it."""
    return socket.gethostname()


def has_ended(host, pid):
    """Whether process `pid` on `host` has ended: `False` when it runs, or
    when that cannot be known (another host, a process of another user).

    >>> has_ended(this_host(), os.getpid())
    False
    """
    if host != this_host():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, TypeError, OverflowError):
        return False
    return False


def end_with_parent(parent_pid):
    """Makes this process end when its parent, `parent_pid`, does (Linux:
    the parent's death sends it SIGKILL), so a killed sweep leaves no worker
    behind holding its runs' folders. Elsewhere, does nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent ended before the call
        os._exit(1)
