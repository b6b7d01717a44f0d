"""mi_fifo: the Management Interface over a named pipe, as opensips-cli uses it.

A client writes `:<reply fifo>:<JSON-RPC request>` into `fifo_name`; the reply goes to the
FIFO `<reply fifo>` in `reply_dir`, which the client created and reads (an empty name: no
reply). The reply FIFO must be a plain name (no '.', '/' or '\\'), and it is checked
before it is written (a FIFO, not a link, not hard-linked), as OpenSIPS checks it.

    modparam("mi_fifo", "fifo_name", "/tmp/opensips_fifo")   # the default
    modparam("mi_fifo", "fifo_mode", 0660)                   # the default
    modparam("mi_fifo", "reply_dir", "/tmp/")                # the default

Requests are read on the proxy's event loop; each command runs as its own task. A request
that is not JSON gets the JSON-RPC "Parse error" reply (OpenSIPS sends nothing back, and
the client waits forever).
"""
from __future__ import annotations

import asyncio
import errno
import os
import stat

from runtime import mi
from runtime.module import Module, Param

exports = Module(
    name="mi_fifo",
    params=[
        Param("fifo_name", str, "/tmp/opensips_fifo"),
        Param("fifo_mode", int, 0o660),
        Param("fifo_group", (int, str), None),
        Param("fifo_user", (int, str), None),
        Param("reply_dir", str, "/tmp/"),
        Param("pretty_printing", int, 0),
        Param("trace_destination", str, None),
        Param("trace_bwlist", str, None),
        Param("reply_indent", str, None),       # 1.x text replies; nothing to indent in JSON
    ],
    init="init",
    child_init="child_init",
    destroy="destroy",
)

REPLY_OPEN_TRIES = 25        # the client opens its reply FIFO after writing the request
REPLY_OPEN_WAIT = 0.08       # seconds between tries (OpenSIPS: 80 ms)
REPLY_WRITE_TIMEOUT = 10.0   # a client that stops reading is given up
INCOMPLETE_WAIT = 1.0        # a request cut short is answered "Parse error" after this
MAX_BUFFER = 1 << 20
CHECK_INTERVAL = 5.0         # is the FIFO file still ours? (deleted or replaced: recreate)

_state = {"server": None}


