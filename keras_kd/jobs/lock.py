"""One process per folder: a lock file naming its holder, recovered when stale."""

import datetime
import json
import logging
import os
import socket
import time

from keras_kd import processes

LOCK_NAME = ".lock"


class FolderInUseError(RuntimeError):
    """Another live process holds the folder's lock."""


class FolderLock:
    """An exclusive lock on a folder (`<folder>/.lock`), held by one process.

    The lock file records the holder's process id, host and start time. A
    second process asking for it gets a `FolderInUseError` naming the holder;
    a lock whose holder is gone (a killed run, on this host) is recovered.
    The holder itself may take it again (a rerun in the same notebook).

    Example:

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with FolderLock(folder, "a run"):
    ...     os.path.exists(os.path.join(folder, ".lock"))
    True
    >>> os.path.exists(os.path.join(folder, ".lock"))
    False
    """

    def __init__(self, folder, what="a run"):
        self.folder = folder
        self.what = what
        self.path = os.path.join(folder, LOCK_NAME)
        self._held = False

    def acquire(self):
        """Takes the lock, or raises `FolderInUseError` naming its live holder."""
        os.makedirs(self.folder, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                  "started": datetime.datetime.now().isoformat(timespec="seconds")}
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self._recover_or_refuse()
                continue
            with os.fdopen(descriptor, "w") as f:
                json.dump(record, f)
            self._held = True
            return self
        raise FolderInUseError(f"Could not take the lock {self.path!r}; try again.")

    def _recover_or_refuse(self):
        holder = _read(self.path)
        if not holder and _age(self.path) < 5.0:
            raise FolderInUseError(f"{self.folder!r} is being locked by another process.")
        mine = holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()
        if mine or _is_gone(holder):
            logging.warning("Recovering the stale lock %s left by %s.", self.path, holder)
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
            return
        raise FolderInUseError(
            f"{self.folder!r} is in use by {holder.get('what', 'another run')}: process "
            f"{holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}. "
            "Wait for it to finish, or write elsewhere. If that process is "
            f"gone for good, delete {self.path!r}."
        )

    def acquire_when_free(self, poll_s=1.0):
        """Takes the lock, waiting while another live process of this host
        holds it (a sweep's runs that share teacher members wait for the one
        training them); logs once whom it waits for. A holder on another
        host, whose end this host cannot see, raises `FolderInUseError` as
        `acquire` does."""
        waited = False
        while True:
            try:
                return self.acquire()
            except FolderInUseError as error:
                if _read(self.path).get("host", socket.gethostname()) != socket.gethostname():
                    raise
                if not waited:
                    logging.info("Waiting: %s", error)
                    waited = True
                time.sleep(poll_s)

    def release(self):
        """Gives the lock up (a no-op if not held)."""
        if self._held:
            self._held = False
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}  # half written by a killed process: stale


def _age(path):
    try:
        return datetime.datetime.now().timestamp() - os.path.getmtime(path)
    except OSError:
        return float("inf")


def _is_gone(holder):
    """Whether the lock's holder has ended (only knowable for a process on this host)."""
    if not holder:
        return True
    return processes.has_ended(holder.get("host"), holder.get("pid"))
