"""A real code-search set built on the spot from the running interpreter's standard library.

Query = a function's or method's docstring summary line; target = its source with the docstring
removed. Files are parsed with `ast`, never imported. The split is a deterministic hash of the
qualified name, so every machine with the same Python builds the same set. The many `close` /
`read` / `get` methods across the library are natural hard negatives.
"""

from __future__ import annotations

import ast
import hashlib
import sysconfig
import textwrap
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

# Test suites, IDLE, demo and vendored code would add noise or near-duplicates.
_SKIPPED_PARTS = {"test", "tests", "idlelib", "turtledemo", "lib2to3", "site-packages", "dist-packages", "__pycache__", "ensurepip", "pydoc_data"}


@dataclass(frozen=True)
class CodePair:
    qualified_name: str
    query: str
    code: str

    @property
    def split(self) -> str:
        """"test" (10 %), "dev" (10 %) or "train", from a hash of the qualified name."""
        bucket = int(hashlib.sha1(self.qualified_name.encode()).hexdigest(), 16) % 10
        return "test" if bucket == 0 else "dev" if bucket == 1 else "train"


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _summary_line(docstring: str) -> str | None:
    for line in docstring.strip().splitlines():
        line = line.strip()
        if line:
            return line
    return None


def _pairs_in_file(path: Path, module: str) -> list[CodePair]:
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    lines = source.splitlines()
    pairs = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}.{child.name}")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                pair = _pair(child, f"{prefix}.{child.name}", lines)
                if pair is not None:
                    pairs.append(pair)

    visit(tree, module)
    return pairs


def _pair(function: ast.FunctionDef | ast.AsyncFunctionDef, qualified_name: str, lines: list[str]) -> CodePair | None:
    docstring = ast.get_docstring(function)
    if not docstring or len(function.body) < 2:
        return None  # no docstring, or nothing but the docstring
    query = _summary_line(docstring)
    if query is None or len(query.split()) < 3:
        return None
    first = (function.decorator_list[0].lineno if function.decorator_list else function.lineno) - 1
    doc_node = function.body[0]
    kept = lines[first : doc_node.lineno - 1] + lines[doc_node.end_lineno : function.end_lineno]
    code = textwrap.dedent("\n".join(kept)).strip("\n")
    return CodePair(qualified_name, query, code)


def load_stdlib_code_pairs(root: str | Path | None = None) -> list[CodePair]:
    """All (docstring summary → code) pairs of the standard library, deduplicated.

    A query that summarises several functions (e.g. "Return a copy of the set.") is kept once, for
    the first function in sorted path order, so no query has two correct answers; identical code
    bodies are kept once too.
    """
    root = Path(root) if root is not None else stdlib_root()
    pairs, seen_queries, seen_code = [], set(), set()
    paths = [path for path in sorted(root.rglob("*.py")) if not _SKIPPED_PARTS & set(path.relative_to(root).parts)]
    for path in tqdm(paths, desc="Parsing the standard library", unit="file"):
        relative = path.relative_to(root)
        module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        for pair in _pairs_in_file(path, module):
            if pair.query in seen_queries or pair.code in seen_code:
                continue
            seen_queries.add(pair.query)
            seen_code.add(pair.code)
            pairs.append(pair)
    return pairs


def stdlib_code_dataset(root: str | Path | None = None):
    """The pairs as a `datasets.DatasetDict` with splits train / dev / test and columns
    ``query``, ``positive`` (the code) and ``qualified_name``."""
    from datasets import Dataset, DatasetDict

    by_split: dict[str, dict[str, list[str]]] = {
        split: {"query": [], "positive": [], "qualified_name": []} for split in ("train", "dev", "test")
    }
    for pair in load_stdlib_code_pairs(root):
        columns = by_split[pair.split]
        columns["query"].append(pair.query)
        columns["positive"].append(pair.code)
        columns["qualified_name"].append(pair.qualified_name)
    return DatasetDict({split: Dataset.from_dict(columns) for split, columns in by_split.items()})
