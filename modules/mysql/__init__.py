"""mysql: the OpenSIPS 1.x name of db_mysql (`loadmodule "mysql.so"`). The same module
under its old name: `mysql://` db_urls through PyMySQL (or mysqlclient), the same
parameters."""
from modules.db_mysql import exports as _db_mysql   # registers the mysql:// driver
from runtime.module import Module

exports = Module(
    name="mysql",
    params=list(_db_mysql.params),
    aliases=dict(_db_mysql.aliases),
)
