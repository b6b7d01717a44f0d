"""db_postgres: `postgres://` db_urls through psycopg 3 (or psycopg2) when one is installed."""
from runtime import db
from runtime.module import Module, Param

exports = Module(
    name="db_postgres",
    params=[
        Param("exec_query_threshold", int, 0), Param("max_db_queries", int, 2),
        Param("timeout", int, 5), Param("use_tls", int, 0),
    ],
)


class Postgres(db.Connection):
    placeholder = "%s"
    quote_char = '"'

    def __init__(self, url: db.DbUrl):
        super().__init__(url)
        self.conn = db.dbapi_connect(
            url, ("psycopg", "psycopg2"),
            "no PostgreSQL driver installed (pip install psycopg[binary])",
            host=url.host or "localhost", port=url.port or 5432, user=url.user or "",
            password=url.password or "", dbname=url.database, connect_timeout=5)


for _scheme in ("postgres", "postgresql"):
    db.register_driver(_scheme, Postgres)
