"""A benchmark protocol as data: one TOML file names the data sets, task, image size, ratios and profile, the methods
with their settings, the seeds, the epoch budget and the backbone. `load_protocol` reads and checks the file; the
runs it asks for are `Protocol.plan()` (one TrainConfig per data set x method x ratio x seed).

The format (docs/benchmarks.md, "Benchmarks as protocols"):

    name = "builtin_ratios"           # optional: the results file's name (default: the file's name)
    description = "..."               # optional
    seeds = [0, 1, 2]
    epochs = 8
    backbone = "resnet10t_small"      # optional, like every training key below (TrainConfig's defaults)
    pretrained = "resnet18.a1_in1k"   # optional: a timm tag, or a weights file relative to this file
    image_size = 28
    ratios = [10, 50, 100]            # numbers >= 1 and/or "natural"; default ["natural"]
    profile = "exp"                   # exp, step or a table {class = count}
    task = "mel vs nv"                # optional: a binary task for every method
    reference = "ce"                  # the method paired differences are taken against (default ce)
    other_references = ["balanced_softmax"]   # optional: methods every other one is also paired against
    methods = [
        "ce", "focal",                                                  # a method with its default settings
        { method = "focal", settings = { gamma = 1.0 } },               # settings
        { method = "deep_svdd", task = "mel vs nv" },                   # its own binary task
        { method = "iois", skip = "needs ..." },                        # listed, not run, reason in the results
    ]

    [[data]]                          # one table per data set ([data] for one)
    source = "ham10000"
    path = "../../../shared/data/ham10000"   # relative to this file; `benchmark --path NAME=DIR` overrides it
    options = {}                      # the source's options (`datasets`), e.g. { n_images = 700 }
    split_seed = 0
    colour_constancy = "shades_of_gray"      # optional
    name = "ham10000"                 # optional label for --path (default: the source)

String settings may hold placeholders filled per run: {data} (source), {image_size}, {ratio} (e.g. 10, or natural),
{seed}, and {subset} ("" at natural counts, else "_r<ratio>_s<seed>"), so a generator's default name
(`diffusion-train` names its file diffusion_<data>_<size>{subset}) can be written once:
"diffusion_{data}_{image_size}{subset}".
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .data import DATA_SOURCES
from .engine import TrainConfig
from .engine.config import check_data_options
from .errors import ConfigError, ImbalLabError
from .imbalance import subset_suffix
from .methods import METHODS, create_method
from .models import default_backbone, is_weights_file
from .utils import IN_CHECKOUT, PACKAGE_ROOT, REPO_ROOT

# The shipped protocols: benchmarks/protocols/ in a checkout, imbal_core/protocols/ in an installed package.
PROTOCOL_DIR = REPO_ROOT / "benchmarks" / "protocols" if IN_CHECKOUT else PACKAGE_ROOT / "protocols"
# TrainConfig fields a protocol may set once for all its runs.
TRAINING_KEYS = (
    "epochs",
    "backbone",
    "pretrained",
    "image_size",
    "profile",
    "fit",
    "head_order",
    "batch_size",
    "optimizer",
    "lr",
    "weight_decay",
    "augment",
    "amp",
    "device",
    "data_placement",
)
TOP_KEYS = (
    "name",
    "description",
    "seeds",
    "ratios",
    "task",
    "reference",
    "other_references",
    "methods",
    "data",
) + TRAINING_KEYS
REQUIRED_KEYS = ("seeds", "epochs", "methods", "data")
DATA_KEYS = ("source", "path", "options", "split_seed", "colour_constancy", "name")
METHOD_KEYS = ("method", "settings", "task", "skip")
PLACEHOLDERS = ("data", "image_size", "ratio", "seed", "subset")
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")  # {{ or }} (a brace), {name}, or a lone brace
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
FORMAT_HINT = "see docs/benchmarks.md, section 'Benchmarks as protocols', for the format"


@dataclass(frozen=True)
class DataSpec:
    name: str
    source: str
    path: str | None  # absolute
    options: dict[str, Any]
    split_seed: int = 0
    colour_constancy: str | None = None


@dataclass(frozen=True)
class MethodSpec:
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    task: str | None = None
    skip: str | None = None
    added: str | None = None  # why the benchmark added this entry (the reference on another task)

    @property
    def label(self) -> str:
        settings = ",".join(f"{k}={v}" for k, v in sorted(self.settings.items()))
        return f"{self.method}[{settings}]" if settings else self.method

    def key(self) -> str:
        return json.dumps([self.method, self.settings, self.task], sort_keys=True)


@dataclass
class PlannedRun:
    """One run the protocol asks for; `config` is None for a skipped method."""

    data: DataSpec
    method: MethodSpec
    ratio: float | None
    seed: int
    config: TrainConfig | None

    @property
    def task(self) -> str | None:
        return self.config.task if self.config is not None else self.method.task

    def matches(self, only: dict[str, set[str]]) -> bool:
        """Whether this run is in the slice `only` (`parse_only`): every key's value among the given ones."""
        values = {
            "method": {self.method.method, self.method.label},
            "seed": {str(self.seed)},
            "ratio": {_ratio_text(self.ratio)},
            "data": {self.data.name},
        }
        return all(values[key] & wanted for key, wanted in only.items())

    @property
    def label(self) -> str:
        """The method with its settings as this run has them (placeholders filled)."""
        if self.config is None:
            return self.method.label
        return replace(self.method, settings=self.config.method_settings).label

    def describe(self) -> str:
        task = f" [{self.task}]" if self.task else ""
        ratio = "natural" if self.ratio is None else f"{self.ratio:g}"
        return f"{self.label}{task} · {self.data.name} · ratio {ratio} · seed {self.seed}"


