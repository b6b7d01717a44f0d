"""mi_xmlrpc on a live proxy: Python's xmlrpc.client calls MI commands of the core and of a
module (cachedb_local's cache_fetch_chunk, with a parameter) on the port of the script's
modparam, gets the 1.x reply forms, and a fault for an unknown command; the access log
gets a line per call."""
import socket
import time
import xmlrpc.client

import pytest

from tests.modules3.servers import free_port

SCRIPT = """
log_level=3
loadmodule "proto_udp.so"
loadmodule "sl.so"
loadmodule "cachedb_local.so"
loadmodule "mi_xmlrpc.so"
modparam("mi_xmlrpc", "port", @PORT@)
modparam("mi_xmlrpc", "log_file", "@LOG@")
modparam("mi_xmlrpc", "reply_option", @OPTION@)
modparam("mi_xmlrpc", "buffer_size", 8192)

startup_route {
    cache_store("local", "acct_1", "alice");
    cache_store("local", "acct_2", "bob");
}

route {
    sl_send_reply(200, "OK");
}
"""


def _wait(port, proxy, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("mi_xmlrpc did not start:\n" + proxy.log[-3000:])


@pytest.mark.parametrize("option", [0, 1])
def test_mi_over_xmlrpc(cfgscript_proxy, tmp_path, option):
    port = free_port()
    log = tmp_path / "abyss.log"
    proxy = cfgscript_proxy(SCRIPT.replace("@PORT@", str(port)).replace("@LOG@", str(log))
                            .replace("@OPTION@", str(option)))
    _wait(port, proxy)
    with xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2") as mi:
        up = mi.uptime()
        chunk = mi.cache_fetch_chunk("acct_*")
        ps = mi.ps()
        with pytest.raises(xmlrpc.client.Fault) as e:
            mi.no_such_command()
        assert e.value.faultCode == -32601
        with pytest.raises(xmlrpc.client.Fault) as e:
            mi.cache_fetch_chunk("a", "b", "c")
        assert e.value.faultCode == -32602
    if option == 0:
        assert isinstance(up, str) and up.startswith("Now:: ") and "Up time:: " in up
        assert "name:: acct_1\nvalue:: alice\n" in chunk and "value:: bob\n" in chunk
        assert "Type:: MI XMLRPC 127.0.0.1:%d\n" % port in ps
    else:
        assert up[0].startswith("Now:: ") and len(up) == 3
        assert ["keys:: \n", "name:: acct_1\n", "value:: alice\n"] == chunk[:3]
    assert "mi_xmlrpc listening on http://127.0.0.1:%d/RPC2" % port in proxy.log
    assert log.read_text().count('"POST /RPC2 HTTP/1.1" 200') == 5
