"""Who a lab node runs as (es-facts §12): Elasticsearch refuses root, and a package install's
systemd unit starts it as the user `elasticsearch` (`User=`).

`bin/elasticsearch-service` run by root passes the unit's user in LAB_SERVICE_USER; the node then
gives up root for good before it reads a single configuration file, so every file it opens is
checked by the kernel against that user. Started as root any other way, it refuses, with
Elasticsearch's message.

The one difference from systemd: the process starts as root and switches, because the Python
running the lab may live where only root can read (a Python under /root), unlike Elasticsearch's
bundled JDK. So the node imports all it will ever need while still root.
"""

from __future__ import annotations

import encodings
import importlib
import os
import pkgutil
import pwd

from esremote.lab.node.config import StartupError

RUN_AS_ENV = "LAB_SERVICE_USER"
ROOT_REFUSAL = "can not run elasticsearch as root"
# The node's own parts (the lab's ops and CLI tools never run inside a node).
_NODE_PACKAGES = ("esremote.lab.node", "esremote.lab.net", "esremote.lab.rest", "esremote.lab.models",
                  "esremote.lab.formats")
_NOT_IN_A_NODE = ("esremote.lab.net.sshserver", "esremote.lab.net.asyncssh_lib", "esremote.lab.node.service")
# Standard-library modules imported on first use, inside functions: time.strptime, IDNA host names.
# Codecs (`str.encode("utf-16-be")`) load on first use too: every one is imported below.
_LAZY_STDLIB = ("_strptime", "stringprep", "unicodedata", "ipaddress", "fnmatch", "hmac", "secrets",
                "uuid", "copy", "textwrap", "traceback", "linecache", "tokenize", "concurrent.futures.thread")


def become_service_user() -> None:
    """Drop root for the service user when the service asked for it; refuse root otherwise."""
    user = os.environ.pop(RUN_AS_ENV, None)
    if os.geteuid() != 0:
        return
    if not user or user == "root":
        raise StartupError(ROOT_REFUSAL, "java.lang.RuntimeException")
    _import_everything()
    _drop_to(user)


def _import_everything() -> None:
    for name in _LAZY_STDLIB:
        importlib.import_module(name)
    for codec in pkgutil.iter_modules(encodings.__path__, "encodings."):
        try:
            importlib.import_module(codec.name)
        except ImportError:  # codecs of other platforms (mbcs, oem)
            pass
    for package_name in _NODE_PACKAGES:
        try:
            package = importlib.import_module(package_name)
        except ModuleNotFoundError:
            continue
        for module in pkgutil.walk_packages(package.__path__, package_name + "."):
            if not module.name.endswith("__main__") and module.name not in _NOT_IN_A_NODE:
                importlib.import_module(module.name)


def _drop_to(user: str) -> None:
    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(USER=user, LOGNAME=user, HOME="/nonexistent")
