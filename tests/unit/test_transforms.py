"""Transformations (`runtime/transforms.py`): one row per behaviour, OpenSIPS 3.6 semantics."""
import hashlib
import hmac

import pytest

from runtime import transforms as T
from runtime.transforms import TransformError, apply, check

IP = "\udcc0\udca8\x01\x01"     # $(var(x){ip.pton}) of 192.168.1.1 (bytes c0 a8 01 01)
U = "sip:alice:pw@example.com:5070;transport=tcp;lr;user=phone;maddr=1.2.3.4;ttl=5" \
    ";method=INVITE;r2=on?X=1"
V = "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport;received=1.2.3.4 (a comment)"
NA = '"Alice Smith" <sip:alice@example.com;lr>;tag=abc;expires="60";foo'
NAL = '"first" <sip:first@opensips.org>, "second" <sip:second@opensips.org>;x=1'

# (transformation, input value, params, expected result)
ROWS = [
    # --- NULL in -> NULL out, for every class
    ("s.len", None, (), None),
    ("s.substr", None, (0, 1), None),
    ("uri.user", None, (), None),
    ("param.value", None, ("a",), None),
    ("re.subst", None, ("/a/b/",), None),
    # --- s.len / s.int
    ("s.len", "abc", (), 3),
    ("s.len", "", (), 0),
    ("s.len", 12345, (), 5),
    ("s.len", -7, (), 2),
    ("s.len", "é", (), 2),                      # byte length, as in C
    ("s.int", "2868.12 sec", (), 2868),
    ("s.int", "abc", (), 0),
    ("s.int", "", (), 0),
    ("s.int", "-42x", (), -42),
    ("s.int", "+7", (), 7),
    ("s.int", " 5", (), 0),                     # no blank skipping
    ("s.int", 17, (), 17),
    ("s.int", "4294967297", (), 1),             # 32-bit wraparound
    # --- s.substr: offset, length
    ("s.substr", "abcdef", (1, 2), "bc"),
    ("s.substr", "abcdef", (0, 0), "abcdef"),   # length 0: to the end
    ("s.substr", "abcdef", (2, 100), "cdef"),   # length past the end: to the end
    ("s.substr", "abcdef", (-3, 2), "de"),      # negative offset counts from the end
    ("s.substr", "abcdef", (-1, 0), "f"),
    ("s.substr", "abcdef", (-6, 1), "a"),
    ("s.substr", "abcdef", (-7, 1), None),      # negative offset out of range
    ("s.substr", "abcdef", (6, 1), None),       # offset out of range
    ("s.substr", "", (0, 0), None),
    ("s.substr", "abcdef", (1, -1), "bcde"),    # negative length: end counted from the end
    ("s.substr", "abcdef", (-4, -2), "cd"),
    ("s.substr", "abcdef", (4, -3), ""),        # end before start
    ("s.substr", 123456, (1, 3), "234"),        # ints as their decimal string
    ("s.substr", "abcdef", ("x", 1), None),     # a PV offset must hold an integer
    ("s.substr", "abcdef", (" 1", "2 "), "bc"),  # blanks around a constant number
    # --- s.select: index, separator
    ("s.select", "a,b,c", (0, ","), "a"),
    ("s.select", "a,b,c", (2, ","), "c"),
    ("s.select", "a,b,c", (3, ","), None),      # no such field
    ("s.select", "a,b,c", (-1, ","), "c"),      # negative: from the end
    ("s.select", "a,b,c", (-3, ","), "a"),
    ("s.select", "a,b,c", (-4, ","), None),
    ("s.select", "a,,c", (1, ","), ""),         # empty field
    ("s.select", "a,b,", (2, ","), ""),
    ("s.select", "abc", (0, ","), "abc"),
    ("s.select", "", (0, ","), ""),
    ("s.select", "1.2.3.4", (2, "."), "3"),
    ("s.select", "user@host", (1, "@x"), "host"),  # only the first char separates
    ("s.select", "a1b1c", (1, 1), "b"),         # a numeric separator arrives as an int
    # --- hex / escapes
    ("s.encode.hexa", "abc", (), "616263"),
    ("s.encode.hexa", 10, (), "3130"),
    ("s.encode.hexa", "\xff", (), "c3bf"),
    ("s.decode.hexa", "616263", (), "abc"),
    ("s.decode.hexa", "6162A", (), "ab"),       # a last odd digit is ignored
    ("s.decode.hexa", "4A4b", (), "JK"),
    ("s.decode.hexa", "zz", (), None),
    ("s.decode.hexa", "61 62", (), None),
    ("s.decode.hexa", "c0a8", (), "\udcc0\udca8"),  # binary round-trips as surrogates
    ("s.escape.common", "it's \"x\" \\ \0", (), "it\\'s \\\"x\\\" \\\\ \\0"),
    ("s.unescape.common", "it\\'s \\\"x\\\" \\\\ \\0", (), "it's \"x\" \\ \0"),
    ("s.unescape.common", "a\\nb\\", (), "a\\nb\\"),  # unknown escapes stay
    ("s.escape.user", "a b", (), "a%20b"),
    ("s.escape.user", "+1-(2)_3.!~*'&=$,;?", (), "+1-(2)_3.!~*'&=$,;?"),  # user-unreserved
    ("s.escape.user", "a/b@c:d#e%f\"", (), "a%2fb%40c%3ad%23e%25f%22"),  # lowercase hex
    ("s.escape.user", "a\tb", (), None),        # not printable
    ("s.escape.user", "é", (), None),
    ("s.escape.param", "a b;c=d,e?f&g\"h", (), "a%20b%3bc%3dd%2ce%3ff%26g%22h"),
    ("s.escape.param", "x/y:z@w+%", (), "x/y:z@w+%"),
    ("s.unescape.user", "a%20b%2Fc%2fd", (), "a b/c/d"),
    ("s.unescape.user", "100%", (), None),
    ("s.unescape.user", "%zz", (), None),
    ("s.unescape.user", "%0a", (), None),       # unescaped result must be printable
    ("s.unescape.param", "a%3Db", (), "a=b"),
    # --- case, reverse
    ("s.tolower", "AbC-É", (), "abc-É"),        # ASCII only
    ("s.toupper", "aBc-é", (), "ABC-é"),
    ("s.tolower", 12, (), "12"),
    ("s.reverse", "abc", (), "cba"),
    ("s.reverse", 123, (), "321"),
    # --- s.index / s.rindex
    ("s.index", "hello world", ("o",), 4),
    ("s.index", "hello world", ("o", 5), 7),
    ("s.index", "hello world", ("world",), 6),
    ("s.index", "hello world", ("x",), None),
    ("s.index", "hello world", ("o", -4), 7),   # negative offset from the end
    ("s.index", "hello world", ("h", -11), 0),  # -len wraps to 0
    ("s.index", "hello world", ("o", -15), 7),  # wraps modulo the length
    ("s.index", "hello world", ("o", 11), None),
    ("s.index", "abc", ("abcd",), None),
    ("s.index", "", ("a",), None),
    ("s.index", 12345, (3,), 2),
    ("s.rindex", "hello world", ("o",), 7),
    ("s.rindex", "hello world", ("o", 6), 4),
    ("s.rindex", "hello world", ("o", -5), 4),
    ("s.rindex", "hello world", ("world", 10), 6),  # start clamps so the needle fits
    ("s.rindex", "hello world", ("l", 100), 9),
    ("s.rindex", "hello world", ("x",), None),
    ("s.rindex", "ab", ("abc",), None),
    # --- s.fill.left / s.fill.right / s.width
    ("s.fill.left", "7", ("0", 3), "007"),
    ("s.fill.left", 7, ("0", 3), "007"),
    ("s.fill.left", "1234", ("0", 3), "1234"),  # longer already: unchanged
    ("s.fill.left", 1234, ("0", 3), 1234),      # ... and keeps its type
    ("s.fill.left", "123", ("0", 3), "123"),
    ("s.fill.left", "x", ("ab", 4), "babx"),    # partial token tail first
    ("s.fill.left", "x", ("ab", 5), "ababx"),
    ("s.fill.left", "x", ("' '", 3), "  x"),    # quoted token
    ("s.fill.left", "x", ('"ab"', 4), "babx"),
    ("s.fill.right", "x", ("0", 3), "x00"),
    ("s.fill.right", "x", ("ab", 4), "xaba"),
    ("s.fill.right", "x", ("abc ", 3), "xab"),   # trailing blanks of the token dropped
    ("s.width", "abcdef", (3,), "abc"),
    ("s.width", "ab", (5,), "ab   "),
    ("s.width", "abc", (3,), "abc"),
    ("s.width", 42, (4,), "42  "),
    ("s.width", "abc", (0,), None),
    # --- trims
    ("s.trim", " \t a b \r\n", (), "a b"),
    ("s.trimr", " a ", (), " a"),
    ("s.triml", " a ", (), "a "),
    ("s.trim", "   ", (), ""),
    # --- numbers
    ("s.dec2hex", 255, (), "ff"),
    ("s.dec2hex", "255", (), "ff"),
    ("s.dec2hex", -1, (), "ffffffff"),
    ("s.dec2hex", "12a", (), None),
    ("s.dec2hex", "", (), None),
    ("s.hex2dec", "ff", (), 255),
    ("s.hex2dec", "FF", (), 255),
    ("s.hex2dec", "0x1f", (), None),
    ("s.hex2dec", "", (), 0),
    ("s.hex2dec", 99, (), 99),                  # an integer is already converted
    ("s.hex2dec", "ffffffff", (), -1),
    # --- base64, xor
    ("s.b64encode", "hello", (), "aGVsbG8="),
    ("s.b64encode", "", (), ""),
    ("s.b64encode", 12, (), "MTI="),
    ("s.b64decode", "aGVsbG8=", (), "hello"),
    ("s.b64decode", "aGVsbG8", (), "hello"),    # missing padding tolerated
    ("s.b64decode", "aGVs\nbG8=", (), "hello"),
    ("s.b64decode", "a", (), None),
    ("s.xor", "abc", ("k",), "\x0a\x09\x08"),
    ("s.xor", "\x0a\x09\x08", ("k",), "abc"),
    ("s.xor", "aa", ("ab",), "\x00\x03"),
    # --- digests
    ("s.md5", "abc", (), "900150983cd24fb0d6963f7d28e17f72"),
    ("s.md5", 1, (), hashlib.md5(b"1").hexdigest()),
    ("s.sha1", "abc", (), "a9993e364706816aba3e25717850c26c9cd0d89d"),
    ("s.sha224", "abc", (), hashlib.sha224(b"abc").hexdigest()),
    ("s.sha256", "abc",
     (), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    ("s.sha384", "abc", (), hashlib.sha384(b"abc").hexdigest()),
    ("s.sha512", "abc", (), hashlib.sha512(b"abc").hexdigest()),
    ("s.sha1_hmac", "msg", ("key",), hmac.new(b"key", b"msg", "sha1").hexdigest()),
    ("s.sha256_hmac", "The quick brown fox jumps over the lazy dog", ("key",),
     "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"),
    ("s.sha512_hmac", "m", ("k",), hmac.new(b"k", b"m", "sha512").hexdigest()),
    ("s.crc32", "The quick brown fox jumps over the lazy dog", (), "1095738169"),
    ("s.crc32", "", (), "0"),
    # --- s.eval, s.date2unix
    ("s.eval", "$var(x)", (), "$var(x)"),       # the engine expands it
    ("s.date2unix", "Thu, 13 Jun 2024 12:48:00 GMT", (), 1718282880),
    ("s.date2unix", "Thu, 01 Jan 1970 00:00:00 GMT", (), 0),
    ("s.date2unix", "13 Jun 2024 12:48:00 GMT", (), 1718282880),
    ("s.date2unix", "Thu, 13 Foo 2024 12:48:00 GMT", (), None),
    ("s.date2unix", "yesterday", (), None),
    # --- param.*
    ("param.value", "a=1;b=2", ("b",), "2"),
    ("param.value", "a=1;b=2", ("B",), "2"),     # names case-insensitive
    ("param.value", "a=1;b=2", ("c",), None),    # missing -> NULL
    ("param.value", "a = 1 ; b = 2", ("b",), "2"),  # blanks around ; and =
    ("param.value", "a;b=2", ("a",), ""),       # no value -> ""
    ("param.value", 'a="x y";b=2', ("a",), "x y"),  # quotes removed
    ("param.value", "a=1;a=2", ("a",), "1"),
    ("param.value", "a=1,b=2", ("b",), None),   # ',' ends the list
    ("param.value", "a=1;", ("a",), None),      # dangling ';' is a parse error
    ("param.value", "a=;b=2", ("b",), None),    # missing body
    ("param.value", "a=1 b=2", ("a",), None),   # ';' expected
    ("param.value", "", ("a",), None),
    ("param.value", "a=1;b=2", ("b ",), "2"),    # a constant name stops at a blank
    ("param.exist", "a=1;b", ("b",), 1),
    ("param.exist", "a=1;b", ("c",), 0),
    ("param.exists", "a=1;b", ("A",), 1),
    ("param.valueat", "a=1;b=2;c=3", (0,), "1"),
    ("param.valueat", "a=1;b=2;c=3", (2,), "3"),
    ("param.valueat", "a=1;b=2;c=3", (-1,), "3"),
    ("param.valueat", "a=1;b=2;c=3", (3,), None),
    ("param.valueat", "a=1;b=2;c=3", (-4,), None),
    ("param.name", "a=1;b=2;c=3", (1,), "b"),
    ("param.name", "a=1;b=2;c=3", (-3,), "a"),
    ("param.count", "a=1;b=2;c=3", (), 3),
    ("param.count", "a", (), 1),
    ("param.count", "", (), None),
    ("param.count", 5, (), 1),
    # --- csv.*
    ("csv.count", "a,b,c", (), 3),
    ("csv.count", "a", (), 1),
    ("csv.count", "a,", (), 2),
    ("csv.count", '"a,b",c', (), 2),
    ("csv.count", '"a"x,c', (), None),          # junk after a closing quote
    ("csv.count", '"a,c', (), None),            # unterminated quote
    ("csv.count", "", (), None),
    ("csv.value", 'x,"a ""q"" b",y', (1,), 'a "q" b'),
    ("csv.value", "a, b ,c", (1,), " b "),      # no trimming
    ("csv.value", "a,b,c", (-1,), "c"),
    ("csv.value", "a,b,c", (3,), None),
    ("csv.value", "a,b,c", (-4,), None),
    ("csv.value", 'a,b"c', (1,), 'b"c'),        # a quote inside a field is literal
    ("csv.value", "a,b\r\n", (1,), "b"),
    # --- ip.*
    ("ip.pton", "192.168.1.1", (), IP),
    ("ip.ntop", IP, (), "192.168.1.1"),
    ("ip.family", IP, (), "INET"),
    ("ip.pton", "host", (), None),
    ("ip.ntop", "abc", (), None),
    ("ip.family", "abc", (), None),
    ("ip.ntop", "\x20\x01\x0d\udcb8" + "\x00" * 11 + "\x01", (), "2001:DB8:0:0:0:0:0:1"),
    ("s.len", IP, (), 4),
    ("ip.isip", "10.0.0.1", (), 1),
    ("ip.isip", "::1", (), 1),
    ("ip.isip", "[2001:db8::1]", (), 1),
    ("ip.isip", "example.com", (), 0),
    ("ip.isip", "1.2.3.256", (), 0),
    ("ip.isip", "1.2.3", (), 0),
    ("ip.isip", "", (), None),
    ("ip.isip4", "10.0.0.1", (), 1),
    ("ip.isip4", "::1", (), 0),
    ("ip.isip6", "::1", (), 1),
    ("ip.isip6", "fe80::1%eth0", (), 0),
    ("ip.isip6", "10.0.0.1", (), 0),
    ("ip.isprivate", "10.1.2.3", (), 1),
    ("ip.isprivate", "172.31.0.1", (), 1),
    ("ip.isprivate", "172.32.0.1", (), 0),
    ("ip.isprivate", "192.168.0.10", (), 1),
    ("ip.isprivate", "100.64.0.1", (), 1),
    ("ip.isprivate", "100.128.0.1", (), 0),
    ("ip.isprivate", "8.8.8.8", (), 0),
    ("ip.isprivate", "fd00::1", (), 0),         # IPv4 only
    ("ip.matches", "192.168.1.7", ("192.168.1.0/24",), 1),
    ("ip.matches", "192.168.2.7", ("192.168.1.0/24",), 0),
    ("ip.matches", "10.0.0.1", ("0.0.0.0/0",), 1),
    ("ip.matches", "2001:db8::5", ("2001:db8::/32",), 1),
    ("ip.matches", "2001:db9::5", ("2001:db8::/32",), 0),
    ("ip.matches", "10.0.0.1", ("2001:db8::/32",), None),  # different families
    ("ip.matches", "host", ("10.0.0.0/8",), None),
    ("ip.matches", "10.0.0.1", ("10.0.0.0",), None),
    ("ip.matches", "10.0.0.1", ("10.0.0.0/33",), None),
    ("ip.resolve", "10.0.0.1", (), "10.0.0.1"),
    ("ip.resolve", "localhost", (), "127.0.0.1"),
    ("ip.resolve", "::1", (), "0:0:0:0:0:0:0:1"),
    # --- re.subst
    ("re.subst", "hello world", ("/o/0/",), "hell0 world"),
    ("re.subst", "hello world", ("/o/0/g",), "hell0 w0rld"),
    ("re.subst", "hello", ("/x/y/",), "hello"),           # no match: unchanged
    ("re.subst", 1234, ("/x/y/",), 1234),
    ("re.subst", "Hello", ("/h/J/",), "Hello"),           # case-sensitive by default
    ("re.subst", "Hello", ("/h/J/i",), "Jello"),
    ("re.subst", "+4930123", ("/^\\+49(.*)$/0\\1/",), "030123"),
    ("re.subst", "sip:alice@a.com", ("/^sip:([^@]+)@(.*)$/\\2:\\1/",), "a.com:alice"),
    ("re.subst", "abc", ("/b/[\\0]/",), "a[b]c"),          # \0 is the whole match
    ("re.subst", "abc", ("/(b)/\\5/",), "ac"),            # missing group -> empty
    ("re.subst", "abc", ("/b/\\n\\t\\\\/",), "a\n\t\\c"),
    ("re.subst", "a1b22", ("/[[:digit:]]+/#/g",), "a#b#"),
    ("re.subst", "a\\d", ("/\\d/D/",), "a\\D"),            # glibc: \d is a plain 'd'
    ("re.subst", "a.b", ("/[.]/-/",), "a-b"),
    ("re.subst", "a\\b", ("/[\\]/-/",), "a-b"),           # '\' is literal in brackets
    ("re.subst", "a/b", ("/\\//|/",), "a|b"),             # escaped separator
    ("re.subst", "a/b", ("#/#|#",), "a|b"),               # any separator char
    ("re.subst", "aaa", ("/x*/y/",), None),               # empty match is an error
    ("re.subst", "abab", ("/^ab/X/g",), "Xab"),           # ^ anchors only at the start
    ("re.subst", "a\nb", ("/a.b/X/",), "a\nb"),           # '.' does not match newline
    ("re.subst", "a\nb", ("/a.b/X/s",), "X"),             # ... unless flag s
    ("re.subst", "x\ny", ("/^y/Y/",), "x\nY"),            # ^ after a newline
    ("re.subst", "a{b}", ("/\\{b\\}/c/",), "ac"),         # \{ \} unescaped first
    ("re.subst", "the cat", ("/\\<c/C/",), "the Cat"),
    ("re.subst", "abc", ("/b/x",), None),                 # missing separator
    ("re.subst", "abc", ("/b/x/q",), None),               # unknown flag
    ("re.subst", "abc", ("/(b/x/",), None),               # bad regex
    ("re.subst", "", ("/a/b/",), None),
    # --- uri.*
    ("uri.user", U, (), "alice"),
    ("uri.host", U, (), "example.com"),
    ("uri.domain", U, (), "example.com"),
    ("uri.passwd", U, (), "pw"),
    ("uri.port", U, (), 5070),                  # an integer
    ("uri.params", U, (), "transport=tcp;lr;user=phone;maddr=1.2.3.4;ttl=5;method=INVITE;r2=on"),
    ("uri.headers", U, (), "X=1"),
    ("uri.transport", U, (), "tcp"),
    ("uri.ttl", U, (), "5"),
    ("uri.uparam", U, (), "phone"),
    ("uri.maddr", U, (), "1.2.3.4"),
    ("uri.method", U, (), "INVITE"),
    ("uri.lr", U, (), None),                    # ;lr has no value -> NULL
    ("uri.lr", "sip:h;lr=on", (), "on"),
    ("uri.r2", U, (), "on"),
    ("uri.schema", U, (), "sip"),
    ("uri.schema", "TEL:+123", (), "TEL"),
    ("uri.param", U, ("transport",), "tcp"),
    ("uri.param", U, ("TRANSPORT",), "tcp"),    # case-insensitive name
    ("uri.param", U, ("lr",), ""),              # present without a value
    ("uri.param", U, ("foo",), None),
    ("uri.param", "sip:a@b", ("lr",), None),
    ("uri.port", "sip:a@b", (), None),          # no port -> NULL
    ("uri.port", "sip:a@b:5060", (), 5060),
    ("uri.user", "sip:example.com", (), None),  # no user -> NULL
    ("uri.passwd", "sip:a@b", (), None),
    ("uri.params", "sip:a@b", (), None),
    ("uri.headers", "sip:a@b", (), None),
    ("uri.transport", "sip:a@b", (), None),
    ("uri.host", "sip:[2001:db8::1]:5060", (), "[2001:db8::1]"),
    ("uri.user", "sips:bob@b.com", (), "bob"),
    ("uri.user", "tel:+4930123;phone-context=x", (), "+4930123"),
    ("uri.host", "tel:+4930123", (), None),
    ("uri.user", "<sip:a@b>", (), None),        # not a bare URI
    ("uri.user", "alice", (), None),
    ("uri.user", "", (), None),
    ("uri.user", 42, (), None),
    # --- via.*
    ("via.name", V, (), "SIP"),
    ("via.version", V, (), "2.0"),
    ("via.transport", V, (), "UDP"),
    ("via.transport", "SIP/2.0/tcp h", (), "tcp"),  # as written
    ("via.host", V, (), "10.0.0.1"),
    ("via.domain", V, (), "10.0.0.1"),
    ("via.port", V, (), 5060),
    ("via.port", "SIP/2.0/TCP host;branch=x", (), None),
    ("via.comment", V, (), "a comment"),
    ("via.comment", "SIP/2.0/TCP host", (), None),
    ("via.params", V, (), "branch=z9hG4bK1;rport;received=1.2.3.4"),
    ("via.params", "SIP/2.0/TCP host", (), None),
    ("via.param", V, ("branch",), "z9hG4bK1"),
    ("via.param", V, ("RECEIVED",), "1.2.3.4"),
    ("via.param", V, ("rport",), ""),
    ("via.param", V, ("maddr",), None),
    ("via.branch", V, (), "z9hG4bK1"),
    ("via.received", V, (), "1.2.3.4"),
    ("via.rport", V, (), None),                 # ;rport without a value -> NULL
    ("via.rport", "SIP/2.0/UDP h;rport=5062", (), "5062"),
    ("via.host", "SIP/2.0/UDP a:1, SIP/2.0/UDP b:2", (), "a"),  # the first of a list
    ("via.host", "SIP/2.0/UDP [2001:db8::1]:5060", (), "[2001:db8::1]"),
    ("via.host", "garbage", (), None),
    ("via.host", "", (), None),
    # --- nameaddr.*
    ("nameaddr.name", NA, (), '"Alice Smith"'),  # as written, quotes included
    ("nameaddr.name", "Bob <sip:bob@b>", (), "Bob"),
    ("nameaddr.name", "<sip:bob@b>", (), None),
    ("nameaddr.uri", NA, (), "sip:alice@example.com;lr"),
    ("nameaddr.uri", "sip:bob@b.com;tag=1", (), "sip:bob@b.com"),
    ("nameaddr.len", NA, (), 40),               # the name-addr without its parameters
    ("nameaddr.len", "Bob <sip:bob@b>", (), 15),
    ("nameaddr.params", NA, (), 'tag=abc;expires="60";foo'),
    ("nameaddr.params", "<sip:bob@b>", (), None),
    ("nameaddr.params", "sip:bob@b.com;tag=1", (), "tag=1"),
    ("nameaddr.param", NA, ("tag",), "abc"),
    ("nameaddr.param", NA, ("TAG",), None),     # case-sensitive
    ("nameaddr.param", NA, ("expires",), "60"),  # quotes removed
    ("nameaddr.param", NA, ("foo",), None),     # no value -> NULL
    ("nameaddr.param", NA, ("bar",), None),
    ("nameaddr.0.name", NAL, (), '"first"'),
    ("nameaddr.1.name", NAL, (), '"second"'),
    ("nameaddr.-1.uri", NAL, (), "sip:second@opensips.org"),
    ("nameaddr.-2.uri", NAL, (), "sip:first@opensips.org"),
    ("nameaddr.2.uri", NAL, (), None),
    ("nameaddr.-3.uri", NAL, (), None),
    ("nameaddr.uri", NAL, (), "sip:first@opensips.org"),  # index 0 by default
    ("nameaddr.1.params", NAL, (), "x=1"),
    ("nameaddr.-1.param", NAL, ("x",), "1"),
    ("nameaddr.1.len", NAL, (), 34),
    ("nameaddr.uri", '"unterminated <sip:a@b>', (), None),
    ("nameaddr.uri", "", (), None),
]


def _id(row):
    name, value, params, _ = row
    return f"{name}{list(params)}<-{value!r}"


@pytest.mark.parametrize("name,value,params,expected", ROWS, ids=[_id(r) for r in ROWS])
def test_transform(name, value, params, expected):
    spec = check(name, len(params))
    got = apply(spec, value, params)
    assert got == expected
    assert type(got) is type(expected)


# --- load time -------------------------------------------------------------------------------

# (name, number of params, params or None, text expected in the error)
LOAD_ERRORS = [
    ("s.lenn", 0, None, "did you mean {s.len}"),
    ("s.substring", 2, None, "did you mean {s.substr}"),
    ("uri.usr", 0, None, "did you mean {uri.user}"),
    ("pram.value", 1, None, "did you mean {param.value}"),
    ("foo.bar", 0, None, "unknown transformation class 'foo'"),
    ("s", 0, None, "expected {s.name}"),
    ("x", 0, None, "unknown transformation class 'x'"),
    ("s.substr", 1, None, "takes 2 parameters, got 1"),
    ("s.substr", 3, None, "usage: {s.substr,offset,length}"),
    ("s.len", 1, None, "takes 0 parameters, got 1"),
    ("s.index", 0, None, "takes 1 or 2 parameters, got 0"),
    ("param.value", 0, None, "takes 1 parameter, got 0"),
    ("s.substr", 2, ("a", 1), "must be a number"),
    ("s.width", 1, (-1,), "must not be negative"),
    ("s.fill.left", 2, ("", 3), "empty token"),
    ("s.fill.left", 2, (object(), 3), "does not accept a variable"),
    ("s.fill.left", 2, ("0", object()), "does not accept a variable"),
    ("s.select", 2, (1, ""), "separator"),
    ("re.subst", 1, ("/a(/b/",), "bad regular expression"),
    ("re.subst", 1, ("/a/b/z",), "unknown flag"),
    ("re.subst", 1, ("/a/b",), "missing separator"),
    ("ip.matches", 1, ("10.0.0.0",), "ip/len"),
    ("param.value", 1, ("",), "must not be empty"),
    ("nameaddr.1.foo", 0, None, "unknown transformation {nameaddr.1.foo}"),
    ("nameaddr.1.param", 0, None, "takes 1 parameter, got 0"),
]


@pytest.mark.parametrize("name,n,params,message", LOAD_ERRORS,
                         ids=[f"{r[0]}/{r[1]}/{r[3]}" for r in LOAD_ERRORS])
def test_load_errors(name, n, params, message):
    with pytest.raises(TransformError) as e:
        check(name, n, params)
    assert message in str(e.value)


LOAD_OK = [
    ("S.LEN", 0, None),                     # class and name are case-insensitive
    (" s.len ", 0, None),
    ("s.substr", 2, (object(), object())),  # variables are checked at run time
    ("s.substr", 2, (-1, "3")),
    ("s.index", 1, ("x",)),
    ("s.index", 2, ("x", 3)),
    ("re.subst", 1, ("/a/b/gis",)),
    ("re.subst", 1, (object(),)),
    ("uri.domain", 0, None),
    ("param.exists", 1, ("a",)),
    ("nameaddr.-1.uri", 0, None),            # indexed name-addr form
    ("NameAddr.2.Param", 1, ("tag",)),
]


@pytest.mark.parametrize("name,n,params", LOAD_OK, ids=[f"{r[0]}/{r[1]}" for r in LOAD_OK])
def test_load_ok(name, n, params):
    spec = check(name, n, params)
    assert spec.min_params <= n <= spec.max_params


def test_registry_decorator_and_duplicates():
    @T.transform("zzt.twice", 0, 1)
    def twice(v, sep=""):
        return f"{v}{sep}{v}"
    try:
        spec = check("zzt.twice", 1)
        assert apply(spec, "ab", ("-",)) == "ab-ab"
        assert apply(spec, 3, ()) == "33"
        with pytest.raises(TransformError):
            T.transform("zzt.twice")(twice)
    finally:
        del T.TRANSFORMS["zzt.twice"]


def test_failure_inside_a_module_transformation_is_null():
    @T.transform("zzt.boom")
    def boom(v):
        raise KeyError(v)
    try:
        assert apply(check("zzt.boom", 0), "x", ()) is None
    finally:
        del T.TRANSFORMS["zzt.boom"]


def test_chain():
    chain = [(check("s.select", 2), (1, "@")), (check("s.toupper", 0), ()),
             (check("s.len", 0), ())]
    assert T.apply_chain(chain, "alice@example.com") == 11
    assert T.apply_chain(chain, "alice") is None      # NULL stops the chain


def test_binary_round_trip():
    pton, ntop = check("ip.pton", 0), check("ip.ntop", 0)
    for ip, text in (("10.20.30.40", "10.20.30.40"),
                     ("2001:db8::ff00:42:8329", "2001:DB8:0:0:0:FF00:42:8329")):
        assert apply(ntop, apply(pton, ip)) == text
    b64 = check("s.b64decode", 0)
    enc = check("s.b64encode", 0)
    raw = apply(b64, "wKgBAf8=")                    # c0 a8 01 01 ff
    assert apply(check("s.len", 0), raw) == 5
    assert apply(check("s.encode.hexa", 0), raw) == "c0a80101ff"
    assert apply(enc, raw) == "wKgBAf8="


def test_subst_patterns_are_compiled_once():
    spec = check("re.subst", 1)
    apply(spec, "abc", ("/b/x/g",))
    compiled = T._SUBST_CACHE["/b/x/g"]
    apply(spec, "bbb", ("/b/x/g",))
    assert T._SUBST_CACHE["/b/x/g"] is compiled


def test_every_reference_transformation_is_registered():
    names = """s.len s.int s.md5 s.sha1 s.sha224 s.sha256 s.sha384 s.sha512 s.sha1_hmac
    s.sha224_hmac s.sha256_hmac s.sha384_hmac s.sha512_hmac s.crc32 s.substr s.select
    s.encode.hexa s.decode.hexa s.escape.common s.unescape.common s.escape.user
    s.unescape.user s.escape.param s.unescape.param s.tolower s.toupper s.reverse s.index
    s.rindex s.fill.left s.fill.right s.width s.trim s.trimr s.triml s.dec2hex s.hex2dec
    s.b64encode s.b64decode s.xor s.eval s.date2unix
    param.value param.exist param.exists param.valueat param.name param.count
    csv.count csv.value ip.pton ip.ntop ip.isip ip.isip4 ip.isip6 ip.family ip.resolve
    ip.matches ip.isprivate re.subst
    uri.user uri.host uri.domain uri.passwd uri.port uri.params uri.param uri.headers
    uri.transport uri.ttl uri.uparam uri.maddr uri.method uri.lr uri.r2 uri.schema
    via.name via.version via.transport via.host via.domain via.port via.comment via.params
    via.param via.branch via.received via.rport
    nameaddr.name nameaddr.uri nameaddr.len nameaddr.param nameaddr.params""".split()
    missing = [n for n in names if n not in T.TRANSFORMS]
    assert not missing
