"""Compiled-route semantics: the quirks of the language reference, sections 3.3-3.9 and 7.1.

Each test runs a small script on a real parsed SIP message and reads the script's $var
values back; nothing is sent on the network.
"""
import pytest

from cfgscript import parse_text
from runtime.context import Context, ScriptExit
from runtime.loader import load_script
from runtime.sip.message import Message

INVITE = (b"INVITE sip:Alice@example.com SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK776asdhds\r\n"
          b"Max-Forwards: 70\r\nTo: Alice <sip:alice@example.com>\r\n"
          b"From: Bob <sip:bob@biloxi.com>;tag=1928301774\r\nCall-ID: a84b4c76e66710\r\n"
          b"CSeq: 314159 INVITE\r\nContact: <sip:bob@10.1.2.3>\r\nContent-Length: 0\r\n\r\n")


def run(script_text, msg=INVITE, src=("10.1.2.3", 5060)):
    """Load `script_text` and run its main route once; returns ($var dict, ctx)."""
    loaded = load_script(parse_text(script_text, "t.cfg"))
    errors = [str(d) for d in loaded.diagnostics if d.severity == "error"]
    assert not errors, errors
    rt = loaded.rt
    ctx = Context(rt, Message.parse(msg), src=src)
    try:
        rt.routes[("route", None)](ctx)
    except ScriptExit:
        pass
    return rt.vars, ctx


def route(body, extra=""):
    return run(f"route {{\n{body}\n}}\n{extra}")[0]


def load_errors(text):
    loaded = load_script(parse_text(text, "t.cfg"))
    return [d for d in loaded.diagnostics if d.severity == "error"]


# --- return codes (7.1, 3.9) ---------------------------------------------------------------

def test_route_return_values_and_rc():
    v = route("route(neg); $var(a) = $rc; route(pos); $var(b) = $rc;"
              "if (route(neg)) $var(c) = 1; else $var(c) = 2;"
              "route(none); $var(d) = $rc;",
              "route[neg] { return(-2); }\nroute[pos] { return 7; }\nroute[none] { $var(z) = 1; }")
    assert (v["a"], v["b"], v["c"], v["d"]) == (-2, 7, 2, 1)


def test_return_zero_and_exit_stop_everything():
    v = route("$var(a) = 1; route(stop); $var(a) = 2;",
              "route[stop] { $var(b) = 1; return(0); $var(b) = 2; }")
    assert v == {"a": 1, "b": 1}
    v = route("route(x); $var(after) = 1;", "route[x] { exit; }")
    assert "after" not in v


def test_function_returning_zero_in_a_condition_stops_the_script():
    v = route('$var(a) = 1; if (!route(zero)) { $var(a) = 2; } $var(a) = 3;',
              "route[zero] { $var(r) = 0; return($var(r)); }")
    assert v["a"] == 1


def test_break_at_route_level_ends_the_route():
    v = route("route(x); $var(after) = 1;", "route[x] { $var(in) = 1; break; $var(in) = 2; }")
    assert v == {"in": 1, "after": 1}


def test_route_params_and_recursion_of_params():
    v = route('route(p, "one", 2, $rU);',
              'route[p] { $var(a) = $param(1); $var(b) = $param(2); $var(c) = $param(3);'
              ' $var(d) = $param(4); route(q, "inner"); $var(e) = $param(1); }\n'
              'route[q] { $var(f) = $param(1); }')
    assert (v["a"], v["b"], v["c"], v["d"], v["e"], v["f"]) == ("one", 2, "Alice", None, "one",
                                                                  "inner")


def test_drop_marks_the_message():
    _, ctx = run("route { drop; }")
    assert ctx.dropped


# --- conditions (3.2, 3.4) -----------------------------------------------------------------

def test_or_and_same_level_at_run_time():
    # (1 || x) && 0  ->  false ; C precedence would give true
    v = route("if ($var(t) == NULL || $var(u) == 1 && $var(t) == 1) $var(r) = 1; else $var(r) = 0;")
    assert v["r"] == 0


def test_string_equality_is_case_insensitive():
    v = route('if ($rU == "alice") $var(a) = 1; if ($rm == "invite") $var(b) = 1;'
              'if ($fn != "BOB") $var(c) = 1; else $var(c) = 0;')
    assert (v["a"], v["b"], v["c"]) == (1, 1, 0)


