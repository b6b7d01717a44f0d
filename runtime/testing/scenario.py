"""Scenario folders, in the shape of OpenSIPS's SIPssert test sets.

    <dir>/opensips.cfg          the script under test
    <dir>/scripts/uas*.xml      SIPp servers (started first, in name order)
    <dir>/scripts/uac*.xml      SIPp clients (at least one)
    <dir>/scenario.yml          optional: the tasks, as SIPssert writes them
    <dir>/defines.yml           optional: values for {{ name }} in scenario.yml (also read
                                from the parent folder, the test set)

Without scenario.yml the folder runs its scripts against the proxy. With it, the tasks
of type `opensips`, `uas-sipp` and `uac-sipp` are run; the SIPp keys understood are
`config_file`, `remote`, `proxy`, `username`, `password`, `service`/`destination`,
`caller`, `port`, `keys`, `calls`, `duration` and `require` (started/after/ready/delay/
wait); a SIPp task without `config_file` runs SIPp's built-in uac or uas. Anything else
is an error, not ignored. Unlike SIPssert, `duration` has no default (SIPp's: 0 ms).

Every role has its own loopback address: the proxy listens on udp:proxy_ip:5060, the
i-th UAS on uas_ip:5080+i, the i-th UAC on uac_ip:5070+i. A UAC sends everything to the
proxy (`-rsa`) and addresses its requests to the first UAS (`remote`), as in SIPssert.
scenario.yml can use {{ proxy_ip }} {{ proxy_port }} {{ uas_ip }} {{ uas_port }}
{{ uac_ip }} {{ uac_port }} (and SIPssert's {{ opensips_ip }} {{ opensips_port }}).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import miniyaml
from .addresses import PROXY_PORT, UAC_PORT, UAS_PORT, Roles

DEFAULT_TIMEOUT = 30.0
MAX_AGENTS_PER_ROLE = 10
MEDIA_PORT = 6000

_IGNORED_SCENARIO_KEYS = {"network", "networks", "tracing"}
_IGNORED_TASK_KEYS = {"name", "type", "label", "labels", "image", "mount_point"}
_SIPP_KEYS = {"config_file", "username", "password", "service", "destination", "caller",
              "port", "keys", "calls", "duration", "require", "remote", "proxy"}


class ScenarioError(Exception):
    """The folder is not a scenario we can run."""


@dataclass
class Agent:
    """One SIPp process to run."""
    name: str
    role: str                          # "uac" or "uas"
    scen_file: Path | None             # None: SIPp's built-in uac/uas
    ip: str
    port: int
    media_port: int
    transport: str = "udp"             # "udp" or "tcp" (SIPp -t u1 / t1)
    remote: tuple[str, int] | None = None
    proxy: tuple[str, int] | None = None
    service: str | None = None
    username: str | None = None
    password: str | None = None
    keys: dict = field(default_factory=dict)
    calls: int = 1
    duration: int | None = None        # ms, SIPp -d
    wait: float = 0.0                  # seconds to wait before starting
    after: list[str] = field(default_factory=list)   # agents that must have ended first


@dataclass
class Scenario:
    name: str
    path: Path
    cfg: Path
    roles: Roles
    agents: list[Agent]                # in launch order: servers, then clients
    timeout: float = DEFAULT_TIMEOUT

    @property
    def proxy_socket(self) -> str:
        return f"udp:{self.roles.proxy_ip}:{PROXY_PORT}"


def is_scenario_dir(path: Path) -> bool:
    """A folder with scenario.yml, or with opensips.cfg and SIPp scripts."""
    if (path / "scenario.yml").is_file():
        return True
    return (path / "opensips.cfg").is_file() and bool(_scripts(path, "uac"))


def _scripts(path: Path, role: str) -> list[Path]:
    return sorted((path / "scripts").glob(f"{role}*.xml"))


def load(path, roles: Roles) -> Scenario:
    """Read the scenario folder `path`, its agents placed on `roles`."""
    path = Path(path).resolve()
    if not path.is_dir():
        raise ScenarioError(f"{path}: not a folder")
    yml = path / "scenario.yml"
    if yml.is_file():
        variables = _variables(path, roles)
        text = _render(yml.read_text(), variables, yml)
        try:
            data = miniyaml.loads(text, str(yml)) or {}
        except miniyaml.YamlError as e:
            raise ScenarioError(str(e)) from None
        if not isinstance(data, dict):
            raise ScenarioError(f"{yml}: expected a mapping at the top")
        return _from_yaml(path, roles, data, yml)
    return _from_folder(path, roles)


def _from_folder(path, roles):
    cfg = path / "opensips.cfg"
    if not cfg.is_file():
        raise ScenarioError(f"{path}: no opensips.cfg")
    specs = [("uas", {"config_file": str(p.relative_to(path)), "name": p.stem})
             for p in _scripts(path, "uas")]
    specs += [("uac", {"config_file": str(p.relative_to(path)), "name": p.stem})
              for p in _scripts(path, "uac")]
    if not any(role == "uac" for role, _ in specs):
        raise ScenarioError(f"{path}: no scripts/uac*.xml and no scenario.yml")
    return Scenario(path.name, path, cfg, roles, _agents(path, roles, specs, "opensips"))


def _from_yaml(path, roles, data, yml):
    unknown = set(data) - {"timeout", "tasks"} - _IGNORED_SCENARIO_KEYS
    if unknown:
        raise ScenarioError(f"{yml}: unsupported key(s): {', '.join(sorted(unknown))}")
    tasks = data.get("tasks") or []
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise ScenarioError(f"{yml}: 'tasks' must be a list of mappings")
    cfg, proxy_name, specs, names = path / "opensips.cfg", "opensips", [], set()
    for n, task in enumerate(tasks, 1):
        kind = task.get("type")
        name = str(task.get("name") or f"{kind}-{n}")
        if name in names:
            raise ScenarioError(f"{yml}: two tasks named {name!r}")
        names.add(name)
        if kind == "opensips":
            _check_keys(task, {"config_file", "require"}, name, yml)
            cfg, proxy_name = path / task.get("config_file", "opensips.cfg"), name
        elif kind in ("uas-sipp", "uac-sipp"):
            _check_keys(task, _SIPP_KEYS, name, yml)
            specs.append((kind[:3], dict(task, name=name)))
        else:
            raise ScenarioError(f"{yml}: task {name!r}: unsupported task type {kind!r} "
                                "(supported: opensips, uas-sipp, uac-sipp)")
    if not cfg.is_file():
        raise ScenarioError(f"{yml}: {cfg} not found")
    if not specs:
        raise ScenarioError(f"{yml}: no uas-sipp or uac-sipp task")
    specs.sort(key=lambda s: s[0] != "uas")         # stable: servers first, file order kept
    timeout = _number(float, data, "timeout", DEFAULT_TIMEOUT)
    return Scenario(path.name, path, cfg, roles, _agents(path, roles, specs, proxy_name),
                    timeout)


def _check_keys(task, allowed, name, yml):
    unknown = set(task) - allowed - _IGNORED_TASK_KEYS
    if unknown:
        raise ScenarioError(f"{yml}: task {name!r}: unsupported key(s): "
                            f"{', '.join(sorted(unknown))}")


def _agents(path, roles, specs, proxy_name):
    agents, counts = [], {"uac": 0, "uas": 0}
    for role, spec in specs:
        index = counts[role]
        counts[role] += 1
        if index >= MAX_AGENTS_PER_ROLE:
            raise ScenarioError(f"{path}: more than {MAX_AGENTS_PER_ROLE} {role} agents")
        ip = roles.uas_ip if role == "uas" else roles.uac_ip
        base = UAS_PORT if role == "uas" else UAC_PORT
        scen_file = path / spec["config_file"] if spec.get("config_file") else None
        if scen_file is not None and not scen_file.is_file():
            raise ScenarioError(f"{path}: {spec['name']}: {scen_file} not found")
        agent = Agent(
            name=spec["name"], role=role, scen_file=scen_file, ip=ip,
            port=_port(spec.get("port"), base + index, spec["name"]),
            media_port=MEDIA_PORT + 4 * index,
            username=_str(spec.get("username")), password=_str(spec.get("password")),
            keys=_keys(spec),
            calls=_number(int, spec, "calls", 1),
            duration=_number(int, spec, "duration", None))
        if role == "uas":
            agent.service = _str(spec.get("service") or spec.get("username"))
        else:
            agent.service = _str(spec.get("service") or spec.get("destination")
                                 or spec.get("username"))
            caller = spec.get("caller", spec.get("username"))
            if caller is not None:
                agent.keys.setdefault("caller", str(caller))
            first_uas = next((a for a in agents if a.role == "uas"), None)
            default_remote = (first_uas.ip, first_uas.port) if first_uas else (
                roles.proxy_ip, PROXY_PORT)
            agent.remote = _hostport(spec.get("remote"), default_remote)
            agent.proxy = _hostport(spec.get("proxy"), (roles.proxy_ip, PROXY_PORT))
        agent.wait, agent.after = _requirements(spec.get("require"), agent, agents, proxy_name)
        agents.append(agent)
    return agents


def _requirements(require, agent, earlier, proxy_name):
    """SIPssert's `require` -> (seconds to wait, names of agents that must have ended)."""
    if require is None:
        return 0.0, []
    wait, after = 0.0, []
    started = {a.name for a in earlier}
    for dep in require if isinstance(require, list) else [require]:
        items = dep.items() if isinstance(dep, dict) else [("after", dep)]
        for kind, value in items:
            kind = kind.lower()
            if kind in ("delay", "wait"):
                wait += float(value)
                continue
            if kind not in ("after", "started", "ready"):
                raise ScenarioError(f"{agent.name}: unsupported requirement {kind!r}")
            task = value.get("task") if isinstance(value, dict) else value
            if isinstance(value, dict):
                wait += float(value.get("wait", 0))
            if task == proxy_name:
                continue                   # the proxy is always up before any agent
            if task not in started:
                raise ScenarioError(
                    f"{agent.name}: requires {task!r}, which is not a task started before "
                    "it (servers start before clients, each in file order)")
            if kind == "after":
                after.append(task)
    return wait, after


