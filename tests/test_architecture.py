"""The map of the code: imports only run down the layers, no module cycles, light packages stay light.

The import graph is built from the source with ``ast``: every import statement of every module
(at module level and inside functions), relative imports resolved, ``envs/`` and ``policies/``
read as ``coral.envs`` and ``coral.policies`` (their installed names).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Source folder of each top-level package, as installed (pyproject's package-dir).
PACKAGE_DIRS = {"coral": ROOT / "coral", "coral.envs": ROOT / "envs", "coral.policies": ROOT / "policies"}

#: Layers, low to high; a module may import its own layer and lower ones only.
LAYERS: list[tuple[str, ...]] = [
    (
        "coral", "coral.errors", "coral.threads", "coral.io", "coral.config", "coral.evidence", "coral.metrics",
        "coral.stats", "coral.results",
    ),
    ("coral.data",),
    ("coral.baselines",),
    ("coral.llm",),
    ("coral.serve",),
    ("coral.retrieval",),
    ("coral.align",),
    ("coral.envs",),
    ("coral.policies",),
    ("coral.pipeline",),
    ("coral.cli",),
]


def module_files() -> dict[str, Path]:
    """Every module of the coral package (with coral.envs and coral.policies) and its file."""
    out: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts]
            if parts[0] in ("envs", "policies") and package == "coral":
                continue  # not under coral/ anyway; guards against a stray copy
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            # coral/envs or coral/policies folders must not exist: they would shadow the mapping.
            out[name] = path
    return out


def layer_of(module: str) -> int:
    """Index of the layer of ``module`` (the longest matching prefix)."""
    best, best_len = -1, -1
    for k, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_len:
                if name == "coral" and module != "coral":
                    continue  # the bare package is core; its submodules are placed by their own names
                best, best_len = k, len(name)
    if best < 0:
        raise AssertionError(f"{module} is in no layer; add it to LAYERS")
    return best


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The coral modules that ``module`` imports anywhere in its source (``from pkg import sub`` counts as
    ``pkg.sub``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()

    def add(name: str) -> None:
        if name == "coral" or name.startswith("coral."):
            # The longest known module that ``name`` starts with (``a.b.C`` -> ``a.b``).
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            out.add(name)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                add(full if full in known else target)
    out.discard(module)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def test_no_module_lives_under_the_mapped_names() -> None:
    # coral/envs/ or coral/policies/ would shadow the top-level folders that install there.
    assert not (ROOT / "coral" / "envs").exists() and not (ROOT / "coral" / "policies").exists()


def test_every_module_has_a_layer(graph) -> None:
    for module in graph:
        layer_of(module)


def test_imports_only_run_down_the_layers(graph) -> None:
    upward = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if layer_of(target) > layer_of(module):
                upward.append(
                    f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
                )
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_import_cycles(graph) -> None:
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles between modules: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_graph_sees_function_level_and_relative_imports(tmp_path) -> None:
    # The checker itself: a function-level import and a relative import are both edges.
    pkg = tmp_path / "coral" / "data"
    pkg.mkdir(parents=True)
    source = pkg / "mod.py"
    source.write_text(textwrap.dedent("""
        from . import dataset
        def f():
            from coral.envs.batch import EpisodeBatch
    """))
    known = {"coral.data", "coral.data.dataset", "coral.data.mod", "coral.envs", "coral.envs.batch"}
    assert imports_of("coral.data.mod", source, known) == {"coral.data.dataset", "coral.envs.batch"}
    assert layer_of("coral.envs.batch") > layer_of("coral.data.mod")


BLOCKER = textwrap.dedent("""
    import sys

    class Block:
        blocked = {blocked!r}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ImportError(f"blocked for this test: {{name}}")
            return None

    sys.meta_path.insert(0, Block())
""")


def run_python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CORAL_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_coral_data_and_the_light_packages_import_without_gymnasium_or_torch(tmp_path) -> None:
    code = BLOCKER.format(blocked=["gymnasium", "torch", "stable_baselines3", "transformers"]) + textwrap.dedent("""
        import coral, coral.data, coral.config, coral.results, coral.llm, coral.retrieval, coral.baselines, coral.align
        import coral.serve, coral.serve.protocol, coral.serve.http, coral.serve.client
        from coral.data import load_dataset
        ds = load_dataset("gift_cards")
        print(ds.n_users)
    """)
    proc = run_python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "453"


def test_scripted_env_needs_neither_torch_nor_transformers_nor_sb3(tmp_path) -> None:
    code = textwrap.dedent("""
        import sys
        import gymnasium as gym
        import coral.envs

        # 5 steps, never terminated
        env = gym.make("CoRAL/CollabRetrieval-Scripted-v1", render_mode="ansi", split="test")
        obs, info = env.reset(seed=0)
        for _ in range(3):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        text = env.render()
        heavy = sorted(m for m in ("torch", "transformers", "stable_baselines3") if m in sys.modules)
        print(repr(text))
        print("heavy:", heavy)
        print("limit:", env.spec.max_episode_steps)
    """)
    proc = run_python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-2] == "heavy: []", proc.stdout
    assert lines[-1] == "limit: 10"
    assert " liked " in lines[0] or " disliked " in lines[0], lines[0]  # one evidence line per piece


def test_both_ids_declare_max_episode_steps_and_ansi_rendering() -> None:
    import gymnasium as gym

    import coral.envs
    from coral.envs.collab_retrieval import CollabRetrievalEnv

    for env_id in (coral.envs.ENV_ID, coral.envs.SCRIPTED_ENV_ID):
        assert gym.spec(env_id).max_episode_steps == 10
    assert CollabRetrievalEnv.metadata["render_modes"] == ["ansi"]
