"""cfgscript's language front end: OpenSIPS/Kamailio script text to a checked AST."""
from .diagnostics import CfgError, Diagnostic
from .parser import parse_file, parse_text

__version__ = "0.1.0"
__all__ = ["CfgError", "Diagnostic", "parse_file", "parse_text", "__version__"]
