"""Whether the process that left a file behind (a lock, a staging folder) still runs."""

import os
import socket


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
