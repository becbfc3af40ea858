"""The package's shape: no import circle, short job steps, private Keras fenced."""

import ast
import pathlib
import re

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_kd"
# The modules allowed to touch Keras internals (each under the pinned-version
# test in test_package.py).
KERAS_FENCE = {"keras_kd/multi_worker.py", "keras_kd/keras_compat.py"}
PRIVATE_KERAS = re.compile(r"keras\.src|_initial_epoch|_compile_metrics|_maybe_symbolic_build")
MAX_JOB_FUNCTION_LINES = 40


def _modules():
    """`{dotted name: path}` of every module of the package."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported(name, tree, modules):
    """The package's modules that module `name` imports, anywhere in its body
    (function-level imports too), but not its own parent packages, which are
    always imported before it."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                       else node.module for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and not name.startswith(target + ".") and target != name:
                found.add(target)
    return found


def import_graph():
    """`{module: modules it imports}` over the package."""
    modules = _modules()
    return {name: _imported(name, ast.parse(path.read_text()), modules)
            for name, path in modules.items()}


def find_cycle(graph):
    """One import circle as a list of modules (first == last), or `None`."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert "keras_kd.ensemble" in graph["keras_kd.jobs.teachers"]  # the graph sees imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_find_cycle_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def _function_lengths(path):
    """`(name, lines)` of every function in a file, its docstring aside."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        lines = node.end_lineno - node.lineno + 1
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            lines -= body[0].end_lineno - body[0].lineno + 1
        yield node.name, lines


@pytest.mark.parametrize("path", sorted((PACKAGE / "jobs").glob("*.py")), ids=lambda p: p.name)
def test_every_job_function_is_a_short_step(path):
    long = {name: lines for name, lines in _function_lengths(path)
            if lines > MAX_JOB_FUNCTION_LINES}
    assert not long, f"{path.name}: functions over {MAX_JOB_FUNCTION_LINES} lines: {long}"


def test_private_keras_is_reached_only_from_the_fenced_modules():
    reaching = sorted(
        str(path.relative_to(PACKAGE.parent)) for path in PACKAGE.rglob("*.py")
        if PRIVATE_KERAS.search(path.read_text())
    )
    assert set(reaching) <= KERAS_FENCE, reaching
    assert "keras_kd/keras_compat.py" in reaching


def test_the_readme_layout_lists_every_module():
    readme = (PACKAGE.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    missing = sorted(path.name for path in PACKAGE.rglob("*.py")
                     if path.name != "__init__.py" and path.name not in layout)
    assert not missing, f"README's layout does not list {missing}"


def test_seeds_and_digests_are_derived_in_their_modules_alone():
    recipes = re.compile(r"stateless_fold_in|hashlib|SeedSequence")
    reaching = sorted(
        str(path.relative_to(PACKAGE.parent)) for path in PACKAGE.rglob("*.py")
        if recipes.search(path.read_text())
    )
    assert reaching == ["keras_kd/digests.py", "keras_kd/seeds.py"], reaching
