"""Every compiled file of a built layer is for the architecture it was built for.

`infra/sam.sh build` builds the layer with the wheels of the template parameter
`Architecture` (infra/layer/Makefile), and writes what it was built for into the layer's
`architecture` file. Here every ELF file under each build (`.aws-sam/build*`: CI builds
`.aws-sam/build` for x86_64, the machine that runs it, and `.aws-sam/build-arm64`'s layer
for arm64, the default) is read and its header's e_machine compared with that architecture.
Skipped when nothing is built.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from shared.template import REPO_ROOT, load_template

E_MACHINE = {"arm64": 183, "x86_64": 62}  # EM_AARCH64, EM_X86_64 (the ELF specification's numbers)


def layer_builds() -> list[Path]:
    return sorted(path.parent for path in (REPO_ROOT / ".aws-sam").glob("*/SharedLayer/architecture"))


def elf_machine(path: Path) -> int | None:
    """The e_machine of an ELF file, None for any other file."""
    with path.open("rb") as file:
        header = file.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    byte_order = "<" if header[5] == 1 else ">"  # EI_DATA: 1 little-endian, 2 big-endian
    return struct.unpack_from(f"{byte_order}H", header, 18)[0]


def test_the_architectures_are_the_templates() -> None:
    parameter = load_template()["Parameters"]["Architecture"]
    assert set(parameter["AllowedValues"]) == set(E_MACHINE) and parameter["Default"] == "arm64"


def test_elf_machine_reads_this_interpreter() -> None:
    """The reader itself, on a file whose architecture is known: the running python."""
    import platform
    import sys

    expected = {"x86_64": E_MACHINE["x86_64"], "aarch64": E_MACHINE["arm64"], "arm64": E_MACHINE["arm64"]}
    if platform.machine() not in expected:
        pytest.skip(f"no e_machine known here for {platform.machine()}")
    assert elf_machine(Path(sys.executable).resolve()) == expected[platform.machine()]
    assert elf_machine(Path(__file__)) is None


@pytest.mark.sam
@pytest.mark.parametrize("build", layer_builds(), ids=lambda path: path.parent.name)
def test_every_compiled_file_of_the_layer_is_for_its_architecture(build: Path) -> None:
    architecture = (build / "architecture").read_text().strip()
    assert architecture in E_MACHINE, f"{build}: built for {architecture!r}"
    machines: dict[int, list[str]] = {}
    for path in (build / "python").rglob("*"):
        if path.is_file() and not path.is_symlink():
            machine = elf_machine(path)
            if machine is not None:
                machines.setdefault(machine, []).append(str(path.relative_to(build)))
    assert machines, f"{build}: no compiled extension at all (pydantic-core has one)"
    wrong = {machine: files[:5] for machine, files in machines.items() if machine != E_MACHINE[architecture]}
    assert not wrong, f"{build} is {architecture} but holds other machines' code: {wrong}"
    if build.parent.name.startswith("build-"):  # .aws-sam/build-<architecture>
        assert build.parent.name == f"build-{architecture}", build