ONLY_KEYS = ("method", "seed", "ratio", "data")


def parse_only(items: list[str]) -> dict[str, set[str]]:
    """`benchmark --only` as {key: values}. Each item is KEY=V1,V2 (keys: method, seed, ratio, data); one item may
    hold several keys ("method=style_kd,crt,seed=0") and the option may be repeated."""
    only: dict[str, set[str]] = {}
    for item in items:
        key = None
        for token in (t.strip() for t in item.split(",")):
            if "=" in token:
                key, _, token = (part.strip() for part in token.partition("="))
            if key not in ONLY_KEYS or not token:
                raise ConfigError(
                    f"--only {item!r}: expected KEY=VALUE[,VALUE...] with KEY one of {', '.join(ONLY_KEYS)}, e.g. "
                    "--only method=style_kd,seed=0"
                )
            only.setdefault(key, set()).add(token)
    return only


@dataclass
class Protocol:
    name: str
    file: Path
    text: str
    description: str
    seeds: list[int]
    ratios: list[float | None]
    task: str | None
    reference: str
    training: dict[str, Any]
    data: list[DataSpec]
    methods: list[MethodSpec]
    # Further methods every method is also paired against (e.g. the strongest baseline), on the reference's tasks.
    other_references: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def all_methods(self) -> list[MethodSpec]:
        """The protocol's method entries, plus the reference method on every other task a method names (so every
        method has runs to be paired with on its own data)."""
        methods = list(self.methods)
        have = {(m.method, m.task or self.task) for m in methods if not m.skip and not m.settings}
        for task in dict.fromkeys(m.task for m in self.methods if m.task and m.task != self.task and not m.skip):
            if (self.reference, task) not in have:
                methods.append(
                    MethodSpec(
                        self.reference,
                        task=task,
                        added=f"the reference `{self.reference}` on "
                        f"task {task!r}, for the paired differences of the methods run on it",
                    )
                )
        return methods

    def plan(self) -> list[PlannedRun]:
        """Every run, in order: data set, method, ratio, seed. Configs are made (and so validated) here."""
        runs: list[PlannedRun] = []
        seen: dict[str, str] = {}  # config -> the method entry that gave it
        for data in self.data:
            for method in self.all_methods():
                for ratio in self.ratios:
                    for seed in self.seeds:
                        config = None if method.skip else self._config(data, method, ratio, seed)
                        if config is not None:  # the same run twice would count one seed as two replicates
                            key = json.dumps(config.to_dict(), sort_keys=True)
                            if key in seen:
                                raise ConfigError(
                                    f"{self.file}: methods {seen[key]!r} and {method.label!r} give the same run "
                                    f"(data {data.name!r}, ratio {_ratio_text(ratio)}, seed {seed}); list it once"
                                )
                            seen[key] = method.label
                        runs.append(PlannedRun(data, method, ratio, seed, config))
        return runs

    def _config(self, data: DataSpec, method: MethodSpec, ratio: float | None, seed: int) -> TrainConfig:
        where = f"{self.file}: method {method.label!r} (data {data.name!r}, ratio {_ratio_text(ratio)}, seed {seed})"
        image_size = self.training.get("image_size", TrainConfig.__dataclass_fields__["image_size"].default)
        values = {
            "data": data.source,
            "image_size": image_size,
            "ratio": _ratio_text(ratio),
            "seed": seed,
            "subset": subset_suffix(ratio, seed),
        }
        settings = {key: _fill(value, values, where, key) for key, value in method.settings.items()}
        task = method.task or self.task
        if task is None and create_method(method.method, **settings).needs_binary_task:
            raise ConfigError(
                f"{where}: {method.method} is a one-class method and needs a binary task (normal = the "
                f'right side); give its entry one, e.g. {{ method = "{method.method}", task = '
                '"mel vs nv" }, or a top-level task, or skip it: { method = '
                f'"{method.method}", skip = "reason" }}'
            )
        try:
            return TrainConfig(
                method=method.method,
                method_settings=settings,
                data=data.source,
                data_path=data.path,
                data_options=dict(data.options),
                task=task,
                colour_constancy=data.colour_constancy,
                split_seed=data.split_seed,
                ratio=ratio,
                seed=seed,
                **self.training,
            )
        except ImbalLabError as err:
            raise ConfigError(f"{where}: {err}") from None


