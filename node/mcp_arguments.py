"""Strict tool arguments for the MCP server: unknown names refused, problems told one per line.

The SDK builds each tool's argument model from the function's signature and lets extra
arguments through unseen, so an assistant that guessed a name (``k`` for ``top_k``) got the
default and never learnt; its validation errors reach the model as pydantic's multi-line dump
with a documentation link. ``strict_tool`` publishes ``additionalProperties: false`` and
validates the same way; ``argument_problems`` turns a ``ValidationError`` into lines such as
``top_k: must be an integer, got 'ten'``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver.tools import Tool
from pydantic import ConfigDict, ValidationError

SHOWN_VALUE_CHARS = 60  # of a refused value, quoted back in the problem's line

# pydantic error type -> what the argument must be
EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "an object",
}
# pydantic error type -> comparison, for a bound given in the error's ctx under the same name
BOUNDS = {"greater_than_equal": ("ge", ">="), "greater_than": ("gt", ">"),
          "less_than_equal": ("le", "<="), "less_than": ("lt", "<")}


def strict_tool(function: Callable[..., Any], *, name: str, description: str) -> Tool:
    """The SDK's ``Tool`` for ``function``, its arguments model refusing unknown names (and its
    published input schema saying so)."""
    tool = Tool.from_function(function, name=name, description=description)
    loose = tool.fn_metadata.arg_model
    strict = type(loose.__name__, (loose,), {
        "model_config": ConfigDict(extra="forbid", title=loose.__name__),
        "__module__": __name__,
    })
    metadata = tool.fn_metadata.model_copy(update={"arg_model": strict})
    return tool.model_copy(update={"fn_metadata": metadata,
                                   "parameters": strict.model_json_schema(by_alias=True)})


def argument_names(tool: Tool) -> list[str]:
    """The argument names ``tool`` takes, in its signature's order."""
    return list(tool.parameters.get("properties", {}))


def argument_problems(error: ValidationError, *, tool: str, known: list[str]) -> str:
    """One line per problem in ``error``, each starting with the argument's name."""
    return "\n".join(_problem(detail, tool=tool, known=known) for detail in error.errors())


def _problem(detail: Any, *, tool: str, known: list[str]) -> str:
    where = ".".join(str(part) for part in detail["loc"]) or "arguments"
    kind = detail["type"]
    if kind == "missing":
        return f"{where}: required"
    if kind == "extra_forbidden":
        return (f"{where}: unknown argument; {tool} takes "
                f"{', '.join(known) if known else 'no arguments'}")
    if kind in EXPECTED:
        return f"{where}: must be {EXPECTED[kind]}, got {_shown(detail['input'])}"
    if kind in BOUNDS:
        bound, sign = BOUNDS[kind]
        return f"{where}: must be {sign} {detail['ctx'][bound]}, got {_shown(detail['input'])}"
    message = detail["msg"]
    return f"{where}: {message[:1].lower()}{message[1:]}, got {_shown(detail['input'])}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[:SHOWN_VALUE_CHARS] + "…"