def _number(kind, mapping, key, default):
    value = mapping.get(key)
    if value is None:
        return default
    try:
        return kind(value)
    except ValueError:
        raise ScenarioError(f"{mapping.get('name', 'scenario')}: {key}: expected a number, "
                            f"got {value!r}") from None


def _keys(spec):
    keys = spec.get("keys") or {}
    if not isinstance(keys, dict):
        raise ScenarioError(f"{spec['name']}: keys: expected a mapping")
    return {str(k): str(v) for k, v in keys.items()}


def _port(value, default, name):
    if value is None:
        return default
    text = str(value)
    if "/" in text:
        text, proto = text.split("/", 1)
        if proto.lower() != "udp":
            raise ScenarioError(f"{name}: only UDP is supported (port {value!r})")
    return int(text)


def _hostport(value, default):
    if value is None:
        return default
    host, _, port = str(value).rpartition(":")
    return (host, int(port)) if host else (str(value), 5060)


def _str(value):
    return None if value is None else str(value)


def _variables(path, roles):
    values = {}
    for folder in (path.parent, path):
        defines = folder / "defines.yml"
        if defines.is_file():
            try:
                data = miniyaml.loads(defines.read_text(), str(defines)) or {}
            except miniyaml.YamlError as e:
                raise ScenarioError(str(e)) from None
            values.update(data)
    values.update(proxy_ip=roles.proxy_ip, proxy_port=PROXY_PORT,
                  opensips_ip=roles.proxy_ip, opensips_port=PROXY_PORT,
                  uas_ip=roles.uas_ip, uas_port=UAS_PORT,
                  uac_ip=roles.uac_ip, uac_port=UAC_PORT)
    return values


def _render(text, variables, where):
    if "{%" in text:
        raise ScenarioError(f"{where}: Jinja statements ({{% ... %}}) are not supported")

    def value(m):
        if m.group(1) not in variables:
            raise ScenarioError(f"{where}: undefined variable {{{{ {m.group(1)} }}}}")
        return str(variables[m.group(1)])

    return re.sub(r"\{\{\s*(\w+)\s*\}\}", value, text)
