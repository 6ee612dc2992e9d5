"""The package layout is the pipeline: each folder a stage, and data flows one way - no module imports from a
stage above its own (function-level imports included), so there is no import loop between stages."""
import ast
from pathlib import Path

import finpeft

ROOT = Path(finpeft.__file__).parent
LAYERS = [  # lowest first; a module may import its own stage and any below it
    ["finpeft.errors", "finpeft.version"],
    ["finpeft.report"],  # metrics, report.md and plots: pure functions of outputs and labels
    ["finpeft.tasks"],  # what is predicted (classification, regression, multilabel): one module each
    ["finpeft.data"],
    ["finpeft.core"],
    ["finpeft.models"],
    ["finpeft.methods"],
    ["finpeft.training", "finpeft.llm"],
    ["finpeft.inference"],
    ["finpeft.experiments"],
    ["finpeft.api", "finpeft.cli", "finpeft.__main__", "finpeft"],  # the documented API and the CLI over it
]


def layer(module: str) -> int:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    assert best is not None, f"{module} is in no stage of LAYERS"
    return best[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("finpeft"):
            for alias in node.names:  # `from finpeft.models import features`: the module imported is .features
                full = f"{node.module}.{alias.name}"
                yield full if (ROOT.parent / full.replace(".", "/")).with_suffix(".py").is_file() else node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("finpeft"))


def test_no_module_imports_from_a_stage_above_its_own():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        me = module_name(path)
        for target in imports(path):
            if layer(target) > layer(me):
                upward.append(f"{me} -> {target}")
    assert not upward, "imports that go up the pipeline:\n" + "\n".join(upward)


def test_the_root_holds_only_the_api_the_cli_and_leaf_modules():
    flat = sorted(p.name for p in ROOT.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "api.py", "errors.py", "version.py"], flat
    stages = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file())
    assert stages == ["cli", "core", "data", "experiments", "inference", "llm", "methods", "models", "report",
                      "tasks", "training"], stages


def test_every_registered_method_keeps_the_method_protocol():
    """One module + one registry line: each reads into a MethodSpec (defaults filled in one place); a module that
    breaks the protocol is a TypeError naming what it lacks."""
    import types
    import pytest
    from pydantic import BaseModel
    from finpeft.inference.onnx import exportable
    from finpeft.methods import METHODS, get_method, method_spec
    specs = {n: get_method(n) for n in METHODS}
    assert {s.ARTIFACT for s in specs.values()} == {"hf", "peft", "frozen"}
    assert all((s.build_head if s.ARTIFACT == "frozen" else s.build) for s in specs.values())
    assert specs["qlora"].check.__module__ == "finpeft.methods.qlora" and specs["full"].check(None) is None
    assert specs["t5-head"].TASKS == ("classification",) and "regression" in specs["lora"].TASKS
    assert exportable() == "full, head, lora, dora, mamba-adapter, attention-adapter, setfit"
    assert specs["bilstm"].ONNX is False and specs["gamba"].ONNX is None
    broken = types.ModuleType("finpeft.methods.broken")
    broken.ARTIFACT, broken.Options = "frozen", type("Options", (BaseModel,), {})
    with pytest.raises(TypeError, match="build_head"):
        method_spec("broken", broken)


def test_the_cli_only_calls_the_documented_api():
    allowed = ("finpeft.api", "finpeft.errors", "finpeft.version", "finpeft.cli", "finpeft")
    for path in sorted((ROOT / "cli").glob("*.py")):
        stray = [t for t in imports(path) if t not in allowed and not t.startswith("finpeft.cli.")]
        assert not stray, f"{path.name} reaches past finpeft.api: {stray}"


def _import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        me = module_name(path)
        graph[me] = {t for t in imports(path) if t != me}
    for deps in graph.values():  # `from finpeft.training import x` where x is a name: the package's __init__
        deps &= set(graph)
    return graph


def test_no_import_loop_between_any_two_modules():
    """Within a stage too: no cycle of imports between modules (module-level and function-level alike), the
    packages' __init__ excluded only where it merely re-exports its own children."""
    graph = _import_graph()
    index, low, stack, on, cycles, n = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import loops:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_function_over_80_lines_and_no_module_over_400():
    """Training reads as named stages (train: plan -> build -> fit -> evaluate_test -> save); the same bound holds
    for every function in src/, and every module stays one screenful of concepts."""
    long_functions, long_files = [], []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 400:
            long_files.append(f"{module_name(path)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long_functions.append(f"{module_name(path)}.{node.name}: {n} lines")
    assert not long_functions and not long_files, "\n".join(long_functions + long_files)


def _task_branches(path: Path, kinds: set[str]) -> list[str]:
    """Lines of `path` that branch on a task kind: a comparison with the name ("regression" == task, task in
    ("classification", "regression")) or a test of a flag called so (`if regression:`, `x if s.regression`)."""
    def names(node) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return set().union(*(names(e) for e in node.elts)) if node.elts else set()
        return set()

    def flag(node) -> bool:
        return any(isinstance(n, ast.Name) and n.id in kinds or isinstance(n, ast.Attribute) and n.attr in kinds
                   for n in ast.walk(node))
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare) and any(names(x) & kinds for x in [node.left, *node.comparators]):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        elif isinstance(node, (ast.If, ast.IfExp, ast.While)) and flag(node.test):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_task_kind_is_an_if_outside_the_task_modules():
    """What differs between tasks lives in finpeft/tasks/<task>.py behind the Task protocol: no module outside
    them compares with "regression" / "multilabel" or tests a `regression` flag. (llm/tasks.py is the LLM
    track's task YAML, whose `metrics: [regression]` names how a generated number is scored.)"""
    exempt = {ROOT / "llm" / "tasks.py"}
    branches = [b for path in sorted(ROOT.rglob("*.py")) if "tasks" not in path.relative_to(ROOT).parts[:1]
                and path not in exempt for b in _task_branches(path, {"regression", "multilabel"})]
    assert not branches, "task-kind branches outside finpeft/tasks:\n" + "\n".join(branches)
    # the check can fail: it sees the one branch of the exempt module
    assert len(_task_branches(ROOT / "llm" / "tasks.py", {"regression"})) == 1


def test_a_task_is_one_module_and_one_registry_line():
    from finpeft.tasks import TASKS, get_task
    from finpeft.methods import get_method
    assert list(TASKS) == ["classification", "regression", "multilabel"]
    for name in TASKS:
        task = get_task(name)
        assert task.name == name and TASKS[name] == f"finpeft.tasks.{name}"
        missing = [m for m in ("read_labels", "prepare", "strata", "check_train", "targets", "load_targets", "gold", "check",
                               "valid_metrics", "calibrate", "loss", "run_info", "evaluate", "summary", "records",
                               "columns", "parity", "data_config", "doctor_split", "doctor_all")
                   if not callable(getattr(task, m, None))]
        assert not missing, f"{name} lacks {missing}"
        assert task.output in ("softmax", "raw", "sigmoid") and task.board and task.headline
    assert "multilabel" in get_method("lora").TASKS and "multilabel" not in get_method("setfit").TASKS