class FifoServer:
    def __init__(self, rt, params):
        self.rt = rt
        self.path = params["fifo_name"]
        self.mode = params["fifo_mode"]
        self.reply_dir = params["reply_dir"]
        self.pretty = bool(params["pretty_printing"])
        self.uid, self.gid = -1, -1
        self.rfd = self.wfd = None
        self.ino = None
        self.buf = b""
        self.loop = None
        self.stale = None
        self.checker = None
        self.tasks = set()
        self._configure(params)

    # --- start-up ----------------------------------------------------------------------
    def _configure(self, params):
        log = self.rt.log
        if not self.path:
            raise ValueError("no fifo configured (fifo_name is empty)")
        if not self.reply_dir:
            raise ValueError("reply_dir is empty")
        if not self.mode:
            log.warning("cannot use fifo_mode 0, using rw-------", "mi_fifo")
            self.mode = 0o600
        user, group = params["fifo_user"], params["fifo_group"]
        if user not in (None, ""):
            self.uid, gid = _user(user)
            if self.uid == -1:
                log.warning(f"fifo_user '{user}': no such user, the FIFO keeps this "
                            f"process's owner", "mi_fifo")
            elif self.gid == -1:
                self.gid = gid
        if group not in (None, ""):
            gid = _group(group)
            if gid == -1:
                log.warning(f"fifo_group '{group}': no such group", "mi_fifo")
            else:
                self.gid = gid
        if params["trace_destination"]:
            log.warning("trace_destination: MI tracing is not supported, ignored", "mi_fifo")
        if params["reply_indent"] is not None:
            log.notice("reply_indent (OpenSIPS 1.x text replies) is ignored: the FIFO "
                       "speaks JSON-RPC", "mi_fifo")

    def environment_problem(self) -> str | None:
        """Why the FIFO cannot be served here (a missing directory, a path that is not a
        FIFO, a FIFO another live process serves), or None."""
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            return f"directory {folder} does not exist"
        if not os.path.isdir(self.reply_dir):
            return f"reply_dir {self.reply_dir} is not a directory"
        if os.path.lexists(self.path):
            if not stat.S_ISFIFO(os.lstat(self.path).st_mode):
                return f"{self.path} exists and is not a FIFO"
            if _has_reader(self.path):
                return f"{self.path} is served by another running process"
        return None

    def start(self, loop):
        """Serve the FIFO. A FIFO that cannot be served here is an error in the log, not
        a reason to stop the proxy (scripts name production paths; tests run several
        proxies on one machine)."""
        self.loop = loop
        problem = self.environment_problem()
        if problem is None:
            try:
                self._create()
            except OSError as e:
                problem = f"cannot create FIFO: {e.strerror} (mode={self.mode:o})"
        if problem is not None:
            self.rt.log.error(f"MI FIFO {self.path} is off: {problem}", "mi_fifo")
            self.loop = None
            return
        mi.add_process(self.rt, "MI FIFO")
        self.checker = loop.call_later(CHECK_INTERVAL, self._check)
        self.rt.log.info(f"MI FIFO listening on {self.path}", "mi_fifo")

    def _create(self):
        if os.path.lexists(self.path):
            os.unlink(self.path)
        os.mkfifo(self.path, self.mode)
        os.chmod(self.path, self.mode)
        if self.uid != -1 or self.gid != -1:
            try:
                os.chown(self.path, self.uid, self.gid)
            except OSError as e:
                self.rt.log.warning(f"cannot change the owner of {self.path} to "
                                    f"{self.uid}.{self.gid}: {e.strerror}", "mi_fifo")
        self.rfd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        # our own writer keeps the FIFO open between clients (no EOF storm)
        self.wfd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        st = os.fstat(self.rfd)
        self.ino = (st.st_dev, st.st_ino)
        self.loop.add_reader(self.rfd, self._readable)

    def _close_fds(self):
        if self.rfd is not None:
            try:
                self.loop.remove_reader(self.rfd)
            except (RuntimeError, ValueError):
                pass
            os.close(self.rfd)
            self.rfd = None
        if self.wfd is not None:
            os.close(self.wfd)
            self.wfd = None

    def _check(self):
        """The FIFO file was deleted or replaced: make a new one, as OpenSIPS does."""
        try:
            st = os.lstat(self.path)
            ours = stat.S_ISFIFO(st.st_mode) and (st.st_dev, st.st_ino) == self.ino
        except OSError:
            ours = False
        if not ours:
            if os.path.lexists(self.path) and _has_reader(self.path):
                self.rt.log.error(f"{self.path} was replaced by a FIFO another process "
                                  f"serves: MI FIFO is off", "mi_fifo")
                self._close_fds()
                self.checker = None
                return
            self.rt.log.info(f"invalid FIFO file: creating a new one ({self.path})",
                             "mi_fifo")
            self._close_fds()
            try:
                self._create()
            except OSError as e:
                self.rt.log.error(f"cannot recreate the FIFO {self.path}: {e}", "mi_fifo")
        self.checker = self.loop.call_later(CHECK_INTERVAL, self._check)

    def stop(self):
        if self.checker is not None:
            self.checker.cancel()
        if self.stale is not None:
            self.stale.cancel()
        self._close_fds()
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self.ino:
                os.unlink(self.path)
        except OSError:
            pass

    # --- requests ----------------------------------------------------------------------
    def _readable(self):
        while True:
            try:
                data = os.read(self.rfd, 65536)
            except BlockingIOError:
                break
            except OSError as e:
                self.rt.log.error(f"reading {self.path}: {e.strerror}", "mi_fifo")
                break
            if not data:
                break
            self.buf += data
        if len(self.buf) > MAX_BUFFER:
            self.rt.log.error("request too long, dropped", "mi_fifo")
            self.buf = b""
        self._parse()

    def _parse(self, give_up=False):
        """Take every complete `:file:{json}` command from the buffer."""
        if self.stale is not None:
            self.stale.cancel()
            self.stale = None
        while True:
            buf = self.buf.lstrip()
            if not buf:
                self.buf = b""
                return
            if buf[:1] != b":":
                self.rt.log.error(f"command must begin with ':': "
                                  f"[{buf[:60].decode('utf-8', 'replace')}]", "mi_fifo")
                self.buf = b""
                return
            sep = buf.find(b":", 1)
            if sep < 0:
                break                       # the reply file name is still coming
            name = buf[1:sep].decode("utf-8", "replace")
            body = buf[sep + 1:]
            text = body.decode("utf-8", "replace").lstrip()
            if name and any(c in name for c in "./\\"):
                self.rt.log.error(f"forbidden filename: {name}", "mi_fifo")
                self.buf = b""
                return
            if not text:
                break                       # the command is still coming
            try:
                obj, end = mi.DECODER.raw_decode(text)
            except (ValueError, RecursionError) as e:
                if not give_up and _incomplete(e, text):
                    break
                self.rt.log.error(f"cannot parse command: {text[:200]!r}", "mi_fifo")
                self.buf = b""
                self._spawn(name, mi.Request(error=mi.PARSE_ERROR))
                return
            rest = text[end:].encode("utf-8")
            self.buf = rest
            self._spawn(name, mi.check_request(obj))
        if self.buf.strip():
            self.stale = self.loop.call_later(INCOMPLETE_WAIT, self._parse, True)

    def _spawn(self, name, req):
        task = self.loop.create_task(self._run(name, req))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, name, req):
        try:
            reply = await mi.handle_request(self.rt, req, self.pretty)
        except Exception as e:      # never let one command stop the FIFO server
            self.rt.log.error(f"MI FIFO command failed: {e!r}", "mi_fifo")
            reply = mi.dumps({"jsonrpc": "2.0", "error": {"code": mi.SERVER_ERROR[0],
                                                          "message": mi.SERVER_ERROR[1]},
                              "id": None})
        if not name:
            return                          # no reply expected
        await self._reply(os.path.join(self.reply_dir, name), reply or "")

    async def _reply(self, path, text):
        fd = None
        for _ in range(REPLY_OPEN_TRIES):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as e:
                if e.errno != errno.ENXIO:
                    self.rt.log.error(f"open error ({path}): {e.strerror}", "mi_fifo")
                    return
            await asyncio.sleep(REPLY_OPEN_WAIT)
        if fd is None:
            self.rt.log.notice(f"no client at {path}", "mi_fifo")
            return
        try:
            problem = _reply_fifo_problem(fd, path)
            if problem:
                self.rt.log.error(f"security: {problem}", "mi_fifo")
                return
            await asyncio.wait_for(self._write(fd, text.encode("utf-8")),
                                   REPLY_WRITE_TIMEOUT)
        except asyncio.TimeoutError:
            self.rt.log.error(f"the client at {path} does not read its reply", "mi_fifo")
        except OSError as e:
            self.rt.log.error(f"writing the reply to {path}: {e.strerror}", "mi_fifo")
        finally:
            os.close(fd)

    async def _write(self, fd, data):
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
                view = view[n:]
            except BlockingIOError:
                ready = self.loop.create_future()
                self.loop.add_writer(fd, lambda: ready.done() or ready.set_result(None))
                try:
                    await ready
                finally:
                    self.loop.remove_writer(fd)


