"""mi_xmlrpc: XML-RPC calls to MI commands and the 1.x reply forms (one string, or an array
of lines), faults for unknown commands and bad parameters, and the embedded HTTP server
answering Python's xmlrpc.client (in-process, on a free loopback port)."""
import asyncio
import threading
import xmlrpc.client

import pytest

from cfgscript import parse_text
from modules import mi_xmlrpc as mx
from runtime.loader import load_script
from tests.modules3.servers import free_port


def runtime(extra=""):
    loaded = load_script(parse_text('loadmodule "mi_xmlrpc.so"\n' + extra +
                                    "\nroute { exit; }", "t.cfg"))
    assert loaded.ok, [str(d) for d in loaded.diagnostics]
    return loaded.rt


def call(rt, method, *params, reply_option=0):
    body = xmlrpc.client.dumps(params, method).encode()
    out = asyncio.run(mx.handle_call(rt, body, reply_option))
    return xmlrpc.client.loads(out)[0][0]


def test_reply_lines():
    assert mx.reply_lines({"Now": "x", "Up time": "3 [sec]"}) == ["Now:: x\n",
                                                                  "Up time:: 3 [sec]\n"]
    assert mx.reply_lines("OK") == []
    assert mx.reply_lines({"Processes": [{"ID": 0, "Type": "a"}, {"ID": 1, "Type": "b"}]}) == [
        "Processes:: \n", "ID:: 0\n", "Type:: a\n", "Processes:: \n", "ID:: 1\n",
        "Type:: b\n"]
    assert mx.reply_lines(["a", "b"]) == ["a\n", "b\n"]
    assert mx.reply_lines({"x": None, "y": True}) == ["x:: \n", "y:: true\n"]


def test_calls_and_faults():
    rt = runtime()
    text = call(rt, "uptime")
    assert text.startswith("Now:: ") and "Up time:: " in text and text.endswith(" [sec]\n")
    lines = call(rt, "uptime", reply_option=1)
    assert isinstance(lines, list) and lines[0].startswith("Now:: ") and len(lines) == 3
    assert "which" in call(rt, "which", reply_option=1)[0] or call(rt, "which")
    assert call(rt, "help", "uptime").startswith("Help:: ")
    assert call(rt, "help", {"mi_cmd": "uptime"}).startswith("Help:: ")
    with pytest.raises(xmlrpc.client.Fault) as e:
        call(rt, "no_such_command")
    assert e.value.faultCode == -32601 and e.value.faultString == "Method not found"
    with pytest.raises(xmlrpc.client.Fault) as e:
        call(rt, "uptime", "extra", "params")
    assert e.value.faultCode == -32602
    out = asyncio.run(mx.handle_call(rt, b"<methodCall><broken"))
    with pytest.raises(xmlrpc.client.Fault) as e:
        xmlrpc.client.loads(out)
    assert e.value.faultCode == -32700
    assert "uptime" in call(rt, "system.listMethods")


def test_lflf_stands_for_crlf():
    assert mx._param("a\n\nb") == "a\r\nb"


def test_port_check():
    loaded = load_script(parse_text('loadmodule "mi_xmlrpc.so"\n'
                                    'modparam("mi_xmlrpc", "port", 80)\nroute { exit; }', "t.cfg"))
    assert not loaded.ok


def test_the_server_answers_xmlrpc_client(tmp_path):
    port = free_port()
    log = tmp_path / "abyss.log"
    rt = runtime(f'modparam("mi_xmlrpc", "port", {port})\n'
                 f'modparam("mi_xmlrpc", "log_file", "{log}")\n'
                 f'modparam("mi_xmlrpc", "reply_option", 1)\n')
    rt.modules["mi_xmlrpc"].init(rt)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    state = {}

    async def main():
        state["stop"] = asyncio.Event()
        await rt.modules["mi_xmlrpc"].child_init(rt)
        started.set()
        await state["stop"].wait()
        rt.modules["mi_xmlrpc"].destroy(rt)
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()
        await asyncio.sleep(0)

    t = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    t.start()
    assert started.wait(5)
    try:
        with xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2") as proxy:
            lines = proxy.uptime()
            assert lines[0].startswith("Now:: ")
            assert proxy.version()[0].startswith("Server:: cfgscript")
            with pytest.raises(xmlrpc.client.Fault):
                proxy.nothing_like_this()
        import urllib.request
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/RPC2", timeout=5)
        assert e.value.code == 405
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        t.join(5)
        loop.close()
    text = log.read_text()
    assert text.count('"POST /RPC2 HTTP/1.1" 200') == 3 and '"GET /RPC2 HTTP/1.1" 405' in text
