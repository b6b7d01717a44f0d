"""db_sqlite: `sqlite:///path` db_urls (the embedded driver of runtime/db.py)."""
from runtime import db
from runtime.module import Module, Param

exports = Module(
    name="db_sqlite",
    params=[
        Param("busy_timeout", int, 500),
        Param("alloc_limit", int, 10),
        Param("load_extension", str, multi=True),
        Param("exec_pragma", str, multi=True),
    ],
    init="init",
)


def init(rt):
    """Open `sqlite://` URLs with this module's busy_timeout."""
    timeout = rt.modparams["db_sqlite"]["busy_timeout"]
    db.register_driver("sqlite", lambda url: db.SQLite(url, busy_timeout_ms=timeout))
    if rt.modparams["db_sqlite"]["load_extension"]:
        rt.log.warning("load_extension is not supported: SQLite extensions are not loaded",
                       "db_sqlite")