def _has_reader(path) -> bool:
    """Does a live process read this FIFO? (Opening it for writing without blocking
    succeeds only then.)"""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    os.close(fd)
    return True


def _incomplete(err, text) -> bool:
    """Is this JSON cut short (more may come) rather than wrong?"""
    msg = getattr(err, "msg", "")
    pos = getattr(err, "pos", 0)
    return msg.startswith("Unterminated string") or pos >= len(text.rstrip())


def _reply_fifo_problem(fd, path) -> str | None:
    st = os.fstat(fd)
    if not stat.S_ISFIFO(st.st_mode):
        return f"{path} is not a fifo"
    if st.st_nlink > 1:
        return f"{path} is hard-linked {st.st_nlink} times"
    lst = os.lstat(path)
    if stat.S_ISLNK(lst.st_mode):
        return f"{path} is a soft link"
    if (lst.st_dev, lst.st_ino) != (st.st_dev, st.st_ino):
        return f"inode/dev number differ ({path})"
    return None


def _user(user):
    import pwd
    if isinstance(user, str) and user.strip().isdigit():
        user = int(user)
    try:
        pw = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(str(user))
    except (KeyError, OverflowError):
        return -1, -1
    return pw.pw_uid, pw.pw_gid


def _group(group):
    import grp
    if isinstance(group, str) and group.strip().isdigit():
        group = int(group)
    try:
        gr = grp.getgrgid(group) if isinstance(group, int) else grp.getgrnam(str(group))
    except (KeyError, OverflowError):
        return -1
    return gr.gr_gid


def init(rt):
    _state["server"] = FifoServer(rt, rt.modparams["mi_fifo"])


def child_init(rt):
    server = _state["server"]
    if server is None:
        server = _state["server"] = FifoServer(rt, rt.modparams["mi_fifo"])
    server.start(rt.server.loop)


def destroy(rt):
    server = _state.pop("server", None)
    _state["server"] = None
    if server is not None and server.loop is not None:
        server.stop()
