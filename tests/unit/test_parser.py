"""The front end: each construct of the language, the quirks that carry meaning, diagnostics."""
import pytest

from cfgscript import CfgError, parse_text
from cfgscript import ast as A
from cfgscript.pvspec import parse_format, parse_pv


def body(src, dialect_marker=""):
    """Statements of the main route of a one-route script."""
    script = parse_text(f"{dialect_marker}route {{\n{src}\n}}\n")
    return script.routes[0].body.body


def expr(src, dialect_marker=""):
    (stmt,) = body(f"if ({src}) exit;", dialect_marker)
    return stmt.cond


def error(text):
    with pytest.raises(CfgError) as e:
        parse_text(text, "t.cfg")
    return e.value.diagnostics[0]


# --- top level --------------------------------------------------------------------------

@pytest.mark.parametrize("line,value", [
    ("log_level=3", A.Num(3)),
    ("log_level = -1", A.Num(-1)),
    ("debug_mode=yes", A.Num(1)),
    ("dns=off", A.Num(0)),
    ("children=0x10", A.Num(16)),
    ('server_header="Server: x # not a comment"', A.Str("Server: x # not a comment")),
    ("syslog_facility=LOG_LOCAL0", A.Name("LOG_LOCAL0")),
    ("advertised_address=10.0.0.1", A.IPNet("10.0.0.1")),
    ("alias=sip.example.com", A.Name("sip.example.com")),
    ("alias=a.example.com b.example.com", (A.Name("a.example.com"), A.Name("b.example.com"))),
    ("mpath=/usr/lib/opensips/modules/", A.Name("/usr/lib/opensips/modules/")),
    ("log_level=3 # trailing comment", A.Num(3)),
])
def test_global_param_values(line, value):
    (item,) = parse_text(line + "\n").items
    assert isinstance(item, A.GlobalParam)
    assert item.value == value


@pytest.mark.parametrize("text,proto,host,port,params", [
    ("socket=udp:127.0.0.1:5060", "udp", "127.0.0.1", "5060", ()),
    ("listen=tcp:eth0:5060", "tcp", "eth0", "5060", ()),
    ("listen=udp:*:5060", "udp", "*", "5060", ()),
    ("socket=udp:[::1]:5060", "udp", "[::1]", "5060", ()),
    ("listen=10.0.0.1", None, "10.0.0.1", None, ()),
    ("listen=10.0.0.1:5070", None, "10.0.0.1", "5070", ()),
    ("socket=udp:10.0.0.1:5060-5070", "udp", "10.0.0.1", "5060-5070", ()),
    ("socket=udp:10.0.0.1:5060 as 1.2.3.4:5080 use_workers 4 reuse_port", "udp", "10.0.0.1",
     "5060", (("as", "1.2.3.4:5080"), ("use_workers", "4"), ("reuse_port", None))),
])
def test_socket_forms(text, proto, host, port, params):
    (item,) = parse_text(text + "\n").items
    sock = item.value
    assert (sock.proto, sock.host, sock.port, sock.params) == (proto, host, port, params)


def test_auto_scaling_profile_spans_lines():
    (item,) = parse_text("auto_scaling_profile = P\n  scale up to 6 on 70% for 4 cycles within 5\n"
                         "  scale down to 2 on 18% for 10 cycles\n").items
    assert item.raw.split()[-1] == "cycles" and "scale down" in item.raw


def test_loadmodule_and_modparam_forms():
    items = parse_text('''
mpath="/usr/lib/opensips/modules"
loadmodule "tm.so"
loadmodule "/usr/lib/x/rr.so"
loadmodule "modules/sl/sl.so"
modparam("auth_db|usrloc", "db_url", "mysql://u:p@h/db")
modparam("tm", "fr_timeout", 5)
modparam("tm", "fr_inv_timeout", -1)
modparam("dialplan", "x", "a"
         "b")
modparam("rr", "append_fromtag", 1);
''').items
    mods = [i for i in items if isinstance(i, A.LoadModule)]
    assert [m.module for m in mods] == ["tm", "rr", "sl"]
    params = [i for i in items if isinstance(i, A.ModParam)]
    assert params[0].module == "auth_db|usrloc"
    assert params[1].value == A.Num(5) and params[2].value == A.Num(-1)
    assert params[3].value == A.Str("ab")