def protocol_names() -> list[str]:
    return sorted(p.stem for p in PROTOCOL_DIR.glob("*.toml"))


def find_protocol(reference: str | Path) -> Path:
    """A protocol file: a path, or the name of a file in benchmarks/protocols/."""
    path = Path(reference).expanduser()
    if path.is_file():
        return path.resolve()
    if path.suffix != ".toml" and (PROTOCOL_DIR / f"{reference}.toml").is_file():
        return (PROTOCOL_DIR / f"{reference}.toml").resolve()
    if path.exists():  # a folder, pipe or device: reading it would fail or block
        raise ConfigError(f"protocol {str(reference)!r} is not a regular file: give the path of a .toml file")
    raise ConfigError(
        f"no protocol file {str(reference)!r}; give the path of a .toml file, or one of the protocols in "
        f"{PROTOCOL_DIR}: {', '.join(protocol_names()) or 'none'}"
    )


def load_protocol(reference: str | Path, paths: list[str] | None = None, pretrained: str | None = None) -> Protocol:
    """Read and check a protocol file; `paths` are command-line data paths ("NAME=DIR", or "DIR" for the only data
    set), which replace the file's; `pretrained` replaces the file's starting weights (a tag sets the backbone too)
    and names the results `<name>_<tag or file name>`. Every error names the file, the key and what is allowed."""
    file = find_protocol(reference)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{file} is not UTF-8 text (byte {err.start} cannot be read as UTF-8): save it as UTF-8; {FORMAT_HINT}"
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{file} is not valid TOML ({err}); {FORMAT_HINT}") from None
    _check_keys(raw, TOP_KEYS, f"{file}", "top-level key")
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise ConfigError(
            f"{file} lacks {', '.join(map(repr, missing))}: a protocol names at least seeds, epochs, "
            f"methods and data; {FORMAT_HINT}"
        )
    name = raw.get("name", file.stem)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(f"{file}: name must be a file name (letters, digits, _ . -); got {name!r}")
    seeds = raw["seeds"]
    if not (isinstance(seeds, list) and seeds and all(_is_int(s) and s >= 0 for s in seeds)) or len(set(seeds)) != len(
        seeds
    ):
        raise ConfigError(
            f"{file}: seeds must be a list of different integers >= 0, e.g. seeds = [0, 1, 2]; got {seeds!r}"
        )
    ratios = [_ratio(r, file) for r in _as_list(raw.get("ratios", ["natural"]), "ratios", file)]
    if len(set(ratios)) != len(ratios):
        raise ConfigError(f"{file}: ratios lists a ratio twice: {raw['ratios']!r}")
    task = raw.get("task")
    if task is not None and not isinstance(task, str):
        raise ConfigError(f'{file}: task must be a string like "mel vs nv"; got {task!r}')
    training = {key: raw[key] for key in TRAINING_KEYS if key in raw}
    if isinstance(training.get("pretrained"), str) and is_weights_file(training["pretrained"]):
        training["pretrained"] = str((file.parent / training["pretrained"]).resolve())  # like data paths
    if pretrained is not None:
        training["pretrained"] = str(Path(pretrained).resolve()) if is_weights_file(pretrained) else pretrained
        if not is_weights_file(pretrained):
            training["backbone"] = default_backbone(pretrained)
        weights_name = Path(pretrained).stem if is_weights_file(pretrained) else pretrained
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}_{weights_name}")[:80]
    reference = raw.get("reference", "ce")
    data = _data_specs(raw["data"], file, paths or [])
    methods = _method_specs(raw["methods"], file)
    runnable = {m.method for m in methods if not m.skip and not m.settings}
    if reference not in runnable:
        raise ConfigError(
            f"{file}: the reference method {reference!r} must be among the methods (with its default "
            f'settings, not skipped): paired differences are taken against it; add "{reference}" to '
            "methods or set reference to one of them"
        )
    others = raw.get("other_references", [])
    if (
        not isinstance(others, list)
        or not all(isinstance(m, str) and m in runnable and m != reference for m in others)
        or len(set(others)) != len(others)
    ):
        raise ConfigError(
            f"{file}: other_references must be different methods of the protocol (with their default settings, "
            f"not skipped), other than the reference {reference!r}, e.g. other_references = "
            f'["balanced_softmax"]; got {others!r}'
        )
    protocol = Protocol(
        name,
        file,
        text,
        raw.get("description", ""),
        list(seeds),
        ratios,
        task,
        reference,
        training,
        data,
        methods,
        [str(m) for m in others],
    )
    try:
        TrainConfig(**training)  # e.g. epochs = 0: said once, not once per run
    except ImbalLabError as err:
        raise ConfigError(f"{file}: {err}") from None
    protocol.plan()  # every run's config is valid (settings per run, one-class methods with a task)
    return protocol


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], where: str, what: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown {what}(s) {unknown}; allowed: {', '.join(allowed)}; {FORMAT_HINT}")


