"""Logging in OpenSIPS's stderr line format: `Nov 25 15:30:01 [pid] ERROR:module: text`."""
from __future__ import annotations

import os
import sys
import time

# OpenSIPS levels
L_ALERT, L_CRIT, L_ERR, L_WARN, L_NOTICE, L_INFO, L_DBG = -3, -2, -1, 1, 2, 3, 4
LEVEL_NAMES = {L_ALERT: "ALERT", L_CRIT: "CRITICAL", L_ERR: "ERROR", L_WARN: "WARNING",
               L_NOTICE: "NOTICE", L_INFO: "INFO", L_DBG: "DBG"}
# xlog("L_x", ...): OpenSIPS looks at the third character only
XLOG_LEVELS = {"A": L_ALERT, "C": L_CRIT, "E": L_ERR, "W": L_WARN, "N": L_NOTICE,
               "I": L_INFO, "D": L_DBG}


def xlog_level(name: str) -> int | None:
    if len(name) >= 3 and name[:2] == "L_":
        return XLOG_LEVELS.get(name[2].upper())
    return None


class Logger:
    """One logger for the process; `module` is a prefix like 'core' or 'tm'."""

    def __init__(self, level: int = L_NOTICE, stream=None, prefix: str = ""):
        self.level = level
        self.stream = stream or sys.stderr
        self.prefix = prefix
        self.pid = os.getpid()

    def enabled(self, level: int) -> bool:
        return level <= self.level

    def write(self, level: int, text: str, module: str = "core"):
        if level > self.level:
            return
        stamp = time.strftime("%b %d %H:%M:%S")
        tag = f"{LEVEL_NAMES.get(level, 'DBG')}:{module}: " if module else ""
        try:
            self.stream.write(f"{stamp} [{self.pid}] {self.prefix}{tag}{text.rstrip()}\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def raw(self, level: int, text: str):
        """xlog output: the text as the script formatted it."""
        if level > self.level:
            return
        stamp = time.strftime("%b %d %H:%M:%S")
        try:
            self.stream.write(f"{stamp} [{self.pid}] {self.prefix}{text}"
                              + ("" if text.endswith("\n") else "\n"))
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def error(self, text, module="core"):
        self.write(L_ERR, text, module)

    def warning(self, text, module="core"):
        self.write(L_WARN, text, module)

    def notice(self, text, module="core"):
        self.write(L_NOTICE, text, module)

    def info(self, text, module="core"):
        self.write(L_INFO, text, module)

    def debug(self, text, module="core"):
        self.write(L_DBG, text, module)