def test_multiline_string():
    (p,) = parse_text('modparam("x", "y", "line1\nline2")\n').items
    assert p.value.value == "line1\nline2"


@pytest.mark.parametrize("text,kind,name,params", [
    ("route { }", "route", None, ()),
    ("route[0] { }", "route", None, ()),
    ("route[relay] { }", "route", "relay", ()),
    ("route[1] { }", "route", "1", ()),
    ('route["with-dash"] { }', "route", "with-dash", ()),
    ("branch_route[b] { }", "branch_route", "b", ()),
    ("failure_route[1] { }", "failure_route", "1", ()),
    ("onreply_route { }", "onreply_route", None, ()),
    ("onreply_route[nat] { }", "onreply_route", "nat", ()),
    ("error_route { }", "error_route", None, ()),
    ("local_route { }", "local_route", None, ()),
    ("startup_route { }", "startup_route", None, ()),
    ("timer_route[gw_update, 300] { }", "timer_route", "gw_update", ("300",)),
    ("event_route[E_UL_AOR_INSERT] { }", "event_route", "E_UL_AOR_INSERT", ()),
    ("event_route[E_PIKE_BLOCKED, async] { }", "event_route", "E_PIKE_BLOCKED", ("async",)),
])
def test_route_kinds(text, kind, name, params):
    (route,) = parse_text(text).items
    assert (route.kind, route.name, route.params) == (kind, name, params)


# --- statements ----------------------------------------------------------------------------

def test_if_else_chain_and_dangling_else():
    (stmt,) = body("if (a()) if (b()) c(); else d();")
    assert stmt.orelse is None and stmt.then.orelse is not None  # else binds to the nearest if
    (stmt,) = body("if (a()) { x(); } else if (b()) { y(); } else { z(); }")
    assert isinstance(stmt.orelse, A.If) and isinstance(stmt.orelse.orelse, A.Block)


def test_switch_case_default_break():
    (sw,) = body('switch ($rU) { case "a": x(); break; case -1: y(); default: z(); }')
    assert [c.value for c in sw.cases] == [A.Str("a"), A.Num(-1), None]
    assert isinstance(sw.cases[0].body[-1], A.Break)


def test_while_and_foreach():
    w, f = body("while ($var(i) < 10) { $var(i) = $var(i) + 1; }\n"
                "for ($var(c) in $(avp(x)[*])) { xlog(\"$var(c)\"); }")
    assert isinstance(w, A.While) and isinstance(w.cond, A.Compare)
    assert isinstance(f, A.ForEach) and f.iterable.index == "*"


@pytest.mark.parametrize("src,value,extra", [
    ("return;", None, ()),
    ("return();", None, ()),
    ("return(1);", A.Num(1), ()),
    ("return -1;", A.Num(-1), ()),
    ("return($var(x));", "pv", ()),
    ("return(0, $var(a), \"b\");", A.Num(0), 2),
])
def test_return_forms(src, value, extra):
    (ret,) = body(src)
    if value == "pv":
        assert isinstance(ret.value, A.PV)
    else:
        assert ret.value == value
    assert len(ret.extra) == (extra if isinstance(extra, int) else 0)


def test_exit_drop_break_and_old_semicolons():
    stmts = body("exit; exit(); drop; drop(); break; if (a()) { b(); };")
    assert [type(s) for s in stmts] == [A.Exit, A.Exit, A.Drop, A.Drop, A.Break, A.If]
    script = parse_text("route { x(); };\nroute[a] { };\n")
    assert len(script.routes) == 2


