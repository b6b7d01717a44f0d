"""memcached: the OpenSIPS 1.5/1.6 name of the memcached cache engine (cachedb_memcached
since 1.7), for scripts written for it.

    loadmodule "memcached.so"
    modparam("memcached", "server", "callid_hash = 127.0.0.1:11211")
    modparam("memcached", "server", "y = 10.0.0.1:11211,10.0.0.2")    # a group of servers

    cache_store("memcached_callid_hash", "$ci", "$si", 60);
    cache_fetch("memcached_callid_hash", "$ci", $avp(i:55));
    cache_remove("memcached_y", "key");

Each `server` line names a group of servers ("memcached_<group>" in the script); a key is
kept on one server of its group, chosen as libmemcached chooses. The engine and its
behaviour are cachedb_memcached's (see there).
"""
from __future__ import annotations

import re

from modules.cachedb_memcached import MemcachedEngine
from runtime import cachedb
from runtime.module import Module, Param

exports = Module(
    name="memcached",
    params=[Param("server", str, multi=True, check=lambda v: _check(v)),
            Param("exec_threshold", int, 0)],
    functions=cachedb.functions(),
    init="init",
    destroy="destroy",
)

_SERVER = re.compile(r"^\s*(?P<group>[^=\s]+)\s*=\s*(?P<list>\S.*?)\s*$")


def parse_server(text):
    """`"group = host[:port][,host[:port]...]"` -> (group, [(host, port)])."""
    m = _SERVER.match(str(text))
    if m is None:
        raise ValueError(f"bad memcached server '{text}' (group = host[:port][,host[:port]])")
    servers = []
    for item in m.group("list").split(","):
        item = item.strip()
        if not item:
            continue
        host, _, port = item.partition(":")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"bad port '{port}' in memcached server '{text}'")
        servers.append((host, int(port) if port else 11211))
    if not servers:
        raise ValueError(f"no server in memcached server '{text}'")
    return m.group("group"), servers


def _check(text):
    try:
        parse_server(text)
    except ValueError as e:
        return str(e)
    return None


api = cachedb.register("memcached")          # the groups of servers


def init(rt):
    p = rt.modparams["memcached"]
    engines = {}
    for text in p["server"]:
        group, servers = parse_server(text)
        if group in engines:
            rt.log.warning(f"memcached server group '{group}' is defined twice; the first "
                           f"one is used", "memcached")
            continue
        engines[group] = MemcachedEngine(servers, f"memcached_{group}", rt.log,
                                         p["exec_threshold"])
    api.replace(engines)


def destroy(rt):
    api.replace({})
