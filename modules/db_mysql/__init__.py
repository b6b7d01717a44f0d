"""db_mysql: `mysql://` db_urls through PyMySQL (or mysqlclient) when one is installed."""
from runtime import db
from runtime.module import Module, Param

exports = Module(
    name="db_mysql",
    params=[
        Param("ping_interval", int, 300), Param("timeout_interval", int, 2),
        Param("exec_query_threshold", int, 0), Param("max_db_retries", int, 3),
        Param("max_db_queries", int, 2), Param("auto_reconnect", int, 1),
        Param("use_tls", int, 0),
    ],
)


class MySQL(db.Connection):
    placeholder = "%s"
    quote_char = "`"

    def __init__(self, url: db.DbUrl):
        super().__init__(url)
        self.conn = db.dbapi_connect(
            url, ("pymysql", "MySQLdb"), "no MySQL driver installed (pip install PyMySQL)",
            host=url.host or "localhost", port=url.port or 3306, user=url.user or "",
            password=url.password or "", database=url.database, connect_timeout=5,
            autocommit=False, charset="utf8mb4")


db.register_driver("mysql", MySQL)
