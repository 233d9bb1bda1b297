"""Code-aware tokens: the names a passage defines, and which queries are identifiers.

The keyword index's word tokens (runs of word characters) keep ``parse_args`` and ``EINVAL``
whole and cut ``os.path.join`` and ``--dry-run`` at the punctuation, but they cannot tell the
passage that *defines* ``copyfileobj`` from the five that mention it in passing; BM25 ranks
the ones that mention it most. Someone who types an identifier wants where it is defined, so
the names each passage defines are indexed as well: what a definition line declares, i.e.
Sphinx/reST object directives (``.. function:: copyfileobj(``, ``.. cmdoption:: -f,
--failfast``), ``def``/``class`` and their Go/Rust/JavaScript kin, option lists as ``--help``
prints them, and inline code in Markdown headings; each whole and by its word parts, so
``shutil.copyfileobj`` finds ``.. function:: copyfileobj(`` in the shutil page.

A query is an *identifier query* when it is a few tokens and one of them looks like code
(``_``, ``.``, ``::``, a leading dash, camelCase, ALLCAPS, letters next to digits); only those
search the defined names and weigh the keyword ranking more (``meshdex.index.fusion``), so a
question in words ranks exactly as before.
"""

from __future__ import annotations

import re

WORD_PATTERN = r"\w+"
_WORD = re.compile(WORD_PATTERN)
_NAME = re.compile(r"-{0,2}\w+(?:(?:\.|::|-)\w+)*")
_OBJECT_DIRECTIVE = re.compile(
    r"^[ \t]*\.\.[ \t]+(?:\w+:)?(?:function|class|method|attribute|exception|data|decorator"
    r"|decoratormethod|classmethod|staticmethod|abstractmethod|coroutinefunction"
    r"|coroutinemethod|property|envvar|option|cmdoption|module|opcode|pdbcommand|describe"
    r"|macro|member|type|var|struct|enum|enumerator)::[ \t]+(.+)$",
    re.MULTILINE)
_CODE_DEFINITION = re.compile(
    r"^[ \t]*(?:"
    r"(?:async[ \t]+)?def[ \t]+(\w+)"  # Python
    r"|(?:export[ \t]+)?(?:abstract[ \t]+)?class[ \t]+(\w+)"  # Python, JavaScript, Java
    r"|(?:export[ \t]+)?(?:async[ \t]+)?function\*?[ \t]+(\w+)"  # JavaScript
    r"|func[ \t]+(?:\([^)]*\)[ \t]*)?(\w+)"  # Go
    r"|(?:pub(?:\([^)]*\))?[ \t]+)?(?:fn|struct|enum|trait)[ \t]+(\w+)"  # Rust
    r")",
    re.MULTILINE)
# "  -f, --failfast   Stop on first fail" as argparse, man pages and --help print it
_OPTION_LIST_LINE = re.compile(r"^[ \t]*(-{1,2}\w[^\n]*?)(?:[ \t]{2,}|\t|$)", re.MULTILINE)
_OPTION = re.compile(r"(?<![\w-])-{1,2}\w[\w-]*")
_MARKDOWN_HEADING = re.compile(r"^#{1,6}[ \t]+(.+)$", re.MULTILINE)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_CODE_LOOKING = re.compile(
    r"\w[._]\w|::|^-{1,2}\w|\w-\d|[a-z][A-Z]|^[A-Z][A-Z0-9_]{2,}$|[A-Za-z]\d|\d[A-Za-z]")
MAX_IDENTIFIER_QUERY_TOKENS = 4


def words(text: str) -> list[str]:
    """Runs of word characters, lower-cased: the tokens of the keyword index's text field."""
    return [token.lower() for token in _WORD.findall(text)]


def _with_parts(names: list[str]) -> list[str]:
    tokens = []
    for name in names:
        tokens.append(name.lower())
        parts = words(name)
        if len(parts) > 1:
            tokens += parts
    return tokens


def _directive_names(argument: str) -> list[str]:
    if argument.lstrip().startswith("-"):  # "-f, --failfast" or "--with-lto=[full|thin]"
        return _OPTION.findall(argument)
    signature = argument.split("(", 1)  # "PyObject* PyList_New(" names the last word before (
    names = _NAME.findall(signature[0]) if len(signature) > 1 else _NAME.findall(argument)
    if not names:
        return []
    return [names[-1] if len(signature) > 1 else names[0]]


def defined_names(text: str) -> list[str]:
    """The names ``text`` defines, each whole and by its word parts, lower-cased."""
    names: list[str] = []
    for match in _OBJECT_DIRECTIVE.finditer(text):
        names += _directive_names(match.group(1))
    for match in _CODE_DEFINITION.finditer(text):
        names += [group for group in match.groups() if group]
    for match in _OPTION_LIST_LINE.finditer(text):
        names += _OPTION.findall(match.group(1))
    for match in _MARKDOWN_HEADING.finditer(text):
        for code in _INLINE_CODE.findall(match.group(1)):
            if found := _NAME.search(code):
                names.append(found.group(0))
    return _with_parts(names)


def query_identifiers(query: str) -> list[str]:
    """The code-looking tokens of an identifier query (none for any other query), as typed."""
    tokens = query.split()
    if not tokens or len(tokens) > MAX_IDENTIFIER_QUERY_TOKENS:
        return []
    return [token for token in tokens if _CODE_LOOKING.search(token.strip("`'\"()"))]


def query_code_terms(query: str) -> list[str]:
    """Terms an identifier query looks up in the code fields: its names whole and in parts."""
    names = [found.group(0) for token in query_identifiers(query)
             if (found := _NAME.search(token))]
    return list(dict.fromkeys(_with_parts(names)))
