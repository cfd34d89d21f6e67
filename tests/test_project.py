"""The repository agrees with itself: shipped configs validate, the docs name files that exist,
the README's CLI table and layout match the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from irpo.config import demo_config_path, load_config

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "src" / "irpo"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _shipped_configs() -> list[Path]:
    return sorted(
        [*(ROOT / "configs").glob("*.yaml"), *(ROOT / "configs" / "cluster").glob("*.yaml")]
    )


CLUSTER_SCRIPTS = sorted(
    p for p in (ROOT / "configs" / "cluster").iterdir() if p.suffix in (".sh", ".sbatch")
)


@pytest.mark.parametrize("path", CLUSTER_SCRIPTS, ids=lambda p: p.name)
def test_the_cluster_templates_are_valid_bash(path: Path) -> None:
    import subprocess

    checked = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_the_slurm_template_sets_a_valid_launch_section() -> None:
    """Its `--set` overrides over its default config, with the values SLURM gives (2 nodes)."""
    text = (ROOT / "configs" / "cluster" / "slurm.sbatch").read_text(encoding="utf-8")
    config = re.search(r"CONFIG=\$\{CONFIG:-(\S+)\}", text)
    assert config is not None
    values = {"$NODES": "2", "$MAIN": "node-0", "$GPUS_PER_NODE": "8"}
    overrides = []
    for raw in re.findall(r'--set ("[^"]+"|\S+)', text):
        item = raw[1:-1] if raw.startswith('"') else raw
        for name, value in values.items():
            item = item.replace(f'"{name}"', value).replace(name, value)
        overrides.append(item)
    cfg = load_config(ROOT / config.group(1), overrides)
    assert cfg.launch.mode == "processes"
    assert (cfg.launch.machines, cfg.launch.main_process_ip, cfg.launch.train_processes) == (
        2, "node-0", 8,
    )  # fmt: skip
    assert cfg.launch.node_launcher == [
        "srun", "--overlap", "--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
    ]  # fmt: skip


@pytest.mark.parametrize("path", _shipped_configs(), ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path) -> None:
    config = load_config(path)
    assert config.loop.iterations >= 1


def test_the_demo_config_is_the_packaged_one() -> None:
    """`irpo demo` reads the package's copy; configs/demo.yaml is what users read and copy."""
    packaged = demo_config_path()
    assert packaged.read_bytes() == (ROOT / "configs" / "demo.yaml").read_bytes(), (
        "configs/demo.yaml and src/irpo/configs/demo.yaml differ: edit one, copy it to the other"
    )
    assert load_config(packaged).model.name_or_path == "scratch"


def _doc_paths(text: str) -> set[str]:
    """Repository paths a doc names: src/irpo/..., and backticked bench/, tests/, configs/ ones."""
    paths = set(re.findall(r"src/irpo/[\w./-]*[\w/]", text))
    for quoted in re.findall(r"`([^`\s]+)`", text):
        if re.match(r"(bench|tests|configs|docs)/[\w./-]+$", quoted):
            paths.add(quoted)
    return paths


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_only_files_that_exist(doc: Path) -> None:
    missing = sorted(
        p for p in _doc_paths(doc.read_text(encoding="utf-8")) if not (ROOT / p).exists()
    )
    assert missing == [], f"{doc.name} names paths that do not exist: {missing}"


def test_the_path_check_can_fail() -> None:
    text = "see `src/irpo/train.py` and `bench/gone.py`, not `irpo run`"
    assert _doc_paths(text) == {"src/irpo/train.py", "bench/gone.py"}
    assert not (ROOT / "src/irpo/train.py").exists()


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_cli_table_lists_exactly_the_apps_commands() -> None:
    import typer.main

    from irpo.cli import app

    group = typer.main.get_command(app)
    commands = set(group.commands)  # type: ignore[attr-defined]
    rows = [line for line in _readme_section("The CLI").splitlines() if line.startswith("| `irpo")]
    in_table = {name for row in rows for name in re.findall(r"`irpo ([a-z-]+)", row)}
    assert in_table == commands


def test_readme_layout_lists_every_module_of_the_package() -> None:
    block = _readme_section("Project layout").split("```")[1]
    listed = set(re.findall(r"^  (\S+)", block.split("src/irpo/\n", 1)[1], flags=re.M))
    actual = {
        p.name + ("/" if p.is_dir() else "")
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and not p.name.startswith("__"))
        or (p.is_dir() and (p / "__init__.py").exists())
    }
    assert listed == actual