def test_regex_is_case_insensitive_and_compiled_at_load():
    v = route('if ($ru =~ "^SIP:alice@") $var(a) = 1; if ($ru !~ "bob") $var(b) = 1;')
    assert (v["a"], v["b"]) == (1, 1)
    assert "invalid regular expression" in load_errors('route { if ($ru =~ "(") exit; }')[0].message


def test_type_mismatch_is_an_error_and_takes_else_both_ways():
    v = route('$var(s) = "5";'
              'if ($var(s) == 5) $var(a) = 1; else $var(a) = 2;'
              'if (!($var(s) == 5)) $var(b) = 1; else $var(b) = 2;')
    assert (v["a"], v["b"]) == (2, 2)


def test_pv_alone_truthiness():
    v = route('$var(z) = 0; $var(e) = ""; $var(s) = "0";'
              'if ($var(z)) $var(a) = 1; else $var(a) = 0;'
              'if ($var(e)) $var(b) = 1; else $var(b) = 0;'
              'if ($var(s)) $var(c) = 1; else $var(c) = 0;'
              'if ($var(unset)) $var(d) = 1; else $var(d) = 0;')
    assert (v["a"], v["b"], v["c"], v["d"]) == (0, 0, 1, 0)


def test_null_comparisons():
    v = route('if ($var(nope) == NULL) $var(a) = 1;'
              'if ($var(nope) != "x") $var(b) = 1;'
              'if ($var(nope) == "x") $var(c) = 1; else $var(c) = 0;'
              '$var(e) = ""; if ($var(e) == NULL) $var(d) = 1; else $var(d) = 0;')
    assert (v["a"], v["b"], v["c"], v["d"]) == (1, 1, 0, 0)


def test_ip_network_match():
    v = route('if ($si == 10.0.0.0/8) $var(a) = 1;'
              'if ($si == 10.1.0.0/255.255.0.0) $var(b) = 1;'
              'if ($si != 192.168.0.0/16) $var(c) = 1;')
    assert v == {"a": 1, "b": 1, "c": 1}


def test_brackets():
    v = route('$var(z) = 0; $var(e) = "";'
              'if ([$var(z)]) $var(a) = 1; else $var(a) = 0;'      # a lone PV: true if not NULL
              'if ([$var(e)]) $var(b) = 1; else $var(b) = 0;'
              'if ([0]) $var(c) = 1; else $var(c) = 0;'
              'if ([""]) $var(d) = 1; else $var(d) = 0;'
              'if ([$var(z) + 4 & 4]) $var(f) = 1; else $var(f) = 0;')
    assert (v["a"], v["b"], v["c"], v["d"], v["f"]) == (1, 1, 0, 0, 1)


def test_legacy_tests():
    v = route('if (method == "INVITE") $var(a) = 1;'
              'if (uri =~ "example") $var(b) = 1;'
              'if (src_ip == 10.1.2.3) $var(c) = 1;'
              'if (msg:len > 100) $var(d) = 1;'
              'if (proto == UDP) $var(e) = 1;')
    assert v == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}


def test_myself():
    v, _ = run("socket=udp:127.0.0.1:5060\nalias=example.com\n"
               "route { if (uri == myself) $var(a) = 1; if (from_uri == myself) $var(b) = 1;"
               " else $var(b) = 0; if (is_myself(\"127.0.0.1\", 5060)) $var(c) = 1; }")
    assert (v["a"], v["b"], v["c"]) == (1, 0, 1)


# --- values and assignment (3.3, 3.5, 3.6) -------------------------------------------------

def test_arithmetic_one_level_and_c_ints():
    v = route("$var(a) = 1 + 2 * 3; $var(b) = 7 / 2; $var(c) = -7 / 2; $var(d) = -7 % 3;"
              "$var(e) = 2147483647 + 1; $var(f) = 1 | 2 + 4; $var(g) = 1 << 4;")
    assert (v["a"], v["b"], v["c"], v["d"], v["e"], v["f"], v["g"]) == \
        (9, 3, -3, -1, -2147483648, 7, 16)


