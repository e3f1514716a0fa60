"""Every install path resolves torch through the one pin file, which names PyPI's CPU build.

On a machine with internet, `pip install torch==X` pulls the CUDA build (GBs of nvidia-*
wheels) unless PyTorch's CPU index is given. `requirements/torch-cpu.txt` holds the version and
that index; these tests fail if any way the project installs itself (the Makefile's targets,
Binder's files, CI) could resolve torch without it, or if the pin or the index is restated
elsewhere.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PIN = "requirements/torch-cpu.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _pin_lines() -> list[str]:
    text = (ROOT / PIN).read_text()
    return [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


def test_the_pin_file_holds_the_version_and_the_cpu_index():
    lines = _pin_lines()
    assert f"--extra-index-url {CPU_INDEX}" in lines
    pins = [ln for ln in lines if ln.startswith("torch")]
    assert len(pins) == 1 and re.fullmatch(r"torch==\d+\.\d+\.\d+", pins[0]), pins


def _install_commands_of_make() -> list[str]:
    """The pip commands `make demo` and `make setup` run on a machine with no venv yet."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    out = subprocess.run(
        [make, "-n", "-B", "VENV=/nonexistent-venv", "setup", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [ln for ln in out.splitlines() if "pip install" in ln]


def _binder_commands() -> list[str]:
    lines = []
    for name in ("binder/postBuild", "binder/check.sh", ".ci/run"):
        for ln in (ROOT / name).read_text().splitlines():
            code = ln.split("#", 1)[0]
            if re.search(r"-m pip install\b", code):
                lines.append(code)
    return lines


def _resolves_torch_through_the_pin(command: str) -> bool:
    words = shlex.split(command.replace("$(TORCH)", PIN).rstrip(" \\"))
    for flag, value in itertools.pairwise(words):
        if flag in ("-r", "-c", "--requirement", "--constraint") and value in (
            PIN,
            "binder/requirements.txt",
        ):
            return True
    return False


def test_every_make_install_goes_through_the_pin():
    commands = _install_commands_of_make()
    # the first install of each target puts torch in place from the pin file itself
    assert sum(f"-r {PIN}" in c for c in commands) >= 2, commands
    assert len(commands) >= 4, commands
    bad = [c for c in commands if not _resolves_torch_through_the_pin(c)]
    assert not bad, f"pip installs that could resolve torch without {PIN}: {bad}"


def test_every_binder_and_ci_install_goes_through_the_pin():
    commands = _binder_commands()
    assert commands, "no pip install found in binder/ (did the files move?)"
    bad = [c for c in commands if not _resolves_torch_through_the_pin(c)]
    assert not bad, f"pip installs that could resolve torch without {PIN}: {bad}"
    binder_reqs = (ROOT / "binder/requirements.txt").read_text()
    assert "-r ../requirements/torch-cpu.txt" in binder_reqs


def test_the_pin_and_the_index_live_in_one_place():
    """No other install file restates torch's version or the CPU index."""
    others = [
        ROOT / "Makefile",
        ROOT / "pyproject.toml",
        ROOT / "binder/requirements.txt",
        ROOT / "binder/postBuild",
        ROOT / "binder/check.sh",
    ]
    for path in others:
        code = "\n".join(ln.split("#", 1)[0] for ln in path.read_text().splitlines())
        assert CPU_INDEX not in code, f"{path.name} restates the CPU index"
        assert not re.search(r"torch\s*==\s*\d", code), f"{path.name} restates torch's pin"


def test_pip_applies_the_cpu_index_from_the_pin_file():
    """pip itself reads the index from the pin file, also through binder's nested -r."""
    env = dict(os.environ, PIP_RETRIES="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
    for req in (PIN, "binder/requirements.txt"):
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps"]
        cmd += ["--ignore-installed", "-r", req]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
        looking = [ln for ln in out.stdout.splitlines() if ln.startswith("Looking in indexes")]
        assert looking and CPU_INDEX in looking[0], (
            f"{req}: {out.stdout[-1500:]}{out.stderr[-1500:]}"
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert re.search(r"Would install .*\btorch-\d", out.stdout), out.stdout[-1500:]


@pytest.mark.slow
def test_the_wheel_ships_the_front_end_bundle_and_not_its_sources(tmp_path):
    """The widget loads `static/bundle/explorer.js` and `.css`: the wheel must hold them as
    committed (a build tool that drops an ignored or unlisted file would ship a widget that
    cannot render), and not the modules they are built from."""
    import zipfile

    env = dict(os.environ, PIP_RETRIES="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("sd_widgets-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        static = "sd_widgets/widget/static/"
        for name in ("bundle/explorer.js", "bundle/explorer.css"):
            assert z.read(static + name) == (ROOT / static / name).read_bytes(), name
    sources = {n for n in names if n.startswith(static) and not n.startswith(static + "bundle/")}
    assert sources == set(), sorted(sources)
    assert "sd_widgets/widget/_explorer.py" in names