def _as_list(value: Any, key: str, file: Path) -> list:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{file}: {key} must be a non-empty list, e.g. {key} = [10, 50, 100]; got {value!r}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ratio(value: Any, file: Path) -> float | None:
    if value == "natural":
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 1
    if not ok:
        raise ConfigError(
            f'{file}: ratios must be numbers >= 1 (n_max/n_min) and/or "natural" (the data set\'s own '
            f'counts), e.g. ratios = ["natural", 10, 100]; got {value!r}'
        )
    return float(value)


def _ratio_text(ratio: float | None) -> str:
    return "natural" if ratio is None else f"{ratio:g}"


def _data_specs(raw: Any, file: Path, paths: list[str]) -> list[DataSpec]:
    tables = [raw] if isinstance(raw, dict) else raw
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(
            f"{file}: data must be a table ([data]) or tables ([[data]]) with at least a source; {FORMAT_HINT}"
        )
    specs = []
    for i, table in enumerate(tables):
        where = f"{file}: data table {i + 1}"
        _check_keys(table, DATA_KEYS, where, "key")
        if "source" not in table:
            raise ConfigError(f"{where} lacks source; one of: {', '.join(DATA_SOURCES.names())}")
        source = table["source"]
        if source not in DATA_SOURCES:
            raise ConfigError(
                f"{where}: unknown data source {source!r}; choose one of: {', '.join(DATA_SOURCES.names())}"
            )
        options = table.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"{where}: options must be a table, e.g. options = {{ n_images = 700 }}; got {options!r}")
        try:
            check_data_options(source, options)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
        split_seed = table.get("split_seed", 0)
        if not (_is_int(split_seed) and split_seed >= 0):
            raise ConfigError(f"{where}: split_seed must be an integer >= 0; got {split_seed!r}")
        path = table.get("path")
        if path is not None and not isinstance(path, str):
            raise ConfigError(f"{where}: path must be a string (a folder or file); got {path!r}")
        name = table.get("name", source)
        specs.append(
            DataSpec(
                name,
                source,
                str((file.parent / path).resolve()) if path else None,
                options,
                split_seed,
                table.get("colour_constancy"),
            )
        )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"{file}: two data tables share the name {sorted(n for n in names if names.count(n) > 1)[0]!r}; "
            'give them different names (name = "...")'
        )
    specs = _override_paths(specs, paths, file)
    for spec in specs:
        if DATA_SOURCES.get(spec.source).needs_path and spec.path is None:
            raise ConfigError(
                f'{file}: data set {spec.name!r} ({spec.source}) needs a path: set path = "..." in its '
                f"data table (relative to the protocol file), or give `--path {spec.name}=DIR` on the "
                f"command line. Expected layout: {DATA_SOURCES.get(spec.source).layout}"
            )
    return specs


