"""Import pysipp 0.1.0 (the only release on PyPI) next to pytest's pluggy >= 1.

`load()` returns the `pysipp` package with these fixes applied (the first two are on
pysipp's master, which was never released):

- pluggy 1.0 dropped `PluginManager(implprefix=...)`; pysipp 0.1.0 passes it at import time.
  A subclass accepts it and keeps its meaning: a plain `pysipp_*` function in a registered
  module (a `pysipp_conf.py`) is a hook implementation without a marker.
- `imp` (removed in Python 3.12) and `distutils.spawn` (removed with distutils) get small
  stand-ins when missing.
- `UserAgent.logdir = ...` raised "no settable public attribute '_logdir'".
- pysipp logs whole SIPp log files as warnings (with the deprecated `Logger.warn`), which
  Python's last-resort handler, or pytest's log capture, printed: its logger's level is
  ERROR (lower it to see them); our failure reports carry what matters.
- `netplug` bound its probe sockets on every interface and handed SIPp `-i 0.0.0.0`; it now
  uses the scenario's `local_host` (default 127.0.0.1).
"""
from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import shutil
import socket
import sys
import threading
import types
import warnings

DEFAULT_HOST = "127.0.0.1"
_lock = threading.Lock()


def load():
    """The patched `pysipp` module (imported once)."""
    with _lock:
        if "pysipp" in sys.modules and getattr(sys.modules["pysipp"], "_cfgscript_compat", False):
            return sys.modules["pysipp"]
        _stub_removed_stdlib()
        import pluggy
        original = pluggy.PluginManager
        pluggy.PluginManager = _prefix_manager(original)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pysipp
        finally:
            pluggy.PluginManager = original
        _quiet_logger(logging.getLogger("pysipp"))
        _fix_logdir(pysipp.agent.UserAgent)
        _fix_netplug(pysipp)
        pysipp._cfgscript_compat = True
        return pysipp


def _prefix_manager(base):
    """A PluginManager that accepts pluggy 0.x's `implprefix`."""

    class PrefixPluginManager(base):
        def __init__(self, project_name, implprefix=None):
            super().__init__(project_name)
            self.implprefix = implprefix

        def parse_hookimpl_opts(self, plugin, name):
            opts = super().parse_hookimpl_opts(plugin, name)
            if (opts is None and self.implprefix and name.startswith(self.implprefix)
                    and inspect.isfunction(getattr(plugin, name, None))):
                opts = {}
            return opts

    return PrefixPluginManager


def _stub_removed_stdlib():
    if importlib.util.find_spec("imp") is None:
        imp = types.ModuleType("imp")

        def load_source(name, path):
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[name] = module
            return module

        imp.load_source = load_source
        sys.modules["imp"] = imp
    if importlib.util.find_spec("distutils") is None:
        distutils = types.ModuleType("distutils")
        spawn = types.ModuleType("distutils.spawn")
        spawn.find_executable = shutil.which
        distutils.spawn = spawn
        sys.modules.update({"distutils": distutils, "distutils.spawn": spawn})


def _quiet_logger(logger):
    logger.setLevel(logging.ERROR)
    logger.warn = logger.warning


def _fix_logdir(user_agent):
    def set_logdir(self, dirpath):
        if not os.path.isdir(dirpath):
            raise ValueError(f"{dirpath} is not a directory")
        object.__setattr__(self, "_logdir", dirpath)

    user_agent.logdir = property(user_agent.logdir.fget, set_logdir)


def _fix_netplug(pysipp):
    netplug = pysipp.netplug

    @pysipp.plugin.hookimpl
    def pysipp_conf_scen(agents, scen):
        """Give each agent without a socket a free port on the scenario's local_host."""
        default_host = scen.defaults.local_host or DEFAULT_HOST
        for ua in scen.agents.values():
            copy = scen.prepare_agent(ua)
            host = copy.local_host or default_host
            ua.local_host = host
            if not copy.local_port:
                ua.local_port = netplug.getsockaddr(host, socket.AF_INET)[1]
            if not copy.media_addr:
                ua.media_addr = host
            if not copy.media_port:
                ua.media_port = netplug.getsockaddr(ua.media_addr, socket.AF_INET)[1]

    netplug.pysipp_conf_scen = pysipp_conf_scen