@pytest.mark.parametrize("op", ["=", ":=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^="])
def test_assignment_operators(op):
    (a,) = body(f"$var(x) {op} 2;")
    assert isinstance(a, A.Assign) and a.op == op


def test_assign_null_and_avp_index():
    a, b = body("$avp(x) = NULL; $(avp(x)[1]) = \"v\";")
    assert isinstance(a.value, A.Null)
    assert b.target.index == 1


def test_route_calls_async_launch():
    r1, r2, r3, a, l = body('route(relay); route(chk, 1, "two", $var(x)); route("dyn_$rm");\n'
                            'async(rest_get("http://x", $var(b)), resume, 5);\n'
                            'launch(exec("ls"), done, "p");')
    assert r1.expr == A.RouteCall("relay", ())
    assert len(r2.expr.args) == 3
    assert isinstance(r3.expr.name, A.Str)
    assert isinstance(a.expr, A.Async) and a.expr.route == "resume" and a.expr.timeout == A.Num(5)
    assert isinstance(l.expr, A.Launch) and l.expr.param == A.Str("p")


def test_arguments_forms():
    (s,) = body('f("s", 404, -1, $var(x), , NULL, \'raw\\n\', udp:1.2.3.4:5060);')
    args = s.expr.args
    assert args[0] == A.Str("s") and args[1] == A.Num(404) and args[2] == A.Num(-1)
    assert isinstance(args[3], A.PV) and isinstance(args[4], A.Empty)
    assert isinstance(args[5], A.Null) and args[6] == A.Str("raw\\n")
    assert args[7] == A.Str("udp:1.2.3.4:5060")
    (s,) = body("t_relay(, \"udp:1.2.3.4\");")
    assert isinstance(s.expr.args[0], A.Empty)
    (s,) = body("f();")
    assert s.expr.args == ()


def test_xlog_folded_strings_and_escapes():
    (s,) = body('xlog("L_INFO", "a" "b\\t\\x41\\101\\d");')
    assert s.expr.args[1].value == "ab\tAA\\d"  # unknown escapes are kept (regexes use them)


# --- expressions ---------------------------------------------------------------------------

def test_or_and_share_one_level_in_opensips():
    e = expr("a() || b() && c()")
    assert e.op == "&&" and e.left.op == "||"  # (a || b) && c


def test_and_binds_tighter_in_kamailio():
    e = expr("a() || b() && c()", "#!KAMAILIO\n")
    assert e.op == "||" and e.right.op == "&&"


def test_arithmetic_has_one_level_in_opensips():
    (a,) = body("$var(x) = 1 + 2 * 3;")
    assert a.value.op == "*" and a.value.left.op == "+"  # (1 + 2) * 3 == 9
    e = expr("[1 + 2 * 3]")
    assert isinstance(e, A.Bracket) and e.expr.op == "*"
    (a,) = body("$var(x) = 1 | 2 + 3;")
    assert a.value.op == "|"  # bitwise ops are one level below + - * / %


def test_kamailio_arithmetic_precedence():
    (a,) = parse_text("#!KAMAILIO\nrequest_route { $var(x) = 1 + 2 * 3; }").routes[0].body.body
    assert a.value.op == "+"


@pytest.mark.parametrize("src,cls,op", [
    ("$rU == \"x\"", A.Compare, "=="),
    ("$ru =~ \"^sip:\"", A.Compare, "=~"),
    ("$var(n) >= 3", A.Compare, ">="),
    ("$si == 10.0.0.0/8", A.Compare, "=="),
    ("$si != 192.168.0.0/255.255.0.0", A.Compare, "!="),
    ("$avp(x) == NULL", A.Compare, "=="),
    ("!is_method(\"INVITE\")", A.Not, None),
    ("not has_totag()", A.Not, None),
    ("$var(a) and $var(b)", A.Logic, "&&"),
])
def test_condition_forms(src, cls, op):
    e = expr(src)
    assert isinstance(e, cls)
    if op:
        assert e.op == op