def test_division_by_zero_fails_the_assignment():
    _, ctx = run("route { $var(a) = 5; $var(a) = 1 / 0; $var(rc) = $rc; }")
    assert ctx.rt.vars["a"] == 5 and ctx.rt.vars["rc"] == -1  # the failed assignment


def test_concatenation_rules():
    v = route('$var(n) = 5; $var(a) = "sip:" + $rU + "@" + $rd;'
              '$var(b) = "x" + $var(n); $var(c) = "keep"; $var(c) = "x" + 5;')
    assert (v["a"], v["b"], v["c"]) == ("sip:Alice@example.com", "x5", "keep")


def test_compound_assignment():
    v = route('$var(a) = 5; $var(a) += 3; $var(s) = "ab"; $var(s) += "cd";'
              '$var(t) = "q"; $var(t) -= "q";')
    assert (v["a"], v["s"], v["t"]) == (8, "abcd", "q")


def test_avp_stacking():
    _, ctx = run('route { $avp(x) = 1; $avp(x) = 2; $avp(x) = 3;'
                 '$var(top) = $avp(x); $var(old) = $(avp(x)[-1]); $var(mid) = $(avp(x)[1]);'
                 '$var(all) = $(avp(x)[*]);'
                 '$avp(x) = NULL; $var(after_null) = $(avp(x)[*]);'
                 '$(avp(x)[0]) = 9; $var(replaced) = $(avp(x)[*]);'
                 '$avp(x) := 7; $var(assigned) = $(avp(x)[*]);'
                 '$avp(y) = 1; $avp(y) = 2; $(avp(y)[*]) = NULL; $var(cleared) = $avp(y);'
                 '$avp(s:z) = "old-style"; $var(prefixed) = $avp(z); }')
    v = ctx.rt.vars
    assert (v["top"], v["old"], v["mid"], v["all"]) == (3, 1, 2, "3, 2, 1")
    assert v["after_null"] == "2, 1" and v["replaced"] == "9, 1" and v["assigned"] == "7"
    assert v["cleared"] is None
    assert v["prefixed"] is None and ctx.avps["s:z"] == ["old-style"]  # the prefix is kept


def test_var_holds_one_value_and_null_resets():
    v = route("$var(a) = 1; $var(a) = \"x\"; $var(b) = 1; $var(b) = NULL;")
    assert v["a"] == "x" and v["b"] is None


def test_read_only_pv_is_a_load_error():
    errs = load_errors("route { $ci = \"x\"; }")
    assert "read-only" in errs[0].message and errs[0].pos.line == 1


def test_writable_core_pvs():
    _, ctx = run('route { $rU = "carol"; $rd = "atlanta.com"; $du = "sip:10.0.0.9:5070"; }')
    assert ctx.ruri == "sip:carol@atlanta.com" and ctx.dst_uri == "sip:10.0.0.9:5070"


# --- control flow (3.7) --------------------------------------------------------------------

def test_switch_fall_through_and_default():
    v = route('switch ($rU) { case "alice": $var(a) = 1; case "x": $var(b) = 1; break;'
              ' default: $var(c) = 1; }'
              'switch ($var(none)) { case 1: $var(d) = 1; default: $var(e) = 1; }'
              '$var(n) = 2; switch ($var(n)) { case 1: $var(f) = 1; break; case 2: $var(g) = 1; }')
    assert v == {"a": 1, "b": 1, "e": 1, "n": 2, "g": 1}


def test_while_and_break_and_loop_guard():
    v = route("$var(i) = 0; while ($var(i) < 10) { $var(i) = $var(i) + 1;"
              " if ($var(i) == 4) break; }"
              "$var(j) = 0; while (1) { $var(j) = $var(j) + 1; }")
    assert v["i"] == 4 and v["j"] == 10000


def test_break_inside_switch_inside_while_leaves_only_the_switch():
    v = route("$var(i) = 0; while ($var(i) < 3) { $var(i) = $var(i) + 1;"
              " switch ($var(i)) { case 1: break; default: $var(x) = $var(i); } }")
    assert v["i"] == 3 and v["x"] == 3


