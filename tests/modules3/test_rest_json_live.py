"""rest_client and json on a live proxy: for each SIPp OPTIONS the script asks a real HTTP
server (a thread of this test) about the caller with rest_get, decides on the JSON answer,
reports the call with rest_post of a $json_compact body and a header added by
rest_append_hf, and answers with what it learned; an unreachable or slow server gives the
script's error answer, never a stuck proxy."""
import json
import re
from pathlib import Path

from tests.modules3.servers import free_port, http_server

XML = Path(__file__).parent / "xml"

SCRIPT = """
log_level=3
loadmodule "proto_udp.so"
loadmodule "sl.so"
loadmodule "sipmsgops.so"
loadmodule "rest_client.so"
modparam("rest_client", "connection_timeout", 1)
modparam("rest_client", "curl_timeout", 2)
loadmodule "json.so"

route {
    $var(rc) = rest_get("@BASE@/account?user=$rU&id=$(ci{rest.escape})", $var(body), $var(ct),
                        $var(code));
    if ($var(rc) < 0) {
        sl_send_reply(500, "REST failed $var(rc)");
        exit;
    }
    $json(acc) := $var(body);
    if ($json(acc/allowed) != 1) {
        sl_send_reply(403, "Forbidden");
        exit;
    }
    $json(ev) := "{}";
    $json(ev/callid) = $ci;
    $json(ev/user) = $rU;
    $json(ev/credit) = $json(acc/credit);
    $json(ev/tags) := "[]";
    $json(ev/tags[]) = "live";
    rest_append_hf("X-Token: $json(acc/token)");
    async(rest_post("@BASE@/events", "$json_compact(ev)", "application/json", $var(pbody), ,
                    $var(pcode)), reply);
}

route[reply] {
    append_to_reply("X-Credit: $json(acc/credit)\\r\\n");
    append_to_reply("X-Post: $var(pcode) $var(pbody)\\r\\n");
    sl_send_reply(200, "OK");
}
"""


def account(req):
    user = re.search(r"user=([^&]+)", req["path"]).group(1)
    if user == "slow":
        return 200, "application/json", {"allowed": 1}, 5
    return 200, "application/json", {"allowed": 1 if user == "bob" else 0, "credit": 42,
                                     "token": f"t-{user}"}, 0


def events(req):
    return 202, "text/plain", "queued\n", 0


def _replies(result):
    text = result.agents[0].read("messages")
    return re.findall(r"^SIP/2\.0 (\d{3}) ([^\r\n]*)", text, re.M), text


def test_rest_and_json_decide_the_answer(cfgscript_proxy, sipp_scenario):
    with http_server({"/account": account, "/events": events}) as (base, seen):
        proxy = cfgscript_proxy(SCRIPT.replace("@BASE@", base))
        ok = sipp_scenario(proxy, uac=XML / "uac-options-user.xml", uas=False, calls=2,
                           service="bob")
        no = sipp_scenario(proxy, uac=XML / "uac-options-user.xml", uas=False, calls=1,
                           service="carol")
        codes, text = _replies(ok)
        assert [c for c, _ in codes] == ["200", "200"], text[-2000:]
        assert re.findall(r"^X-Credit: (.*)$", text, re.M) == ["42", "42"]
        assert re.findall(r"^X-Post: (.*)$", text, re.M) == ["202 queued", "202 queued"]
        codes, text = _replies(no)
        assert codes == [("403", "Forbidden")]
        posts = [r for r in seen.requests if r["method"] == "POST"]
        gets = [r for r in seen.requests if r["method"] == "GET"]
    assert len(gets) == 3 and len(posts) == 2
    assert "%40" in gets[0]["path"]                        # the Call-ID's @, escaped
    body = json.loads(posts[0]["body"])
    assert body["user"] == "bob" and body["credit"] == 42 and body["tags"] == ["live"]
    assert "@" in body["callid"]
    assert posts[0]["headers"]["Content-Type"] == "application/json"
    assert posts[0]["headers"]["X-Token"] == "t-bob"
    assert posts[0]["body"].startswith(b'{"callid":"')        # $json_compact: no blanks


def test_unreachable_and_slow_servers(cfgscript_proxy, sipp_scenario):
    with http_server({"/account": account, "/events": events}) as (base, _):
        dead = cfgscript_proxy(SCRIPT.replace("@BASE@", f"http://127.0.0.1:{free_port()}"))
        res = sipp_scenario(dead, uac=XML / "uac-options-user.xml", uas=False, service="bob")
        assert _replies(res)[0] == [("500", "REST failed -1")]
        slow = cfgscript_proxy(SCRIPT.replace("@BASE@", base))
        res = sipp_scenario(slow, uac=XML / "uac-options-user.xml", uas=False,
                            service="slow", timeout=30)
        assert _replies(res)[0] == [("500", "REST failed -3")]