def test_ipnet_literal():
    e = expr("$si == 10.0.0.0/8")
    assert e.right == A.IPNet("10.0.0.0/8")


@pytest.mark.parametrize("src,name", [
    ('method == "INVITE"', "method"),
    ("uri == myself", "uri"),
    ("src_ip == 10.0.0.1", "src_ip"),
    ('status =~ "^2"', "status"),
    ("msg:len > 4096", "msg:len"),
    ("af == INET", "af"),
    ("proto == UDP", "proto"),
    ("from_uri != myself", "from_uri"),
])
def test_legacy_core_tests(src, name):
    e = expr(src)
    assert isinstance(e.left, A.LegacyTest) and e.left.name == name


def test_myself_and_bare_words():
    e = expr("uri == myself")
    assert e.right == A.Name("myself")
    e = expr("method == INVITE")
    assert e.right == A.Name("INVITE")


def test_kamailio_extras():
    src = ("#!KAMAILIO\n#!define FLT_NATS 5\n#!substdef \"!MY_IP!10.1.1.1!g\"\n"
           "listen=udp:MY_IP:5060\n"
           "request_route {\n setflag(FLT_NATS);\n"
           " if (defined $var(x) && strempty($var(y))) exit;\n"
           " $var(h) = $sht(ipban=>$si);\n $var(v) = $xavp(a=>b);\n"
           " $var(s) = @contact.uri.hostport;\n"
           " // a Kamailio comment\n"
           " xlog(\"ip MY_IP\\n\");\n}\n"
           "reply_route { }\nonsend_route { }\nevent_route[xhttp:request] { }\n")
    script = parse_text(src)
    assert script.dialect == "kamailio"
    (listen,) = [i for i in script.items if isinstance(i, A.GlobalParam)]
    assert listen.value.host == "10.1.1.1"
    setflag, cond, sht, xavp, sel, xlog = script.routes[0].body.body
    assert setflag.expr.args == (A.Num(5),)
    assert cond.cond.left.op == "defined"
    assert sht.value.name == "sht" and sht.value.sub == "ipban=>$si"
    assert xavp.value.sub == "a=>b"
    assert sel.value.name == "sel"
    assert xlog.expr.args[0].value == "ip 10.1.1.1\n"
    assert [r.kind for r in script.routes] == ["route", "onreply_route", "onsend_route",
                                                "event_route"]
    assert script.routes[3].name == "xhttp:request"


def test_kamailio_ifdef():
    src = ("#!KAMAILIO\n#!define WITH_AUTH\n#!ifdef WITH_AUTH\nloadmodule \"auth.so\"\n"
           "#!else\nloadmodule \"noauth.so\"\n#!endif\n#!ifndef WITH_AUTH\nloadmodule \"x.so\"\n"
           "#!endif\n#!trydef WITH_AUTH 2\n")
    assert [m.module for m in parse_text(src).modules] == ["auth"]


# --- pseudo-variables ----------------------------------------------------------------------

@pytest.mark.parametrize("text,name,sub,index,trs,ctx", [
    ("$ru", "ru", None, None, (), None),
    ("$avp(s:x)", "avp", "s:x", None, (), None),  # 1.x prefix kept as part of the name
    ("$hdr(From)", "hdr", "From", None, (), None),
    ("$(avp(x)[2]{s.len})", "avp", "x", 2, ("s.len",), None),
    ("$(hdr(Via)[-1])", "hdr", "Via", -1, (), None),
    ("$(ct[*])", "ct", None, "*", (), None),
    ("$(<request>ru)", "ru", None, None, (), "request"),
    ("$(ru{uri.user}{s.tolower})", "ru", None, None, ("uri.user", "s.tolower"), None),
    ("$msg.flag(X)", "msg.flag", "X", None, (), None),
])
def test_pv_specs(text, name, sub, index, trs, ctx):
    pv = parse_pv(text)
    assert (pv.name, pv.sub, pv.index, tuple(t.name for t in pv.transforms), pv.context) == \
        (name, sub, index, trs, ctx)


