"""Take the script out of a model's answer and check it before anything runs it.

Models wrap code in Markdown fences, often with prose around it, sometimes with a second block
(a shell command, an example output). The script is the longest block marked Python, else the
longest unmarked one; an answer that is only code is taken whole. It must parse. Imports of
modules that are not importable where the script runs are named before it runs, and so is a
script that never looks at `sys.argv`, since it cannot find the data file.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Collection
from dataclasses import dataclass

_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[ \t]*([\w+.-]*)[^\n]*\n", re.MULTILINE)
_PYTHON_TAGS = frozenset({"python", "python3", "py", "py3"})


@dataclass(frozen=True)
class ExtractedScript:
    """The script found in an answer, or why there is none.

    Attributes:
        code: The script; None when the answer has no usable one.
        problem: Why there is no script ("" when there is one).
        warnings: What to know before running it (a cut-off block, imports that will fail).
    """

    code: str | None
    problem: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when there is a script that parses."""
        return self.code is not None


@dataclass(frozen=True)
class _Block:
    tag: str
    code: str
    closed: bool


def _blocks(answer: str) -> list[_Block]:
    """Every fenced block, in order; one left open at the end runs to the end of the answer."""
    blocks = []
    position = 0
    while (opening := _FENCE.search(answer, position)) is not None:
        fence, tag = opening.group(1), opening.group(2).lower()
        closing = re.compile(
            rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.MULTILINE
        ).search(answer, opening.end())
        if closing is None:
            blocks.append(_Block(tag, answer[opening.end() :], closed=False))
            break
        blocks.append(_Block(tag, answer[opening.end() : closing.start()], closed=True))
        position = closing.end()
    return blocks


def _choose(blocks: list[_Block]) -> _Block | None:
    python = [b for b in blocks if b.tag in _PYTHON_TAGS]
    untagged = [b for b in blocks if not b.tag]
    candidates = python or untagged
    return max(candidates, key=lambda b: len(b.code)) if candidates else None


def _parse(code: str) -> ast.Module | str:
    """The module, or why it does not parse (`line 3: invalid syntax`)."""
    try:
        return ast.parse(code)
    except SyntaxError as exc:
        where = f"line {exc.lineno}: " if exc.lineno else ""
        return f"{where}{exc.msg}"
    except (ValueError, RecursionError, MemoryError) as exc:
        return str(exc) or type(exc).__name__


def _looks_like_code(tree: ast.Module) -> bool:
    """A bare answer counts as a script only when it imports or calls something."""
    return any(isinstance(node, ast.Import | ast.ImportFrom | ast.Call) for node in ast.walk(tree))


def imported_modules(tree: ast.Module) -> list[str]:
    """Top-level names of the modules a script imports (absolute imports only), in order."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found = [node.module]
        else:
            continue
        for name in found:
            top = name.partition(".")[0]
            if top not in names:
                names.append(top)
    return names


def _warnings(tree: ast.Module, code: str, libraries: Collection[str]) -> list[str]:
    missing = [
        name
        for name in imported_modules(tree)
        if name not in sys.stdlib_module_names and name not in libraries
    ]
    warnings = []
    if missing:
        warnings.append(
            f"it imports {', '.join(missing)}, which the Python that runs it cannot import"
        )
    if "argv" not in code:
        warnings.append("it never reads sys.argv, so it may not find the data file")
    return warnings


def extract_script(answer: str, libraries: Collection[str] = ()) -> ExtractedScript:
    """Find the script in a model's answer and check it parses.

    Args:
        answer: The model's whole answer.
        libraries: Libraries besides the standard library that the script may import.

    Returns:
        The script with its warnings, or the problem that leaves no script to run.
    """
    blocks = _blocks(answer)
    chosen = _choose(blocks)
    warnings: list[str] = []
    if chosen is None:
        if blocks:
            tags = ", ".join(sorted({b.tag for b in blocks}))
            return ExtractedScript(None, f"the answer has code blocks ({tags}) but none in Python")
        bare = answer.strip()
        tree = _parse(bare) if bare else "empty"
        if isinstance(tree, str) or not _looks_like_code(tree):
            return ExtractedScript(None, "the answer has no code block")
        return ExtractedScript(bare + "\n", "", tuple(_warnings(tree, bare, libraries)))
    code = chosen.code.strip("\n")
    if not code.strip():
        return ExtractedScript(None, "the answer's code block is empty")
    parsed = _parse(code)
    if isinstance(parsed, str):
        cut = "" if chosen.closed else " (the code block is not closed: the answer was cut off)"
        return ExtractedScript(None, f"the code does not parse: {parsed}{cut}")
    if not chosen.closed:
        warnings.append("the code block is not closed: the answer may have been cut off")
    warnings.extend(_warnings(parsed, code, libraries))
    return ExtractedScript(code + "\n", "", tuple(warnings))
