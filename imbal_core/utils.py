"""Small shared helpers: seeding, devices, atomic file writes, the lab's home folder and the allowed data folders."""

from __future__ import annotations

import functools
import json
import os
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, ImbalLabError

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent
# A checkout (a clone of the repository, or an editable install of one) has pyproject.toml and app.py beside the
# package; an installed package sits alone in site-packages, with the app and the pretrained runs inside it.
IN_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "app.py").is_file()
INSTALLED_LAB_HOME = Path("~/.imbal_lab")  # the lab home of an installed package: site-packages is no place for data
PRETRAINED_VARIABLE = "IMBAL_LAB_PRETRAINED"
# The shipped run store (pretrained runs and generators): $IMBAL_LAB_PRETRAINED, else `pretrained/` of the checkout,
# else the copy a wheel installs as package data.
PRETRAINED_DIR = Path(
    os.environ.get(PRETRAINED_VARIABLE) or (REPO_ROOT / "pretrained" if IN_CHECKOUT else PACKAGE_ROOT / "pretrained")
).expanduser()


def lab_home() -> Path:
    """Where caches and runs live: $IMBAL_LAB_HOME, else `lab_data/` beside the package in a checkout and
    ~/.imbal_lab for an installed package."""
    default = REPO_ROOT / "lab_data" if IN_CHECKOUT else INSTALLED_LAB_HOME
    return Path(os.environ.get("IMBAL_LAB_HOME", default)).expanduser()


DATA_ROOTS_VARIABLE = "IMBAL_LAB_DATA_ROOTS"


def data_roots() -> list[Path]:
    """The folders data sets may be read from (resolved): $IMBAL_LAB_DATA_ROOTS, folders separated by os.pathsep,
    when set; else the lab home, the system's temporary folder and `shared/data` beside the repository (not the
    user's home: a page address could list its folders through error messages). The app reads no data path outside
    them (`restrict_data_reads`), so it cannot be used to probe the machine."""
    configured = os.environ.get(DATA_ROOTS_VARIABLE)
    if configured:
        return [Path(folder).expanduser().resolve() for folder in configured.split(os.pathsep) if folder]
    defaults = (lab_home(), Path(tempfile.gettempdir()), REPO_ROOT.parent / "shared" / "data")
    return [folder.resolve() for folder in defaults]


def restrict_data_reads() -> None:
    """From now on, in this process, every data path must lie inside `data_roots()`. The app calls this: a web page
    must not read the server's files. The command line reads any path its user can, unless the variable is set."""
    os.environ.setdefault(DATA_ROOTS_VARIABLE, os.pathsep.join(str(root) for root in data_roots()))


def software_environment(device: torch.device) -> str:
    """What besides config and code moves a run's numbers, in one line: the libraries' versions, the CPU's vector
    instructions and torch's thread count (they decide how float sums are split and rounded), or the GPU. The same
    seed gives the same numbers in the same environment; elsewhere the numbers part from the first epoch, and the
    final metrics differ in their second or third decimal. `numerics_environment` has the parts that tell two
    machines apart."""
    import platform

    import PIL
    import timm

    hardware = f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}, threads {torch.get_num_threads()}"
    if device.type == "cuda":
        hardware += f", {torch.cuda.get_device_name(device)}"
    return (
        f"torch {torch.__version__}, numpy {np.__version__}, pillow {PIL.__version__}, timm {timm.__version__}, "
        f"{hardware}"
    )


def numerics_environment(device: torch.device) -> dict[str, str]:
    """The environment a run's float results depend on, part by part, so two records say which part differs:
    the one-line `summary`, the CPU model and its vector flags, the kernels torch runs on it, torch's build (a hash
    of `torch.__config__.show()`: compiler, BLAS, oneDNN, CUDA flags), the BLAS and oneDNN versions, the thread
    settings, and the CUDA / cuDNN versions and GPU when a GPU trains."""
    import hashlib
    import os
    import re

    build = torch.__config__.show()

    def line(pattern: str) -> str:
        found = re.search(pattern, build)
        return found.group(0).strip() if found else "not in this build"

    cpu, flags = _cpu_identity()
    record = {
        "summary": software_environment(device),
        "cpu": cpu,
        "cpu_flags": flags,
        "torch_kernels": torch.backends.cpu.get_cpu_capability(),
        "torch_build": hashlib.sha256(build.encode()).hexdigest()[:16],
        "blas": line(r"BLAS_INFO=\w+") + "; " + line(r"(Intel\(R\) oneAPI Math Kernel Library|OpenBLAS)[^\n]*"),
        "onednn": line(r"Intel\(R\) MKL-DNN v[\d.]+"),
        "threads": f"torch {torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op; "
        + ", ".join(f"{name}={os.environ.get(name, 'unset')}" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")),
        "cuda": "not used",
    }
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        record["cuda"] = (
            f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
            f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor})"
        )
    return record


def _cpu_identity() -> tuple[str, str]:
    """(CPU model, a hash of its instruction-set flags) from /proc/cpuinfo; the platform's words elsewhere."""
    import hashlib
    import platform

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), "unknown"
    fields: dict[str, str] = {}
    for line in info.splitlines():  # the first processor's lines are enough: every core is the same model
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    flags = " ".join(sorted(fields.get("flags", "").split()))
    return fields.get("model name", platform.machine()), hashlib.sha256(flags.encode()).hexdigest()[:16]


def environment_differences(recorded: dict[str, str], here: dict[str, str]) -> list[str]:
    """The parts of two `numerics_environment` records that differ, in words ("cpu: A (recorded) vs B (here)"); a
    part the older record lacks is said as not recorded. [] when every part both have agrees."""
    differences = []
    for part, value in here.items():
        if part == "summary":
            continue
        if part not in recorded:
            differences.append(f"{part}: not recorded then (here: {value})")
        elif recorded[part] != value:
            differences.append(f"{part}: {recorded[part]} (recorded) vs {value} (here)")
    if not differences and recorded.get("summary") != here["summary"]:
        differences.append(f"summary: {recorded.get('summary')} (recorded) vs {here['summary']} (here)")
    return differences


@functools.cache  # the code this process runs: a commit made while it runs (a long benchmark) is not its code
def code_version() -> str:
    """The git commit of the code, "+uncommitted" when imbal_core/ has changes not committed; "unknown" outside git.

    Read once per process, at the first call (a run's training, a benchmark's start).
    """
    import subprocess

    if not IN_CHECKOUT:  # an installed package may sit in some other repository: that commit is not ours
        return "unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "imbal_core"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout
    except OSError:  # no git
        return "unknown"
    return (sha or "unknown") + ("+uncommitted" if sha and dirty.strip() else "")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def select_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_device(device: str) -> None:
    """Raise ConfigError unless `device` is auto, cpu, cuda or cuda:N, and a CUDA device asked for is present."""
    kind, _, index = device.partition(":")
    if device not in ("auto", "cpu") and not (kind == "cuda" and (index == "" or index.isdigit())):
        raise ConfigError(f"device must be auto (CUDA when present), cpu, cuda or cuda:N; got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} asks for a CUDA GPU, but torch finds no CUDA GPU here; use "
            "--device auto (CUDA when present, else the CPU) or --device cpu"
        )
    if index and int(index) >= torch.cuda.device_count():
        raise ConfigError(
            f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} CUDA "
            f"GPU(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in the target folder; rename it onto `path` only if the block succeeds.

    Readers never see a half-written file, and a crash leaves the old file intact.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # a rename would replace a folder's entry, a device or a pipe
        raise ImbalLabError(f"{path} is a folder, device or pipe, not a file: give the path of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default))


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")