def test_foreach_over_avps_newest_first():
    v = route('$avp(l) = "a"; $avp(l) = "b"; $var(s) = "";'
              'for ($var(it) in $(avp(l)[*])) { $var(s) = $var(s) + $var(it); }')
    assert v["s"] == "ba"
    assert "[*]" in load_errors("route { for ($var(i) in $avp(l)) { exit; } }")[0].message


def test_flags_by_name_and_number():
    v = route('setflag("NAT"); setflag(3); if (isflagset("NAT")) $var(a) = 1;'
              'if (isflagset(3)) $var(b) = 1; resetflag("NAT");'
              'if (isflagset("NAT")) $var(c) = 1; else $var(c) = 0; $var(mf) = $mf;')
    assert (v["a"], v["b"], v["c"]) == (1, 1, 0) and v["mf"] == "3"


# --- load-time checks ----------------------------------------------------------------------

def test_unknown_function_with_hint():
    (e,) = load_errors("route { t_relya(); }")
    assert e.message == "unknown function 't_relya' (did you mean 't_relay'?)"


def test_function_of_an_unloaded_module():
    (e,) = load_errors("route { sl_send_reply(404, \"x\"); }")
    assert "missing loadmodule \"sl.so\"" in e.message


def test_unimplemented_module_lists_its_uses():
    errs = load_errors('loadmodule "rls.so"\nmodparam("rls", "x", 1)\n'
                       'route {\n rls_handle_subscribe();\n}\n')
    assert len(errs) == 1
    assert errs[0].message == "module 'rls' is not implemented"
    assert "lines 2, 4" in errs[0].notes[0]


def test_argument_checks():
    errs = load_errors('loadmodule "sl.so"\nroute {\n sl_send_reply("abc", "x");\n'
                       ' sl_send_reply(404);\n setflag($var(x));\n}\n')
    msgs = [e.message for e in errs]
    assert "argument 1 of 'sl_send_reply' must be an integer" in msgs[0]
    assert "'sl_send_reply' needs argument 2" in msgs[1]
    assert "must be a constant string" in msgs[2]


def test_quoted_number_is_accepted_with_a_warning():
    loaded = load_script(parse_text('loadmodule "sl.so"\nroute { sl_send_reply("404", "x"); }'))
    assert loaded.ok
    assert any("quoted number" in d.message for d in loaded.diagnostics)


def test_route_type_checks():
    errs = load_errors('loadmodule "maxfwd.so"\nroute { exit; }\n'
                       'onreply_route {\n mf_process_maxfwd_header(10);\n}\n')
    assert len(errs) == 1 and errs[0].pos.line == 4
    assert "cannot be used in onreply_route" in errs[0].message


def test_route_type_checks_follow_sub_routes_with_a_warning():
    loaded = load_script(parse_text('loadmodule "maxfwd.so"\nroute { exit; }\n'
                                    'onreply_route[nat] { route(common); }\n'
                                    'route[common] {\n mf_process_maxfwd_header(10);\n}\n',
                                    "t.cfg"))
    assert loaded.ok  # older OpenSIPS versions ran such scripts
    (w,) = [d for d in loaded.diagnostics if d.severity == "warning"]
    assert w.pos.line == 5
    assert "not allowed in onreply_route, which calls route[common] " \
           "(from onreply_route[nat])" in w.message


def test_undefined_route_and_unknown_pv():
    errs = load_errors("route { route(nope); $var(a) = $nosuchpv; }")
    assert "route 'nope' is not defined" in errs[0].message
    assert "unknown pseudo-variable '$nosuchpv'" in errs[1].message


def test_unknown_global_and_modparam():
    errs = load_errors('log_levle=3\nloadmodule "maxfwd.so"\nmodparam("maxfwd", "max_limt", 5)\n'
                       'modparam("tm", "x", 1)\nroute { exit; }')
    assert "unknown config variable 'log_levle' (did you mean 'log_level'?)" == errs[0].message
    assert "has no parameter 'max_limt' (did you mean 'max_limit'?)" in errs[1].message
    assert "not loaded" in errs[2].message


def test_every_error_is_reported():
    errs = load_errors("route { a1(); a2(); $var(x) = $bad1; }\nroute[r] { a3(); }")
    assert len(errs) == 4
