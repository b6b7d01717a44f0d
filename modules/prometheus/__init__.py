"""prometheus: the statistics in Prometheus's text format, on httpd's server.

    loadmodule "httpd.so"
    loadmodule "prometheus.so"
    modparam("prometheus", "statistics", "core: tm:UAS_transactions")   # or "all"

GET http://127.0.0.1:8888/metrics gives, for each statistic, `# TYPE` (counter, or gauge
for the non-incremental ones) and its value, named `<prefix><delimiter><name>` (group_mode
1 puts the group in the name, group_mode 2 in a label), as OpenSIPS's prometheus module.
"""
from __future__ import annotations

import re

from runtime import stats
from runtime.module import Module, Param

exports = Module(
    name="prometheus",
    params=[
        Param("root", str, "metrics"),
        Param("prefix", str, "opensips"),
        Param("delimiter", str, "_"),
        Param("group_prefix", str, ""),
        Param("group_label", str, "group"),
        Param("group_mode", int, 0, check=lambda v: None if v in (0, 1, 2) else
              "must be 0 (none), 1 (name) or 2 (label)"),
        Param("statistics", str, multi=True),
    ],
    depends=("httpd",),
    init="init",
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BAD = re.compile(r"[^a-zA-Z0-9_:]")


class Exporter:
    def __init__(self, rt, params):
        self.rt = rt
        self.prefix = params["prefix"] or ""
        self.delim = params["delimiter"] or ""
        self.group_prefix = params["group_prefix"] or ""
        self.group_label = params["group_label"] or "group"
        self.mode = params["group_mode"]
        self.all = False
        self.groups: list[str] = []
        self.names: list[str] = []
        for value in params["statistics"]:
            for name in value.split():
                if name == "all":
                    self.all = True
                elif len(name) > 1 and name.endswith(":"):
                    if name[:-1] not in self.groups:
                        self.groups.append(name[:-1])
                elif name not in self.names:
                    self.names.append(name)

    def selected(self) -> list:
        if self.all:
            return stats.all_stats(self.rt)
        out, seen = [], set()
        for g in self.groups:
            for s in stats.find(self.rt, g + ":"):
                if s.full_name not in seen:
                    seen.add(s.full_name)
                    out.append(s)
        for n in self.names:
            for s in stats.find(self.rt, n):
                if s.full_name not in seen:
                    seen.add(s.full_name)
                    out.append(s)
        return out

    def metric_name(self, s) -> str:
        prefix = self.prefix
        if not prefix and not self.delim and self.mode == 0 and s.name[:1].isdigit():
            prefix = "_"
        name = prefix + self.delim
        if self.mode == 1:
            name += self.group_prefix + s.group + self.delim
        return name + _BAD.sub("_", s.name)

    def page(self) -> str:
        lines = []
        for s in self.selected():
            name = self.metric_name(s)
            kind = "counter" if s.incremental else "gauge"
            label = ""
            if self.mode == 2:
                label = f'{{{self.group_label}="{self.group_prefix}{s.group}"}}'
            lines.append(f"# TYPE {name} {kind}")
            lines.append(f"{name}{label} {s.get()}")
        return "".join(line + "\n" for line in lines) + "\n"


def init(rt):
    params = rt.modparams["prometheus"]
    exporter = Exporter(rt, params)

    def handler(rt, req):
        if req.method not in ("GET", "HEAD"):
            rt.log.error(f"unexpected http method [{req.method}]", "prometheus")
            return 405, b""
        return 200, exporter.page(), {"Content-Type": CONTENT_TYPE}

    rt.apis["httpd"].register_httpdcb("prometheus", params["root"] or "metrics", handler,
                                      CONTENT_TYPE)
