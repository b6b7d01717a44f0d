"""AST to Python: one function per route block, arguments fixed up once at load.

The generated source is kept (`Compiled.source`) with a line table back to the script, so a
traceback, `--trace` and script coverage all speak in cfg file:line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from cfgscript import ast as A
from cfgscript.diagnostics import Diagnostic

from . import values as V
from .context import ArgError, ScriptExit
from .module import (ALL, ANY, INT, REGEX, ROUTE_TYPE_NAMES, STATIC, STR, STR_NO_EXPAND, VAR,
                     Func)
from .pv import BoundPV, Format, PVError, bind, parse_pv_text
from .transforms import TransformError

GENERATED_FILE = "<cfgscript-routes>"

# 1.x/2.x core tests -> the PV they read
LEGACY_PV = {"method": "rm", "uri": "ru", "from_uri": "fu", "to_uri": "tu", "src_ip": "si",
             "src_port": "sp", "dst_ip": "Ri", "dst_port": "Rp", "proto": "pr", "af": "af",
             "msg:len": "ml", "status": "rs", "snd_ip": "Ri", "snd_port": "Rp", "to_ip": "si",
             "to_port": "sp", "rcv_ip": "Ri", "rcv_port": "Rp", "snd_proto": "pr", "snd_af": "af",
             "uri:host": "rd", "uri:port": "rp"}


class CompileError(Exception):
    def __init__(self, message, pos):
        super().__init__(message)
        self.pos = pos


@dataclass
class RouteInfo:
    kind: str
    name: str | None
    fname: str            # Python function name
    ast: A.Route
    types: int = 0        # route types it runs as (sub-routes: union of its callers')


@dataclass
class Compiled:
    functions: dict       # (kind, name) -> python function
    source: str
    linetable: dict       # generated line -> (file, line)
    points: list          # coverage points: (file, line, kind) ; kind 'line' | 'then' | 'else' | 'case'
    ns: dict              # the generated code's globals (the server adds `_hit`)
    diagnostics: list = field(default_factory=list)


class Compiler:
    """Builds the Python source of every route of a script."""

    def __init__(self, resolver, *, dialect="opensips", instrument=False, max_while=10000):
        self.resolver = resolver          # resolves functions / PVs; see loader.Resolver
        self.dialect = dialect
        self.instrument = instrument
        self.max_while = max_while
        self.ns = {"_Exit": ScriptExit, "_ArgError": ArgError, "_ExprError": V.ExprError,
                   "_PVError": PVError}
        self.ns.update({
            "_truth": V.truth, "_cmp_str": V.cmp_str, "_cmp_int": V.cmp_int,
            "_cmp": V.cmp_values, "_cmp_rx": V.cmp_regex, "_cmp_null": V.cmp_null,
            "_cmp_net": V.cmp_net, "_binop": V.binop, "_unop": V.unop,
            "_NOT": {1: 0, 0: 1, -1: -1}, "_fc": _fcond, "_bracket": _bracket,
            "_to_int": _arg_int, "_to_str": V.to_str, "_set": _assign, "_experr": _expr_error,
            "_loop_guard": _loop_guard, "_switch_match": _switch_match,
        })
        self.out = []
        self.linetable = {}
        self.points = []
        self.diagnostics = []
        self._n = 0
        self.routes: dict = {}            # (kind, name) -> RouteInfo
        self.current: RouteInfo | None = None
        self.loop_depth = 0
        self.switch_depth = 0

    # --- names and constants ---------------------------------------------------------
    def _name(self, prefix):
        self._n += 1
        return f"{prefix}{self._n}"

    def const(self, value, prefix="_k"):
        if value is None or isinstance(value, (int, bool)):
            return repr(value)
        name = self._name(prefix)
        self.ns[name] = value
        return name

    def error(self, msg, pos, severity="error"):
        self.diagnostics.append(Diagnostic(severity, msg, pos))

    def emit(self, indent, line, pos=None):
        self.out.append("    " * indent + line)
        if pos is not None and pos.line:
            self.linetable[len(self.out)] = (pos.file, pos.line)

    def hit(self, indent, pos, kind="line"):
        if self.instrument and pos is not None and pos.line:
            self.points.append((pos.file, pos.line, kind))
            self.emit(indent, f"_hit(ctx, {len(self.points) - 1})", pos)

    # --- routes ----------------------------------------------------------------------
    def add_routes(self, routes):
        for r in routes:
            key = (r.kind, r.name)
            if key in self.routes:
                self.error(f"{r.kind}[{r.name}] is defined twice (first at "
                           f"{self.routes[key].ast.pos})" if r.name else
                           f"{r.kind} is defined twice", r.pos)
                continue
            safe = re.sub(r"\W", "_", f"{r.kind}_{r.name or ''}")
            self.routes[key] = RouteInfo(r.kind, r.name, self._name(f"{safe}__"), r)

    def sub_route(self, name):
        return self.routes.get(("route", name))

    def compile(self) -> Compiled:
        for info in self.routes.values():
            self.current = info
            self.emit(0, f"def {info.fname}(ctx):", info.ast.pos)
            self.hit(1, info.ast.pos)
            self.block(1, info.ast.body.body)
            self.emit(1, "return ctx.rc")
            self.emit(0, "")
        source = "\n".join(self.out) + "\n"
        code = compile(source, GENERATED_FILE, "exec")
        exec(code, self.ns)
        funcs = {key: self.ns[info.fname] for key, info in self.routes.items()}
        return Compiled(funcs, source, self.linetable, self.points, self.ns, self.diagnostics)

    # --- statements ------------------------------------------------------------------
    def block(self, ind, stmts):
        if not stmts:
            self.emit(ind, "pass")
            return
        for s in stmts:
            try:
                self.stmt(ind, s)
            except CompileError as e:
                self.error(str(e), e.pos)
                self.emit(ind, "pass")

    def body(self, ind, node):
        if node is None:
            self.emit(ind, "pass")
        elif isinstance(node, A.Block):
            self.block(ind, node.body)
        else:
            self.block(ind, [node])

    def stmt(self, ind, s):
        pos = s.pos
        if not isinstance(s, A.Block):
            self.hit(ind, pos)
        if isinstance(s, A.ExprStmt):
            self.call_stmt(ind, s.expr)
        elif isinstance(s, A.Assign):
            self.assign(ind, s)
        elif isinstance(s, A.If):
            cond = self.cond(s.cond)
            self.emit(ind, f"if {cond} == 1:", pos)
            self.hit(ind + 1, pos, "then")  # branch points sit on the if's own line
            self.body(ind + 1, s.then)
            if s.orelse is not None or self.instrument:
                self.emit(ind, "else:")
                self.hit(ind + 1, pos, "else")
                self.body(ind + 1, s.orelse)
        elif isinstance(s, A.Block):
            self.block(ind, s.body)
        elif isinstance(s, A.While):
            n = self._name("_n")
            self.emit(ind, f"{n} = 0", pos)
            self.emit(ind, f"while {self.cond(s.cond)} == 1:", pos)
            self.emit(ind + 1, f"{n} += 1")
            self.emit(ind + 1, f"if {n} > {self.max_while}:")
            self.emit(ind + 2, f"_loop_guard(ctx, {self.const(pos)})")
            self.emit(ind + 2, "break")
            self.loop_depth += 1
            self.body(ind + 1, s.body)
            self.loop_depth -= 1
        elif isinstance(s, A.ForEach):
            var = self.pv(s.var, writable=True)
            it = self.pv(s.iterable)
            if s.iterable.index != "*":
                raise CompileError("for-each must be used on a [*] index", s.iterable.pos)
            x = self._name("_x")
            self.emit(ind, f"for {x} in {self.const(it)}.values(ctx):", pos)
            self.emit(ind + 1, f"{self.const(var)}.set(ctx, {x})")
            self.loop_depth += 1
            self.body(ind + 1, s.body)
            self.loop_depth -= 1
        elif isinstance(s, A.Switch):
            self.switch(ind, s)
        elif isinstance(s, A.Return):
            self.return_(ind, s)
        elif isinstance(s, A.Exit):
            self.emit(ind, "raise _Exit", pos)
        elif isinstance(s, A.Drop):
            self.emit(ind, "ctx.dropped = True", pos)
            self.emit(ind, "raise _Exit", pos)
        elif isinstance(s, A.Break):
            if self.loop_depth or self.switch_depth:
                self.emit(ind, "break", pos)
            else:  # 1.x: `break;` ends the route
                self.emit(ind, "return ctx.rc", pos)
        else:
            raise CompileError(f"unsupported statement {type(s).__name__}", pos)

    def switch(self, ind, s):
        subject = self.value(s.subject)
        labels = []
        for i, c in enumerate(s.cases):
            if c.value is None:
                if i != len(s.cases) - 1:
                    raise CompileError("'default' must be the last case", c.pos)
                labels.append(None)
            elif isinstance(c.value, (A.Str, A.Num, A.Name)):
                labels.append(c.value.value if not isinstance(c.value, A.Name) else c.value.name)
            else:
                raise CompileError("a case label must be a string or a number", c.pos)
        m = self._name("_m")
        self.emit(ind, f"{m} = _switch_match({subject}, {self.const(tuple(labels))})", s.pos)
        self.emit(ind, "while True:")
        self.switch_depth += 1
        saved_loop, self.loop_depth = self.loop_depth, 0
        for i, c in enumerate(s.cases):
            self.emit(ind + 1, f"if {m} <= {i}:", c.pos)
            self.hit(ind + 2, c.pos, "case")
            self.block(ind + 2, c.body)
        self.loop_depth = saved_loop
        self.switch_depth -= 1
        self.emit(ind + 1, "break")

    def return_(self, ind, s):
        if s.extra:
            vals = ", ".join(self.value(v) for v in s.extra)
            self.emit(ind, f"ctx.returns = ({vals},)", s.pos)
        if s.value is None:
            self.emit(ind, "ctx.rc = 1", s.pos)
            self.emit(ind, "return 1")
            return
        if isinstance(s.value, A.Num):
            if s.value.value == 0:
                self.emit(ind, "ctx.rc = 0", s.pos)
                self.emit(ind, "raise _Exit")
                return
            self.emit(ind, f"ctx.rc = {s.value.value}", s.pos)
            self.emit(ind, f"return {s.value.value}")
            return
        v = self._name("_v")
        self.emit(ind, f"{v} = _return_value({self.value(s.value)})", s.pos)
        self.ns["_return_value"] = _return_value
        self.emit(ind, f"ctx.rc = {v}")
        self.emit(ind, f"if {v} == 0: raise _Exit")
        self.emit(ind, f"return {v}")

    def assign(self, ind, s):
        target = self.pv(s.target, writable=True)
        if s.target.transforms:
            raise CompileError("cannot assign to a pseudo-variable with transformations",
                               s.target.pos)
        t = self.const(target)
        if isinstance(s.value, A.Null):
            if s.op not in ("=", ":="):
                raise CompileError(f"'{s.op} NULL' is not allowed", s.pos)
            self.emit(ind, f"_set(ctx, {t}, None, {s.op!r}, {self.const(s.pos)})", s.pos)
            return
        value = self.value(s.value)
        if s.op not in ("=", ":="):
            op = s.op[:-1]
            value = f"_compound({op!r}, {t}.get(ctx), {value})"
            self.ns["_compound"] = _compound
        self.emit(ind, "try:", s.pos)
        self.emit(ind + 1, f"_set(ctx, {t}, {value}, {s.op!r}, {self.const(s.pos)})", s.pos)
        self.emit(ind, "except _ExprError as e:")
        self.emit(ind + 1, f"_experr(ctx, e, {self.const(s.pos)})")

    def call_stmt(self, ind, e):
        code, may_fail = self.call(e, statement=True)
        r = "_r"
        if may_fail:
            self.emit(ind, "try:", e.pos)
            self.emit(ind + 1, f"{r} = {code}", e.pos)
            self.emit(ind, "except _ArgError:")
            self.emit(ind + 1, f"{r} = -1")
        else:
            self.emit(ind, f"{r} = {code}", e.pos)
        self.emit(ind, f"ctx.rc = {r}")
        self.emit(ind, f"if not {r}: raise _Exit")

    # --- calls -----------------------------------------------------------------------
    def call(self, e, statement=False):
        """(python expression, may raise ArgError) for a function or route call."""
        if isinstance(e, A.RouteCall):
            return self.route_call(e), False
        if isinstance(e, (A.Async, A.Launch)):
            return self.async_call(e), False
        if not isinstance(e, A.Call):
            raise CompileError("a statement must be a function call or an assignment", e.pos)
        func, fixed = self.resolver.function(e, self.current)
        if func is None:
            return "-1", False
        f = self.const(func.impl, "_f")
        args = []
        may_fail = False
        for val in fixed:
            if isinstance(val, _Dynamic):
                args.append(f"{self.const(val.getter, '_g')}(ctx)")
                may_fail = True
            else:
                args.append(self.const(val, "_c"))
        return f"{f}(ctx{''.join(', ' + a for a in args)})", may_fail

    def route_call(self, e):
        args = tuple(self.value(a) for a in e.args)
        argtuple = f"({', '.join(args)}{',' if len(args) == 1 else ''})"
        self.ns["_call_route"] = _call_route
        if isinstance(e.name, str):
            info = self.sub_route(e.name)
            if info is None:
                raise CompileError(f"route '{e.name}' is not defined"
                                   + self.resolver.route_hint(e.name), e.pos)
            self.resolver.note_route_call(self.current, info)
            return f"_call_route(ctx, {info.fname}, {e.name!r}, {argtuple})"
        name = self.value(e.name)
        self.ns["_call_dynamic_route"] = _call_dynamic_route
        return f"_call_dynamic_route(ctx, {name}, {argtuple}, {self.const(e.pos)})"

    def async_call(self, e):
        """async(): run the function, then the resume route (no real suspension yet);
        launch(): run the function, then the report route, and go on."""
        code, _ = self.call(e.call)
        route = "None"
        if e.route is not None:
            info = self.sub_route(e.route)
            if info is None:
                raise CompileError(f"route '{e.route}' is not defined", e.pos)
            self.resolver.note_route_call(self.current, info)
            route = info.fname
        self.ns["_run_async"] = _run_async
        return f"_run_async(ctx, {code}, {route}, {isinstance(e, A.Async)})"

    # --- conditions (1 / 0 / -1) -------------------------------------------------------
    def cond(self, e) -> str:
        if isinstance(e, A.Logic):
            t = self._name("_t")
            left, right = self.cond(e.left), self.cond(e.right)
            stop = 1 if e.op == "&&" else 0
            return f"({right} if ({t} := {left}) == {stop} else {t})"
        if isinstance(e, A.Not):
            return f"_NOT[{self.cond(e.operand)}]"
        if isinstance(e, (A.Call, A.RouteCall, A.Async)):
            code, may_fail = self.call(e)
            if may_fail:
                self.ns["_safe_call"] = _safe_call
                code = f"_safe_call(lambda: {code})"
            return f"_fc(ctx, {code})"
        if isinstance(e, A.Compare):
            return self.compare(e)
        if isinstance(e, A.Bracket):
            lone = isinstance(e.expr, A.PV)
            return f"_bracket(lambda: {self.value(e.expr)}, {lone})"
        if isinstance(e, A.Num):
            return "1" if e.value else "0"
        if isinstance(e, (A.PV, A.Str, A.Unary, A.BinOp, A.LegacyTest)):
            return f"_truth({self.value(e)})"
        if isinstance(e, A.Name):
            raise CompileError(f"bare word '{e.name}' in a condition", e.pos)
        raise CompileError(f"unsupported condition {type(e).__name__}", e.pos)

    def compare(self, e) -> str:
        op = e.op
        left, right = e.left, e.right
        if isinstance(left, A.Name) and left.name == "myself":
            left, right = right, left
        if isinstance(right, A.Name) and right.name == "myself":
            if op not in ("==", "!="):
                raise CompileError("only == and != compare with 'myself'", e.pos)
            self.ns["_is_myself"] = _is_myself
            kind = left.name if isinstance(left, A.LegacyTest) else "value"
            res = f"_is_myself(ctx, {kind!r}, {self.value(left)})"
            return res if op == "==" else f"_NOT[{res}]"
        lv = self.value(left)
        if self.dialect == "kamailio" and op in ("==", "!=") and not isinstance(right, A.Num):
            op = {"==": "eq", "!=": "ne"}[op]  # Kamailio compares strings case-sensitively
        if isinstance(right, A.Null):
            return f"_cmp_null({op!r}, {lv})"
        if isinstance(right, A.IPNet):
            try:
                net = V.parse_net(right.text)
            except ValueError:
                raise CompileError(f"invalid network '{right.text}'", right.pos)
            return f"_cmp_net({op!r}, {lv}, {self.const(net)})"
        if isinstance(right, A.Num):
            return f"_cmp_int({op!r}, {lv}, {right.value})"
        if isinstance(right, (A.Str, A.Name)):
            text = right.value if isinstance(right, A.Str) else right.name
            if op in ("=~", "!~"):
                try:
                    rx = V.compile_regex(text)
                except re.error as err:
                    raise CompileError(f"invalid regular expression '{text}': {err}", right.pos)
                return f"_cmp_rx({op == '!~'}, {lv}, {self.const(rx)})"
            return f"_cmp_str({op!r}, {lv}, {self.const(text)})"
        return f"_cmp({op!r}, {lv}, {self.value(right)})"

    # --- values ----------------------------------------------------------------------
    def value(self, e) -> str:
        if isinstance(e, A.Num):
            return repr(e.value)
        if isinstance(e, A.Str):
            return self.const(e.value)
        if isinstance(e, A.Null):
            return "None"
        if isinstance(e, A.PV):
            return f"{self.const(self.pv(e).get, '_p')}(ctx)"
        if isinstance(e, A.LegacyTest):
            return self.value(A.PV(LEGACY_PV[e.name], pos=e.pos))
        if isinstance(e, A.Name):
            return self.const(e.name)
        if isinstance(e, A.IPNet):
            return self.const(e.text)
        if isinstance(e, A.BinOp):
            lit = isinstance(e.right, A.Num)
            return f"_binop({e.op!r}, {self.value(e.left)}, {self.value(e.right)}, {lit})"
        if isinstance(e, A.Unary):
            return f"_unop({e.op!r}, {self.value(e.operand)})"
        if isinstance(e, (A.Compare, A.Logic, A.Not, A.Bracket)):
            return self.cond(e)
        if isinstance(e, (A.Call, A.RouteCall, A.Async)):
            code, may_fail = self.call(e)
            if may_fail:
                self.ns["_safe_call"] = _safe_call
                return f"_safe_call(lambda: {code})"
            return code
        if isinstance(e, A.Empty):
            return "None"
        raise CompileError(f"unsupported expression {type(e).__name__}", e.pos)

    def pv(self, e: A.PV, writable=False) -> BoundPV:
        try:
            b = self.resolver.pv(e)
        except (PVError, TransformError) as err:
            raise CompileError(str(err), e.pos)
        if writable and not b.writable:
            raise CompileError(f"'{b.text}' is read-only", e.pos)
        return b


class _Dynamic:
    """A fixed-up argument whose value is computed per call: `getter(ctx)`."""
    __slots__ = ("getter",)

    def __init__(self, getter):
        self.getter = getter


# --- helpers the generated code calls ------------------------------------------------------

def _fcond(ctx, r):
    """A function call used as a condition: >0 true, <0 false, 0 stops the script."""
    ctx.rc = r
    if r > 0:
        return 1
    if r < 0:
        return 0
    raise ScriptExit


def _safe_call(thunk):
    try:
        return thunk()
    except ArgError:
        return -1


def _bracket(thunk, lone):
    try:
        return V.bracket_truth(thunk(), lone)
    except V.ExprError:
        return -1


def _arg_int(v):
    i = V.to_int(v)
    if i is None:
        raise ArgError(f"'{v}' is not an integer")
    return i


def _return_value(v):
    if v is None:
        return -1
    i = V.to_int(v)
    return 1 if i is None else i


def _compound(op, old, value):
    if old is None or value is None:
        raise V.ExprError(f"'{op}=' on a NULL value")
    if old.__class__ is str and value.__class__ is str:
        if op != "+":
            raise V.ExprError(f"'{op}=' on strings")
        return old + value
    if (old.__class__ is int) != (value.__class__ is int):
        raise V.ExprError("unsupported operand types")
    return V.binop(op, old, value)


def _assign(ctx, target, value, op, pos):
    try:
        target.set(ctx, value, op)
        ctx.rc = 1
    except (PVError, ValueError) as e:
        ctx.rt.log.warning(f"{pos}: assignment to {target.text} failed: {e}")
        ctx.rc = -1


def _expr_error(ctx, err, pos):
    ctx.rt.log.warning(f"{pos}: expression error: {err}")
    ctx.rc = -1


def _loop_guard(ctx, pos):
    ctx.rt.log.error(f"{pos}: while loop exceeded max_while_loops, leaving it")


def _switch_match(v, labels):
    """Index of the first matching case (default counts), or len(labels)."""
    for i, lab in enumerate(labels):
        if lab is None:
            return i
        if v is None:
            continue
        if lab.__class__ is int:
            if V.to_int(v) == lab and (v.__class__ is int or isinstance(v, V.StrInt)):
                return i
        elif isinstance(v, str) and v.lower() == lab.lower():
            return i
    return len(labels)


def _call_route(ctx, fn, name, args):
    stack = ctx.route_stack
    if len(stack) > 100:
        ctx.rt.log.error(f"route recursion deeper than 100 at route[{name}]")
        return -1
    saved = ctx.params
    ctx.params = args
    stack.append((name, ctx.route_type))
    ctx.returns = ()
    try:
        return fn(ctx)
    finally:
        ctx.params = saved
        stack.pop()


def _call_dynamic_route(ctx, name, args, pos):
    fn = ctx.rt.routes.get(("route", V.to_str(name)))
    if fn is None:
        ctx.rt.log.error(f"{pos}: route '{name}' is not defined")
        return -1
    return _call_route(ctx, fn, V.to_str(name), args)


def _run_async(ctx, rc, resume, is_async):
    ctx.rc = rc
    if resume is not None:
        _call_route(ctx, resume, "resume", ())
    if is_async:
        raise ScriptExit
    return 1


def _is_myself(ctx, kind, value):
    rt = ctx.rt
    if kind in ("uri", "from_uri", "to_uri", "value") and value and ":" in str(value) \
            and not str(value).replace(".", "").replace(":", "").isdigit():
        from .pv import parse_uri
        u = parse_uri(str(value))
        if u is None:
            return 0
        return 1 if rt.is_myself(u.host, u.port or 0) else 0
    return 1 if value is not None and rt.is_myself(str(value), 0) else 0


def fixup_args(func: Func, call: A.Call, resolver):
    """Fix up a call's arguments against the function's declaration.
    Returns the list of fixed values (constants or _Dynamic) or raises CompileError."""
    decl = func.args
    args = list(call.args)
    if len(args) > len(decl):
        raise CompileError(f"too many arguments for '{func.name}' "
                           f"({len(args)} given, at most {len(decl)})", call.pos)
    fixed = []
    for i, spec in enumerate(decl):
        a = args[i] if i < len(args) else A.Empty(call.pos)
        if isinstance(a, A.Empty):
            if not spec.optional:
                raise CompileError(f"'{func.name}' needs argument {i + 1}"
                                   + (f" ({spec.name})" if spec.name else ""), call.pos)
            fixed.append(None)
            continue
        fixed.append(_fix_one(func, i, spec, a, resolver))
    return fixed


def _fix_one(func, i, spec, a, resolver):
    where = f"argument {i + 1} of '{func.name}'"
    kind = spec.kind
    fix = spec.fixup
    rt = resolver.rt

    def constant(v):
        if fix is None:
            return v
        try:
            return fix(v, rt)
        except ValueError as e:
            raise CompileError(f"{where}: {e}", a.pos)

    def dynamic(getter):
        if fix is None:
            return _Dynamic(getter)

        def fixed(ctx):
            try:
                return fix(getter(ctx), rt)
            except ValueError as e:
                raise ArgError(str(e))
        return _Dynamic(fixed)

    if isinstance(a, A.Null):
        return constant(None)
    if kind == VAR:
        if isinstance(a, A.Str) and a.value.startswith("$"):
            a = parse_pv_text(a.value)
        if not isinstance(a, A.PV):
            raise CompileError(f"{where} must be a pseudo-variable", a.pos)
        try:
            return constant(resolver.pv(a))
        except (PVError, TransformError) as e:
            raise CompileError(str(e), a.pos)
    if isinstance(a, A.PV):
        if kind == STATIC:
            raise CompileError(f"{where} must be a constant string, not a variable", a.pos)
        try:
            g = resolver.pv(a).get
        except (PVError, TransformError) as e:
            raise CompileError(str(e), a.pos)
        if kind == INT:
            return dynamic(lambda ctx: _arg_int(g(ctx)))
        if kind in (STR, STR_NO_EXPAND):
            return dynamic(lambda ctx: V.to_str(g(ctx)))
        if kind == REGEX:
            def rx(ctx):
                try:
                    return V.compile_regex(V.to_str(g(ctx)), newline=True)
                except re.error as e:
                    raise ArgError(str(e))
            return dynamic(rx)
        return dynamic(g)
    if isinstance(a, (A.Name, A.LegacyTest)):
        a = A.Str(a.name, a.pos)  # 1.x bare words: setflag(NAT), forward(uri:host)
    if isinstance(a, A.IPNet):
        a = A.Str(a.text, a.pos)
    if isinstance(a, A.Num):
        if kind == INT or kind == ANY:
            return constant(a.value)
        return constant(str(a.value))
    if not isinstance(a, A.Str):
        raise CompileError(f"{where}: expressions are not allowed here", a.pos)
    text = a.value
    if kind == INT:
        n = V.to_int(text)
        if n is None:
            if "$" in text:
                fmt = Format(text, resolver.pvdefs, resolver.dialect)
                return dynamic(lambda ctx: _arg_int(fmt.render(ctx)))
            raise CompileError(f"{where} must be an integer, not \"{text}\"", a.pos)
        resolver.warn(f"{where}: quoted number \"{text}\" taken as {n} "
                      f"(OpenSIPS 3.x wants it unquoted)", a.pos)
        return constant(n)
    if kind in (STATIC, STR_NO_EXPAND):
        return constant(text)
    if kind == REGEX:
        try:
            return constant(V.compile_regex(text, newline=True))
        except re.error as e:
            raise CompileError(f"{where}: invalid regular expression: {e}", a.pos)
    try:
        fmt = Format(text, resolver.pvdefs, resolver.dialect)
    except (PVError, TransformError, ValueError) as e:
        raise CompileError(f"{where}: {e}", a.pos)
    if fmt.constant:
        return constant("".join(fmt.parts))
    return dynamic(fmt.render)


def route_types_label(mask: int) -> str:
    return ", ".join(n for bit, n in ROUTE_TYPE_NAMES.items() if mask & bit) or "none"


__all__ = ["Compiler", "Compiled", "CompileError", "fixup_args", "GENERATED_FILE", "ALL"]
