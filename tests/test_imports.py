"""The package reads top-down: no module imports one that imports it back (directly
or through others), at module level or inside a function."""
import ast
import pathlib

from conftest import REPO

# Imports that close a cycle on purpose, (importer, imported): data.load hands a corpus
# name to corpora.load (a lazy import in the function), and corpora builds on data's
# Dataset: one front door for images and text alike.
ALLOWED_BACK_EDGES = [("vaejax.data", "vaejax.corpora")]


def _modules() -> dict[str, pathlib.Path]:
  root = REPO / "vaejax"
  names = {}
  for path in root.rglob("*.py"):
    parts = path.relative_to(REPO).with_suffix("").parts
    names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return names


def _imports(path: pathlib.Path, modules) -> set[str]:
  """The package's modules that `path` imports anywhere in its code."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names if a.name in modules}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vaejax"):
      submodules = {f"{node.module}.{a.name}" for a in node.names}
      found |= submodules & set(modules)
      if not submodules <= set(modules):  # names from the module itself
        found.add(node.module)
  return found - {"vaejax"}  # the package's __init__ only re-exports


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  cycles, state = [], {}

  def visit(node, stack):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        cycles.append(stack[stack.index(nxt):])
      elif nxt not in state:
        visit(nxt, stack)
    stack.pop()
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node, [])
  return cycles


def test_cycle_finder_finds_a_planted_cycle():
  assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert _cycles({"a": {"b"}, "b": set()}) == []
  # An allowed edge is taken out of the graph (not its cycles filtered out after the
  # search, which reports one cycle per back edge and could hide a second one).
  graph = {"c": {"d", "y"}, "d": {"c"}, "y": {"d"}}
  assert _cycles(graph) != []
  graph["d"].discard("c")
  assert _cycles(graph) == []


def test_no_module_imports_one_that_imports_it_back():
  modules = _modules()
  assert "vaejax.models.vqvae" in modules and "vaejax.data_files" in modules
  graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
  assert "vaejax.data" in graph["vaejax.run_data"]  # the walk sees imports
  for importer, imported in ALLOWED_BACK_EDGES:
    assert imported in graph[importer], f"{importer} no longer imports {imported}: drop the entry"
    graph[importer].discard(imported)
  assert _cycles(graph) == []