def _override_paths(specs: list[DataSpec], paths: list[str], file: Path) -> list[DataSpec]:
    names = [s.name for s in specs]
    given: dict[str, str] = {}
    for item in paths:
        name, sep, path = item.partition("=")
        if sep and name in names:
            given[name] = path
        elif len(specs) == 1:
            given[specs[0].name] = item
        else:
            raise ConfigError(
                f"--path {item!r} names no data set of {file.name}; use --path NAME=DIR with NAME one of {names}"
            )
    return [replace(s, path=str(Path(given[s.name]).expanduser().resolve())) if s.name in given else s for s in specs]


def _method_specs(raw: Any, file: Path) -> list[MethodSpec]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(
            f'{file}: methods must be a non-empty list of names and/or tables, e.g. methods = ["ce", '
            '{ method = "focal", settings = { gamma = 1.0 } }]'
        )
    specs = []
    for entry in raw:
        table = {"method": entry} if isinstance(entry, str) else entry
        if not isinstance(table, dict):
            raise ConfigError(f"{file}: a methods entry must be a name or a table; got {entry!r}")
        _check_keys(table, METHOD_KEYS, f"{file}: methods entry {entry!r}", "key")
        method = table.get("method")
        if not isinstance(method, str) or method not in METHODS:
            raise ConfigError(
                f"{file}: unknown method {method!r}; choose one of: {', '.join(METHODS.names())} "
                "(cards: `python -m imbal_core methods NAME`)"
            )
        settings = table.get("settings", {})
        if not isinstance(settings, dict):
            raise ConfigError(
                f"{file}: settings of {method!r} must be a table, e.g. settings = {{ gamma = 1.0 }}; got {settings!r}"
            )
        task, skip = table.get("task"), table.get("skip")
        if task is not None and not isinstance(task, str):
            raise ConfigError(f'{file}: task of {method!r} must be a string like "mel vs nv"; got {task!r}')
        if skip is not None and not (isinstance(skip, str) and skip.strip()):
            raise ConfigError(f"{file}: skip of {method!r} must be the reason, a non-empty string; got {skip!r}")
        if not skip:
            try:  # unknown or out-of-range settings (placeholders are filled per run)
                create_method(method, **{k: v for k, v in settings.items() if not (isinstance(v, str) and "{" in v)})
            except ImbalLabError as err:
                raise ConfigError(f"{file}: method {method!r}: {err}") from None
        specs.append(MethodSpec(method, settings, task, skip))
    keys = [s.key() for s in specs]
    duplicated = sorted({s.label for s in specs if keys.count(s.key()) > 1})
    if duplicated:
        raise ConfigError(f"{file}: methods lists {duplicated} twice with the same settings and task; remove one")
    return specs


def _fill(value: Any, values: dict[str, Any], where: str, key: str) -> Any:
    """Placeholders are plain names replaced by text: no attribute access, index or format spec as in
    `str.format` (which would reach into the objects behind the names)."""
    if not isinstance(value, str) or ("{" not in value and "}" not in value):
        return value

    def replace(match: re.Match[str]) -> str:
        token, name = match.group(0), match.group(1)
        if token in ("{{", "}}"):
            return token[0]
        if name not in values:
            raise ConfigError(
                f"{where}: setting {key} = {value!r} has an unknown placeholder {token!r}; placeholders are "
                f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)} (write {{{{ and }}}} for braces)"
            )
        return str(values[name])

    return PLACEHOLDER.sub(replace, value)
