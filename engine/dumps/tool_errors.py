"""The one line of a database tool's stderr that may go into an error
message, a run row, an API answer or a log: the server's (or the tool's)
own error line, never the SQL or the rows the tools echo around it.

Why: a failed restore's stderr holds user data. The MariaDB client prints
the whole failed statement (an INSERT of thousands of rows) between two
lines of dashes before its error, and the error itself repeats the rest of
the statement after "near '"; PostgreSQL tools add DETAIL ("Key
(email)=(...)", "Failing row contains (...)"), CONTEXT ("COPY t, line 1,
column n: ...") and LINE lines, and quote rejected values in the error line
itself ('invalid input syntax for type integer: "..."'); MongoDB tools
print the offending document ("dup key: { email: ... }").

So each function below picks one line and cuts what echoes data out of it:
quoted text is kept only where it names something (a table, a column, a
key, a user, a socket...), any other quoted value is replaced by '...'
together with the rest of the line, except a known harmless tail such as
"for key 'PRIMARY'". The result is at most MAX_LINE characters. Anything
not recognised as an error line is not shown at all."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from engine.secret import Secret

MAX_LINE = 300
NOT_RECOGNISED = "(no error line recognised; the tool's output is not shown, it may hold data)"
ELLIPSIS = "..."


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def scrub(text: str, *secrets: Secret | None) -> str:
    """TEXT with every occurrence of the secrets replaced by ***: tool
    messages sometimes echo a connection string or an option back."""
    for secret in secrets:
        if secret:
            text = text.replace(secret.reveal(), "***")
    return text


def error_line(engine: str, stderr: str, *secrets: Secret | None) -> str:
    """The safe error line of ENGINE's tool output STDERR (mysql, mariadb,
    postgres, mongo), with every secret replaced by ***; "" when the tool
    said nothing."""
    extract = _BY_ENGINE.get(engine, _unknown_engine)
    return extract(scrub(stderr, *secrets))


# -- MySQL and MariaDB ----------------------------------------------------------

# "ERROR 1064 (42000) at line 12833: ..." (a script fed on stdin) or
# "ERROR 1045 (28000): ..." (a connection or a -e query).
_MYSQL_ERROR = re.compile(r"^ERROR \d+ \([0-9A-Z]{5}\)(?: at line \d+)?: ")
_MYSQL_TOOL = re.compile(r"^(?:mysql|mariadb|mysqldump|mariadb-dump): (?!\[(?:Warning|Note)\])")
_MYSQL_ECHO_RULE = "--------------"  # the client's frame around the echoed statement
# mysqldump's "Couldn't execute '<its own query>': <server message> (<code>)".
_MYSQL_EXECUTE = re.compile(r"Couldn't execute '.*?': ")
# Quoted text after these words names something; after any other, it is a value.
_MYSQL_NAMES = _words(
    """
    table column key database user view index constraint schema field in procedure
    function trigger event variable engine plugin sequence role definer partition
    savepoint server tablespace socket host file option
    """
)
# What may follow a hidden value: the end of the server's sentence.
_MYSQL_TAILS = (
    re.compile(r" for key '[^']*'$"),
    re.compile(r" for column (?:`[^`]*`\.?)+ at row \d+$"),
    re.compile(r" for column '[^']*' at row \d+$"),
    re.compile(r" at row \d+$"),
)


def mysql_error_line(stderr: str) -> str:
    """The `ERROR <code> (<sqlstate>) [at line N]: <message>` line of the
    mysql/mariadb client, or the first message line of mysqldump /
    mariadb-dump, without the SQL the server echoes ("near '...'") or the
    values it quotes ("Duplicate entry '...'")."""
    lines = [line.rstrip() for line in stderr.splitlines()]
    if not any(lines):
        return ""
    errors = [i for i, line in enumerate(lines) if _MYSQL_ERROR.match(line)]
    # The client prints the failed statement framed by dashes, a blank line,
    # then its error: an ERROR line right after that frame is the real one
    # (a row value can hold a line that looks like one).
    framed = [
        i for i in errors if i >= 2 and lines[i - 1] == "" and lines[i - 2] == _MYSQL_ECHO_RULE
    ]
    if framed or errors:
        line = lines[(framed or errors)[0]]
    else:
        line = next((x for x in lines if _MYSQL_TOOL.match(x)), "")
        if not line:
            return NOT_RECOGNISED
    # A syntax error repeats the statement from where parsing stopped.
    near = line.find(" near '")
    if near >= 0:
        line = line[:near]
    head = ""
    execute = _MYSQL_EXECUTE.search(line)
    if execute:
        head, line = line[: execute.start()] + "Couldn't execute '...': ", line[execute.end() :]
    return _finish(head + _hide_quoted(line, "'", _MYSQL_NAMES, _MYSQL_TAILS))


# -- PostgreSQL -------------------------------------------------------------------

# psql, pg_dump, pg_dumpall, pg_restore prefix their own lines with their name
# (psql with the script and line: "psql:<stdin>:12: "). DETAIL, HINT,
# CONTEXT, LINE n, QUERY, STATEMENT, LOCATION and "Command was:" lines have
# no such prefix and are never taken.
_PG_TOOL = re.compile(r"^(?:psql|pg_dump|pg_dumpall|pg_restore)(?::[^:\n]*:\d+)?: ")
_PG_SEVERITY = re.compile(r"^(?:ERROR|FATAL|PANIC):\s")
_PG_SERVER_ERROR = re.compile(r"\b(?:ERROR|FATAL|PANIC):\s")
_PG_TOOL_ERROR = re.compile(r": (?:error|fatal): ")
_PG_NAMES = _words(
    """
    relation table constraint column index role user database schema type function
    procedure routine sequence view extension trigger operator encoding tablespace
    parameter file directory socket publication subscription policy rule collation domain
    language server wrapper aggregate cast conversion statistics template at
    """
)
_PG_TAILS = (re.compile(r" is out of range for type [\w ()]+$"),)
_HEX_BYTES = re.compile(r"0x[0-9a-fA-F]{2}(?: 0x[0-9a-fA-F]{2})+")  # "invalid byte sequence"


def postgres_error_line(stderr: str) -> str:
    """The first ERROR/FATAL/PANIC line of psql, pg_restore or pg_dump (else
    their first "error:" line), without DETAIL/CONTEXT/LINE lines and
    without the values the server quotes ('for type integer: "..."')."""
    lines = [line.strip() for line in stderr.splitlines()]
    if not any(lines):
        return ""
    own = [x for x in lines if _PG_SEVERITY.match(x) or _PG_TOOL.match(x)]
    line = next((x for x in own if _PG_SERVER_ERROR.search(x)), "") or next(
        (x for x in own if _PG_TOOL_ERROR.search(x)), ""
    )
    if not line:
        return NOT_RECOGNISED
    line = _HEX_BYTES.sub("0x" + ELLIPSIS, line)
    return _finish(_hide_quoted(line, '"', _PG_NAMES, _PG_TAILS))


# -- MongoDB --------------------------------------------------------------------

_MONGO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?\s+")


def mongo_error_line(stderr: str) -> str:
    """The last "Failed: ..." line of mongodump/mongorestore (their fatal
    error), else the last line (mongosh), without its timestamp and cut at
    the first "{": documents ("dup key: { email: ... }") are data."""
    lines = [_MONGO_TIME.sub("", line.strip()) for line in stderr.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    failed = [line for line in lines if line.startswith("Failed:")]
    line = (failed or lines)[-1]
    brace = line.find("{")
    if brace >= 0:
        line = line[:brace] + "{" + ELLIPSIS + "}"
    return _finish(line)


# -- Shared -------------------------------------------------------------------------


def _hide_quoted(
    line: str, quote: str, names: Iterable[str], tails: Sequence[re.Pattern[str]]
) -> str:
    """LINE with quoted text kept where the word before it is one of NAMES
    (or "@", as in 'user'@'host'); the first other quoted text, a value,
    becomes QUOTE...QUOTE and the rest of the line is dropped except the
    first of TAILS that ends it. A quote right after a letter or digit is
    an apostrophe (doesn't, Can't), not a quote."""
    kept: list[str] = []
    pos = search = 0
    while (start := line.find(quote, search)) >= 0:
        if start > 0 and line[start - 1].isalnum():
            search = start + 1
            continue
        if _names_something(line[:start], names):
            end = line.find(quote, start + 1)
            if end < 0:  # unterminated: whatever follows is not a name
                kept.append(line[pos:start] + quote + ELLIPSIS)
                return "".join(kept)
            kept.append(line[pos : end + 1])
            pos = search = end + 1
            continue
        kept.append(line[pos:start] + quote + ELLIPSIS + quote)
        for tail in tails:
            match = tail.search(line, start + 1)
            if match:
                kept.append(match.group(0))
                break
        return "".join(kept)
    kept.append(line[pos:])
    return "".join(kept)


_WORD_BEFORE = re.compile(r"(?:\b(\w+) |@)$")


def _names_something(before: str, names: Iterable[str]) -> bool:
    match = _WORD_BEFORE.search(before)
    if match is None:
        return False
    word = match.group(1)
    return word is None or word.lower() in names  # None: right after "@"


def _finish(line: str) -> str:
    """One line of printable text, at most MAX_LINE characters."""
    line = "".join(ch if ch.isprintable() else " " for ch in line).strip()
    if len(line) > MAX_LINE:
        line = line[: MAX_LINE - len(ELLIPSIS)] + ELLIPSIS
    return line


def _unknown_engine(stderr: str) -> str:
    return NOT_RECOGNISED if stderr.strip() else ""


_BY_ENGINE: dict[str, Callable[[str], str]] = {
    "mysql": mysql_error_line,
    "mariadb": mysql_error_line,
    "postgres": postgres_error_line,
    "mongo": mongo_error_line,
}