def test_pv_nested_and_transform_params():
    pv = parse_pv("$avp($var(n))")
    assert isinstance(pv.sub, A.PV) and pv.sub.name == "var"
    pv = parse_pv("$(var(x){s.substr,1,$var(len)}{re.subst,/a,b/c/g}{s.select,0,,})")
    sub, rs, sel = pv.transforms
    assert sub.params[0] == A.Num(1) and isinstance(sub.params[1], A.PV)
    assert rs.params == (A.Str("/a,b/c/g"),)
    assert sel.params == (A.Num(0), A.Str(","))


def test_format_strings():
    parts = parse_format("from $fu to $(tu{uri.user}) cost $$5 $avp(x)\n")
    assert parts[0] == "from " and parts[1].name == "fu"
    assert parts[3].transforms[0].name == "uri.user"
    assert " cost $5 " in parts and parts[-1] == "\n"


# --- diagnostics ---------------------------------------------------------------------------

def test_error_position_and_caret(tmp_path):
    f = tmp_path / "a.cfg"
    f.write_text("route {\n    if ($x == ) exit;\n}\n")
    with pytest.raises(CfgError) as e:
        from cfgscript import parse_file
        parse_file(str(f))
    d = e.value.diagnostics[0]
    assert (d.pos.file, d.pos.line, d.pos.col) == (str(f), 2, 15)
    text = d.render()
    assert text.startswith(f"{f}:2:15: error: unexpected ')'")
    assert "    if ($x == ) exit;\n" in text and "\n" + " " * 16 + "^" in text


def test_error_says_what_was_expected():
    d = error("route { xlog(\"x\") }")
    assert "missing ';'" in d.message or "expected" in " ".join(d.notes)


def test_missing_paren_points_at_end_of_line():
    d = error('modparam("uri", "x", 0\nloadmodule "tm.so"\n')
    assert d.message == "missing ')' at end of line" and (d.pos.line, d.pos.col) == (1, 23)


def test_unbalanced_braces_named():
    d = error("route {\n  if (a()) { b(); } }\n  else { c(); }\n}\n")
    assert "'else' outside a route block" in d.message and "line 2" in d.message


def test_bare_word_and_double_slash():
    assert "bare word" in error("route { foo; }").message
    assert "'//' is not a comment" in error("route {\n // x\n}").message


def test_bad_pv_is_reported_with_position():
    d = error("route {\n  $var(x) = $(ru{s.len);\n}\n")
    assert d.pos.line == 2


def test_positions_through_includes(tmp_path):
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "part.cfg").write_text("route[x] {\n  exit;\n  oops\n}\n")
    main = tmp_path / "main.cfg"
    main.write_text('log_level=3\ninclude_file "inc/part.cfg"\nroute { route(x); }\n')
    with pytest.raises(CfgError) as e:
        from cfgscript import parse_file
        parse_file(str(main))
    d = e.value.diagnostics[0]
    assert d.pos.file.endswith("inc/part.cfg") and d.pos.line == 4


def test_positions_through_kamailio_defines():
    d = error("#!KAMAILIO\n#!define LONG_VALUE_NAME 1\nrequest_route {\n"
              "  setflag(LONG_VALUE_NAME) x;\n}\n")
    assert (d.pos.line, d.pos.col) == (4, 28)


def test_missing_include_is_an_error_unless_lenient(tmp_path):
    main = tmp_path / "m.cfg"
    main.write_text('include_file "nope.cfg"\nroute { exit; }\n')
    from cfgscript import parse_file
    with pytest.raises(CfgError) as e:
        parse_file(str(main))
    assert "cannot open 'nope.cfg'" in e.value.diagnostics[0].message
    assert parse_file(str(main), lenient_includes=True).routes
