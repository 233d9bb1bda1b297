"""Code-aware tokens for keyword search: which names a passage defines, which queries are
identifiers (``meshdex.index.identifiers``)."""

from __future__ import annotations

import pytest
from meshdex.index.identifiers import defined_names, query_code_terms, query_identifiers


@pytest.mark.parametrize(("text", "names"), [
    (".. function:: copyfileobj(fsrc, fdst[, length])\n\n   Copy the contents", ["copyfileobj"]),
    ("   .. method:: Path.resolve(strict=False)", ["path.resolve", "path", "resolve"]),
    (".. exception:: FileNotFoundError", ["filenotfounderror"]),
    (".. envvar:: PYTHONHASHSEED", ["pythonhashseed"]),
    (".. c:function:: PyObject* PyList_New(Py_ssize_t len)", ["pylist_new"]),
    (".. cmdoption:: -f, --failfast", ["-f", "--failfast"]),
    (".. cmdoption:: --with-lto=[full|thin|no|yes]", ["--with-lto", "with", "lto"]),
    ("def parse_args(argv):\n    return argv", ["parse_args"]),
    ("    async def fetch(url):", ["fetch"]),
    ("class TokenBucket:\n    pass", ["tokenbucket"]),
    ("export async function loadConfig(path) {", ["loadconfig"]),
    ("func (s *Server) ServeHTTP(w http.ResponseWriter) {", ["servehttp"]),
    ("pub fn parse_header(line: &str) -> Header {", ["parse_header"]),
    ("usage: tool [-h]\n\n  -h, --help     show this help\n  --dry-run      read only",
     ["-h", "--help", "--dry-run", "dry", "run"]),
    ("## The `parse_args` function\n\nIt parses.", ["parse_args"]),
    # mentions are not definitions
    ("Use :func:`shutil.copyfileobj` to copy; copyfileobj(a, b) streams.", []),
    ("- a bullet point\n- another one", []),
    (".. note:: Do not call this twice.\n.. versionadded:: 3.8", []),
])
def test_defined_names(text: str, names: list[str]):
    assert defined_names(text) == names


@pytest.mark.parametrize(("query", "identifiers"), [
    ("shutil.copyfileobj", ["shutil.copyfileobj"]),
    ("parse_args", ["parse_args"]),
    ("FileNotFoundError", ["FileNotFoundError"]),
    ("EADDRINUSE", ["EADDRINUSE"]),
    ("python -X importtime", ["-X"]),
    ("--with-pydebug", ["--with-pydebug"]),
    ("QZ-7731", ["QZ-7731"]),
    ("std::vector", ["std::vector"]),
    ("error E4471", ["E4471"]),
    # words, however short, and questions are not identifier queries
    ("glob", []),
    ("What is a lambda?", []),
    ("How do I use os.path.join in a loop?", []),
])
def test_query_identifiers(query: str, identifiers: list[str]):
    assert query_identifiers(query) == identifiers


def test_query_code_terms_are_names_whole_and_in_parts():
    assert query_code_terms("shutil.copyfileobj") == ["shutil.copyfileobj", "shutil",
                                                      "copyfileobj"]
    assert query_code_terms("unittest --failfast") == ["--failfast"]
    assert query_code_terms("What is a lambda?") == []
