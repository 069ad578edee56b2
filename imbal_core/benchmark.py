"""Run a benchmark protocol (`protocol.py`) and write its results file.

Planning matches every run the protocol asks for against the run store by its whole TrainConfig: a finished run is
never trained again (a changed setting makes another config, so a new run); a stopped, interrupted or failed run is
resumed from its last completed epoch; a run another process is training is left to it. Only the missing runs go to
the executor (local or Ray). The results file (`results/<name>.md` and `.csv`) is written from the finished runs with
the statistics of `stats.py` (the same as the app's Compare page): per data set and ratio, mean ± sd over seeds with n
and 95 % t intervals, differences paired by seed against the reference method with 95 % intervals, few / medium /
many accuracy, per-class recall and its paired change; plus the exact command, code version and wall time.
With a run archive (`runs/archive.py`), finished runs also outlive the store's machine: they are copied there as they
finish and restored from there when the benchmark starts.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .benchmark_results import RESULTS_COLUMNS, results_dir
from .charts import critical_difference_figure
from .compare import finished_runs, identical_groups, identical_note, load_results, per_class_table
from .engine.trainer import RESUMABLE, WEIGHTS_FILE, run_environments
from .errors import ConfigError, ImbalLabError
from .executors import Job, LocalExecutor, Outcome
from .imbalance import kept_indices
from .methods import create_method
from .metrics import BINARY_METRICS, SUMMARY_METRICS, metric_range
from .models import weights_label
from .protocol import MethodSpec, PlannedRun, Protocol
from .runs import RunArchive, RunStore
from .stats import (
    ALPHA,
    CLIPPED_NOTE,
    COMPARABLE,
    CONFIDENCE,
    HOLM_MARK,
    MIN_SEEDS_FOR_INTERVAL,
    format_difference,
    format_spread,
    leaderboard,
    paired_class_differences,
    paired_differences,
    rank_groups,
    validation_curves,
)
from .utils import REPO_ROOT, atomic_path, check_device, code_version

TAG_PREFIX = "benchmark:"
TRAINED_STATES = ("new", "start", "resume")  # steps the executor trains
# Shown in the Markdown tables (the CSV has every metric).
SHOWN = ["few_acc", "medium_acc", "many_acc", "balanced_acc", "macro_f1", "acc"]  # Compare's order
SHOWN_BINARY = ["auroc", "auprc", "sens_at_95_spec", "balanced_acc", "sensitivity", "specificity"]
PAIRED_SHOWN = ["balanced_acc", "macro_f1", "few_acc", "medium_acc", "many_acc"]
PAIRED_SHOWN_BINARY = ["auroc", "auprc", "sens_at_95_spec", "balanced_acc"]
ALL_METRICS = list(SUMMARY_METRICS)
ALL_BINARY = list(SUMMARY_METRICS) + [m for m in BINARY_METRICS if m != "threshold"]
RANKED = (("balanced_acc", False), ("auroc", True))  # (the metric methods are ranked by, over binary sections?)
# What the plan does with each run (`benchmark --plan` prints these).
STATE_TEXT = {
    "reuse": "finished before (reused)",
    "new": "to train",
    "start": "to train",
    "resume": "to resume",
    "skip": "skipped",
    "blocked": "not run: blocked",
    "elsewhere": "not run: busy",
}
ARCHIVED_NOTE = "restored from the archive"  # a reused run that this benchmark restored from its archive
IN_ARCHIVE_NOTE = "in the archive: restored into the store when the benchmark runs"  # ... as --plan says it
DONE_TEXT = {"new": "trained now", "start": "trained now", "resume": "resumed now"}  # ... once the executor ran it


@dataclass
class Step:
    """One planned run and what the benchmark does about it."""

    run: PlannedRun
    state: str  # reuse, new, start (a queued run of an earlier benchmark), resume, skip, blocked, elsewhere
    run_id: str | None = None
    note: str = ""
    outcome: Outcome | None = field(default=None, repr=False)
    final_status: str | None = None  # the run's status when the results were written
    started: bool = False  # the executor began the run (for Ray: submitted it)
    archived_for: str | None = None  # an archived run has this run's settings for the data at this other path


@dataclass
class BenchmarkResult:
    steps: list[Step]
    markdown: Path
    csv: Path
    wall_seconds: float

    def incomplete(self) -> list[Step]:
        """Runs the protocol asks for that have no finished run (skipped methods do not count)."""
        return [s for s in self.steps if s.state != "skip" and s.final_status != "finished"]


def plan(protocol: Protocol, store: RunStore, local: bool = True, archive: RunArchive | None = None) -> list[Step]:
    """Check the protocol against its data (loads, every ratio reachable; the device when training here) and match
    each run against the store, then against `archive` (a run found only there is reused: the benchmark restores it
    into the store before it plans). A run to train whose generator is missing or does not suit its training images
    is blocked (an archived one is reused whatever its generator). Raises ConfigError / DataError before anything is
    trained."""
    runs = protocol.plan()
    train_indices = _check_data(protocol, runs, local)
    steps = [_step(run, store) for run in runs]
    archived = archive.configs() if archive is not None else {}
    for i, s in enumerate(steps):
        config = s.run.config
        if s.state not in TRAINED_STATES or config is None:
            continue
        wanted = json.loads(json.dumps(config.to_dict()))  # the stored form: tuples as lists
        found = [run_id for run_id, archived_config in archived.items() if archived_config == wanted]
        if found:
            s.state, s.run_id, s.note = "reuse", found[0], IN_ARCHIVE_NOTE
            continue
        s.archived_for = next(
            (c["data_path"] for c in archived.values() if {**c, "data_path": None} == {**wanted, "data_path": None}),
            None,
        )
        # What the settings name exists (a generator) and suits the run's training images: checked here, not on a
        # worker, where a generator's relative data path means something else.
        method = create_method(config.method, **config.method_settings)
        try:
            method.check_ready()
            method.check_training_set(config.data_recipe(), train_indices[i])
        except ImbalLabError as err:
            s.state, s.run_id, s.note = "blocked", None, str(err)
    return steps


def other_data_hint(steps: list[Step]) -> str | None:
    """Why archived runs are not reused when they differ from planned ones only in their data folder (a clone whose
    data is elsewhere, named with --path), and how to reuse them; None when there are none."""
    again = [s for s in steps if s.archived_for and s.state in TRAINED_STATES]
    if not again:
        return None
    folders = sorted({f"--path {s.run.data.name}={s.archived_for}" for s in again})
    return (
        f"the archive has {len(again)} of the runs to train with the same settings but data from another folder; a "
        "run is reused only for its own data folder, so they train again. If that folder holds the same files, run "
        f"with {' '.join(folders)} to reuse them"
    )


def run_benchmark(
    protocol: Protocol,
    store: RunStore,
    executor: Any | None = None,
    out_dir: Path | str | None = None,
    command: str = "",
    log: Callable[[str], None] = print,
    train: bool = True,
    archive: RunArchive | None = None,
    only: dict[str, set[str]] | None = None,
) -> BenchmarkResult:
    """Train what is missing (nothing when `train` is False; only the runs in the slice `only`, `parse_only`'s,
    when given), then write the results of every finished run of the protocol; an interrupt (Ctrl-C) still writes
    what is finished. With an `archive`, its runs that the store lacks are restored first (so they are reused, not
    trained), and every finished run of the protocol is copied into it.

    One benchmark at a time per store: two would plan the same missing run and both train it.
    """
    with store.exclusive("benchmark"):
        return _run_benchmark(protocol, store, executor, out_dir or results_dir(), command, log, train, archive, only)


def _run_benchmark(
    protocol: Protocol,
    store: RunStore,
    executor: Any | None,
    out_dir: Path | str,
    command: str,
    log: Callable[[str], None],
    train: bool,
    archive: RunArchive | None,
    only: dict[str, set[str]] | None,
) -> BenchmarkResult:
    started = time.time()
    executor = executor or LocalExecutor()
    restored: list[str] = []
    if archive is not None:
        restored = archive.restore(store)
        if restored:
            log(f"restored {len(restored)} finished runs from the archive {archive.root}")
    steps = plan(protocol, store, local=executor.name == "local", archive=archive)
    for s in steps:
        if s.run_id in restored:
            s.note = ARCHIVED_NOTE
    todo = [s for s in steps if s.state in TRAINED_STATES and (only is None or s.run.matches(only))] if train else []
    # The references train first, so a benchmark stopped part-way pairs every method it finished with them.
    todo.sort(key=lambda s: not _is_reference(s.run.method, protocol))
    counts = {state: sum(s.state == state for s in steps) for state in STATE_TEXT}
    log(
        f"benchmark {protocol.name}: {len(steps)} runs planned — {counts['reuse']} finished before, "
        f"{counts['new'] + counts['start']} to train, {counts['resume']} to resume, {counts['skip']} skipped, "
        f"{counts['blocked']} blocked, {counts['elsewhere']} busy elsewhere"
    )
    if only is not None and train:
        log(f"  --only: {len(todo)} of them in the slice train now; the others wait for a command without --only")
    for s in steps:
        if s.state in ("blocked", "elsewhere"):
            log(f"  {STATE_TEXT[s.state]}: {s.run.describe()}: {s.note}")
    hint = other_data_hint(steps)
    if hint:
        log(hint)
    by_job: dict[int, Step] = {}
    jobs = []
    for s in todo:
        job = Job(s.run.config, s.run_id, resume=s.state == "resume")  # type: ignore[arg-type]
        by_job[id(job)] = s
        jobs.append(job)
    done = 0

    def on_done(outcome: Outcome) -> None:
        nonlocal done
        done += 1
        step = by_job[id(outcome.job)]
        step.run_id, step.outcome = outcome.run_id, outcome
        retried = f" after {outcome.attempts} attempts" if outcome.attempts > 1 else ""
        error = f": {outcome.error}" if outcome.error else ""
        elapsed = f" ({(time.time() - started) / 60:.0f} min since start)"
        log(f"[{done}/{len(jobs)}] {step.run.describe()}: {outcome.run_id} {outcome.status}{retried}{error}{elapsed}")
        if archive is not None and outcome.status == "finished":
            archive.save(store, outcome.run_id)

    try:
        executor.run(jobs, store, tag=TAG_PREFIX + protocol.name, on_done=on_done)
    finally:  # also after Ctrl-C: the results file shows what is finished, and names the run it stopped
        for step, job in zip(todo, jobs):
            step.run_id, step.started = step.run_id or job.run_id, job.started
        result = write_results(
            protocol,
            store,
            steps,
            out_dir,
            command,
            executor.description,
            time.time() - started,
        )
        if archive is not None:  # also the runs finished before this command (an archive begun part-way)
            for s in result.steps:
                if s.final_status == "finished" and s.run_id:
                    archive.save(store, s.run_id)
    return result


def _is_reference(method: MethodSpec, protocol: Protocol) -> bool:
    """The reference or another reference method, with its default settings (on any task)."""
    return method.method in (protocol.reference, *protocol.other_references) and not method.settings


def _check_data(protocol: Protocol, runs: list[PlannedRun], local: bool) -> dict[int, np.ndarray]:
    """Raise ConfigError for data that does not load or a ratio out of reach; return each run's training images
    (indices in the train split) by its position in `runs`."""
    train_indices: dict[int, np.ndarray] = {}
    seen: set[str] = set()
    for run in runs:
        config = run.config
        if config is None:
            continue
        if local:
            try:
                check_device(config.device)
            except ConfigError as err:
                raise ConfigError(f"{protocol.file}: {err}") from None
        key = json.dumps(config.data_recipe(), sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        task = f" with task {config.task!r}" if config.task else ""
        try:
            dataset = config.load_data()
            for i, other in enumerate(runs):  # every ratio and seed of this data reachable
                c = other.config
                if c is not None and json.dumps(c.data_recipe(), sort_keys=True, default=str) == key:
                    train_indices[i] = kept_indices(c, dataset)
        except ImbalLabError as err:
            hint = (
                f" (the path comes from the protocol's data table or from --path {run.data.name}=DIR)"
                if run.data.path
                else ""
            )
            raise ConfigError(f"{protocol.file}: data set {run.data.name!r}{task}: {err}{hint}") from None
    return train_indices


def _step(run: PlannedRun, store: RunStore) -> Step:
    if run.config is None:
        return Step(run, "skip", note=run.method.skip or "")
    existing = store.find_runs(run.config.to_dict())
    for r in existing:
        if r["status"] == "finished":
            return Step(run, "reuse", r["run_id"])
    for r in existing:
        if r["status"] == "running":
            return Step(
                run,
                "elsewhere",
                r["run_id"],
                f"run {r['run_id']} is training in another process "
                f"({r['owner_host']}, pid {r['owner_pid']}); run the command again when it has ended",
            )
        if r["status"] == "queued" and not str(r["tag"] or "").startswith(TAG_PREFIX):
            return Step(
                run,
                "elsewhere",
                r["run_id"],
                f"run {r['run_id']} is queued in the app's job queue; it "
                "trains there (or stop it there), then run the command again",
            )
    resumable = [r for r in existing if r["status"] in RESUMABLE]
    if resumable:
        best = max(resumable, key=lambda r: ((r["progress"] or {}).get("epoch", 0), r["created"]))
        return Step(run, "resume", best["run_id"])
    queued = [r for r in existing if r["status"] == "queued"]
    if queued:  # made by an earlier benchmark that ended before it started the run
        return Step(run, "start", queued[0]["run_id"])
    return Step(run, "new")


# ---- results ------------------------------------------------------------------------------------------------------


def write_results(
    protocol: Protocol,
    store: RunStore,
    steps: list[Step],
    out_dir: Path | str,
    command: str,
    executor: str,
    wall_seconds: float,
) -> BenchmarkResult:
    out_dir = Path(out_dir)
    records = {s.run_id: store.get_run(s.run_id) for s in steps if s.run_id and store.has_run(s.run_id)}
    for run_id, record in records.items():
        record["environments"] = run_environments(store.run_dir(run_id))
        weights = store.run_dir(run_id) / WEIGHTS_FILE
        record["weights_sha256"] = json.loads(weights.read_text())["sha256"] if weights.is_file() else None
    for s in steps:
        s.final_status = records[s.run_id]["status"] if s.run_id in records else None
    finished_ids = [s.run_id for s in steps if s.final_status == "finished"]
    runs = finished_runs([store])
    runs = runs[runs["run_id"].isin(finished_ids)].copy()
    # The reference first (also where the benchmark added it on a one-class method's task), then the protocol's order.
    order = {
        m.key(): (m.method != protocol.reference or bool(m.settings), i) for i, m in enumerate(protocol.all_methods())
    }
    rank = {s.run_id: order[s.run.method.key()] for s in steps if s.run_id}
    runs["_rank"] = runs["run_id"].map(rank)
    runs = runs.sort_values(["_rank", "seed"], kind="stable")
    if runs.empty:  # nothing finished yet (finished_runs' empty frame has no group or ratio_label)
        reference_group, results, sections = None, [], []
    else:
        reference_group = _reference_group(protocol.reference, steps, runs)
        results = load_results(runs)
        sections = _sections(steps, runs)

    histories = {run_id: _history(record) for run_id, record in records.items()}
    lines = _header(protocol, steps, records, command, executor, wall_seconds, reference_group)
    tidy: list[dict[str, Any]] = []
    for data, ratio in sections:
        part = runs[(runs["data"] == data) & (runs["ratio_label"] == ratio)]
        lines += _section(
            part,
            [r for r in results if r.run_id in set(part["run_id"])],
            data,
            ratio,
            # per section: a group label can differ between sections (e.g. the profile shows only at a ratio)
            _reference_group(protocol.reference, steps, part),
            protocol.reference,
            [g for m in protocol.other_references if (g := _reference_group(m, steps, part)) is not None],
            histories,
            tidy,
        )
    lines += _rankings(runs, out_dir, protocol.name, tidy)
    lines += _not_in_tables(steps)
    lines += _runs_table(steps, records)
    lines += [
        "## Protocol file",
        "",
        f"`{_shown_path(protocol.file)}` (sha256 {protocol.sha256[:16]}):",
        "",
        "```toml",
        protocol.text.rstrip(),
        "```",
        "",
    ]
    markdown = out_dir / f"{protocol.name}.md"
    csv = out_dir / f"{protocol.name}.csv"
    with atomic_path(markdown) as tmp:
        tmp.write_text("\n".join(lines))
    with atomic_path(csv) as tmp:
        pd.DataFrame(tidy, columns=RESULTS_COLUMNS).astype({"n": "Int64", "epoch": "Int64"}).to_csv(tmp, index=False)
    return BenchmarkResult(steps, markdown, csv, wall_seconds)


def _reference_group(method: str, steps: list[Step], runs: pd.DataFrame) -> str | None:
    """The group of `method`'s runs with its default settings among `runs`; None when it has none there."""
    groups = runs.set_index("run_id")["group"]
    for s in steps:
        if s.run.method.method == method and not s.run.method.settings and s.run_id in groups.index:
            return str(groups[s.run_id])
    return None


def _sections(steps: list[Step], runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(data label, ratio label) of the finished runs, in the protocol's order."""
    where = runs.set_index("run_id")[["data", "ratio_label"]]
    keys = [
        (str(where.loc[s.run_id, "data"]), str(where.loc[s.run_id, "ratio_label"]))
        for s in steps
        if s.run_id in where.index
    ]
    return list(dict.fromkeys(keys))


def _where_run() -> str:
    """Where the command ran, as a reader can repeat it: the repository root, or nothing (no machine paths)."""
    return " (from the repository root)" if Path.cwd().resolve() == REPO_ROOT else ""


def _header(
    protocol: Protocol,
    steps: list[Step],
    records: dict[str, dict],
    command: str,
    executor: str,
    wall_seconds: float,
    reference_group: str | None,
) -> list[str]:
    counted = {state: sum(s.state == state for s in steps) for state in STATE_TEXT}
    finished = sum(s.final_status == "finished" for s in steps)
    trained_seconds = np.nansum(
        [_training_seconds(records[s.run_id]) for s in steps if s.final_status == "finished" and s.run_id in records]
    )
    training = ", ".join(f"{k} {v}" for k, v in protocol.training.items())
    one_class = [m for m in protocol.all_methods() if m.task and m.task != protocol.task]
    lines = [f"# Benchmark `{protocol.name}`", ""]
    if protocol.description:
        lines += [protocol.description.strip(), ""]
    lines += [
        f"- Command: `{command or '(called from Python)'}`{_where_run()}",
        f"- Code version: `{code_version()}`; executor: {executor}; written {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- Wall time of this command: {_duration(wall_seconds)}; training time of the {finished} runs in the tables: "
        f"{_duration(trained_seconds)} (summed over runs, reused ones too; a run's time is the longer of its last "
        "training call and the sum of its epochs' times, so the parts of a resumed run before it count)",
        f"- Runs planned: {len(steps)} — finished before and reused {counted['reuse']}, to train "
        f"{counted['new'] + counted['start']}, to resume {counted['resume']}, skipped {counted['skip']}, "
        f"blocked {counted['blocked']}, busy elsewhere {counted['elsewhere']}; finished now: {finished}",
        f"- Protocol: seeds {protocol.seeds}, ratios {[_ratio_label(r) for r in protocol.ratios]}, "
        f"{training or 'TrainConfig defaults'}" + (f", task {protocol.task!r}" if protocol.task else ""),
        f"- Starting weights: {weights_label(protocol.training.get('pretrained')) or 'random (from scratch)'}"
        + _weights_digests(steps, records),
        f"- Statistics (`imbal_core/stats.py`, as on Compare): replicates are seeds; mean ± sd over seeds, with a "
        f"{CONFIDENCE * 100:.0f} % t interval in brackets from {MIN_SEEDS_FOR_INTERVAL} seeds on; differences "
        f"against `{protocol.reference}`{''.join(f' and `{m}`' for m in protocol.other_references)} are paired by "
        "seed (same data, ratio and seed), with a "
        f"{CONFIDENCE * 100:.0f} % t interval from {MIN_SEEDS_FOR_INTERVAL} pairs on. Few / medium / many = classes "
        "in the bottom / middle / top tercile of training counts (`metrics.shot_groups`); their accuracy is the "
        "mean recall of those classes.",
    ]
    versions = Counter(
        _short_version(records[s.run_id].get("code_version"))
        for s in steps
        if s.final_status == "finished" and s.run_id in records
    )
    if versions:
        lines.append(
            "- Code that trained the runs in the tables (a run is reused when its whole config matches, whatever "
            "code trained it): " + ", ".join(f"{v} ({n} runs)" for v, n in versions.most_common())
        )
    environments = Counter(
        " then ".join(records[s.run_id]["environments"]) or "not recorded"
        for s in steps
        if s.final_status == "finished" and s.run_id in records
    )
    if environments:
        lines.append(
            "- Environment that trained them (the same seed gives the same numbers only in the same environment): "
            + "; ".join(f"{e} ({n} runs)" for e, n in environments.most_common())
        )
    resized = Counter(
        f"{records[s.run_id]['method']} {size}"
        for s in steps
        if s.final_status == "finished" and s.run_id in records
        for size in {(e.get("method") or {}).get("synthetic_resized") for e in _history(records[s.run_id])} - {None}
    )
    if resized:
        lines.append(
            "- Generator samples resized to the run's size (antialiased bilinear; the generator was made at another "
            "size): " + ", ".join(f"{what} ({n} runs)" for what, n in resized.most_common())
        )
    if reference_group is None:
        lines.append(f"- No finished `{protocol.reference}` run: no paired differences.")
    if one_class:
        tasks = sorted({m.task for m in one_class if m.task})
        methods = sorted({m.label for m in one_class if not m.added})
        lines.append(
            f"- Methods on their own binary task ({', '.join(methods)}): one-class methods need a binary "
            f"task, so the protocol gives them one ({', '.join(map(repr, tasks))}); `{protocol.reference}` "
            "is run on that task too, so they have a reference to be paired with. Their results are in the "
            "sections of the task's data set (marked [task])."
        )
    return lines + [""]


def _section(
    runs: pd.DataFrame,
    results: list,
    data: str,
    ratio: str,
    reference_group: str | None,
    reference: str,
    other_reference_groups: list[str],
    histories: dict[str, list[dict]],
    tidy: list[dict[str, Any]],
) -> list[str]:
    binary = runs["auroc"].notna().any() if "auroc" in runs else False
    shown, every = (SHOWN_BINARY, ALL_BINARY) if binary else (SHOWN, ALL_METRICS)
    paired_shown = PAIRED_SHOWN_BINARY if binary else PAIRED_SHOWN
    lines = [f"## {data} · ratio {ratio}", "", *_test_split(results)]
    board = leaderboard(runs, every)
    where = {"data": data, "ratio": ratio}
    for row in board.itertuples(index=False):
        row = row._asdict()
        for metric in every:
            tidy.append(
                {
                    "table": "summary",
                    **where,
                    "method": _method(row["group"]),
                    "group": row["group"],
                    "metric": metric,
                    "n": row["n_seeds"],
                    "mean": row[metric],
                    "sd": row[f"{metric}_sd"],
                    "low": row[f"{metric}_low"],
                    "high": row[f"{metric}_high"],
                }
            )
    same = identical_groups(results, runs)
    copy_of = dict(same)
    for group, earlier in same:  # said in the tables (and the CSV, for the README's) beside the numbers
        tidy.append({"table": "identical", **where, "method": _method(group), "group": group, "reference": earlier})
    header = ["method", "n (seeds)"] + [_metric_name(m) for m in shown]
    rows = [
        [_method(r.group) + (f" (= {_method(copy_of[r.group])})" if r.group in copy_of else ""), str(r.n_seeds)]
        + [
            format_spread(
                getattr(r, m),
                getattr(r, f"{m}_sd"),
                r.n_seeds,
                getattr(r, f"{m}_low"),
                getattr(r, f"{m}_high"),
                metric_range(m),
            )
            for m in shown
        ]
        for r in board.itertuples(index=False)
    ]
    repeats = [f"{_method(g)}: {text}" for g, text in zip(board["group"], board["repeats"]) if text]
    lines += [f"Test metrics, mean ± sd over seeds [95 % interval; {CLIPPED_NOTE}]:", "", *_md_table(header, rows)]
    if repeats:
        lines += ["", f"Seeds run more than once (averaged, counted once): {'; '.join(repeats)}"]
    lines.append("")
    if same:
        lines += [identical_note(same, _method), ""]

    if reference_group is not None and reference_group in set(runs["group"]):
        tidy.append({"table": "reference", **where, "method": _method(reference_group), "group": reference_group})
        lines += _paired_table(runs, reference_group, every, paired_shown, where, tidy)
    else:
        lines += [f"No finished `{reference}` runs here: no paired differences.", ""]
    for other in other_reference_groups:
        lines += _paired_table(runs, other, every, paired_shown, where, tidy)

    lines += _posthoc_choices(results, runs)
    per_class = per_class_table(results, "recall") if results else pd.DataFrame()
    if not per_class.empty:
        classes = (
            per_class.groupby("class", sort=False)["train_count"].mean().sort_values(ascending=False, kind="stable")
        )
        labels = [f"{name} ({count:.0f})" for name, count in classes.items()]
        for r in per_class.itertuples(index=False):
            tidy.append(
                {
                    "table": "per_class_recall",
                    **where,
                    "method": _method(r.method),
                    "group": r.method,
                    "metric": "recall",
                    "class": r[1],
                    "train_count": r.train_count,
                    "n": r.runs,
                    "mean": r.mean,
                    "sd": r.sd,
                }
            )
        cell = {
            (r.method, r[1]): format_spread(r.mean, r.sd if r.runs > 1 else float("nan"), r.runs)
            for r in per_class.itertuples(index=False)
        }
        groups = list(dict.fromkeys(per_class["method"]))
        lines += [
            "Per-class test recall, mean ± sd over seeds (classes by training count, shown in brackets):",
            "",
            *_md_table(
                ["method"] + labels, [[_method(g)] + [cell.get((g, c), "—") for c in classes.index] for g in groups]
            ),
            "",
        ]
        # Against every reference in the CSV (Compare's heat map follows its pick of reference); in the markdown,
        # against the first.
        change = pd.DataFrame()
        if reference_group is not None and reference_group in groups and len(groups) > 1:
            change = _class_differences(results, runs, reference_group, where, tidy)
        for against in other_reference_groups:
            if against in groups:
                _class_differences(results, runs, against, where, tidy)
        if not change.empty:
            cells = {(r.group, r[1]): _diff(r, "recall") for r in change.itertuples(index=False)}
            others = list(dict.fromkeys(change["group"]))
            lines += [
                f"Per-class recall change vs `{reference}`, paired by seed (mean [95 % interval], n pairs):",
                "",
                *_md_table(
                    ["method"] + labels,
                    [[_method(g)] + [cells.get((g, c), "—") for c in classes.index] for g in others],
                ),
                "",
                _verdicts(change, "per-class differences"),
                "",
            ]
    return lines + _validation_curves(validation_curves(runs, histories), where, tidy)


def _rankings(runs: pd.DataFrame, out_dir: Path, name: str, tidy: list[dict[str, Any]]) -> list[str]:
    """Friedman's test and a critical-difference diagram (`<name>_ranks_<metric>.svg` beside the markdown) over all
    sections: multi-class ones by balanced accuracy, binary ones by AUROC. CSV rows `rank` (mean rank per group),
    `rank_test` (Friedman's chi-square and p; the critical difference in `high`) and `rank_pairwise` (Nemenyi's p
    of each pair), with empty data and ratio: they span the sections."""
    import matplotlib

    lines: list[str] = []
    if runs.empty:
        return lines
    binary = runs["auroc"].notna() if "auroc" in runs else pd.Series(False, index=runs.index)
    for metric, on_binary in RANKED:
        ranking = rank_groups(_by_method(runs[binary == on_binary]), metric)
        if ranking is None:
            continue
        blocks = f"{ranking.n_blocks} blocks (data set x ratio x seed)"
        figure = critical_difference_figure(ranking, f"{name}: mean rank by {_metric_name(metric)} over {blocks}")
        svg = out_dir / f"{name}_ranks_{metric}.svg"
        # no date and fixed element ids (scikit-posthocs may still draw a crossbar from its other end in another
        # process: the same picture, a few changed path lines)
        with atomic_path(svg) as tmp, matplotlib.rc_context({"svg.hashsalt": name}):
            figure.savefig(tmp, format="svg", bbox_inches="tight", metadata={"Date": None})
        where = {"data": "", "ratio": "", "metric": metric}
        tidy.append(
            {"table": "rank_test", **where, "n": ranking.n_blocks, "mean": ranking.statistic, "p": ranking.p}
            | {"high": ranking.critical_difference}
        )
        for group in ranking.left_out:  # named, with no rank
            tidy.append({"table": "rank", **where, "method": _method(group), "group": group})
        for group, rank in ranking.mean_ranks.items():
            tidy.append({"table": "rank", **where, "method": _method(group), "group": group, "mean": rank})
            for other, p_value in ranking.p_values[group].items():
                if other != group:
                    tidy.append({"table": "rank_pairwise", **where, "group": group, "reference": other, "p": p_value})
        apart = {
            group: [_method(o) for o, p in ranking.p_values[group].items() if o != group and p < ALPHA]
            for group in ranking.mean_ranks.index
        }
        rows = [
            [str(i), f"`{_method(group)}`", f"{rank:.2f}", ", ".join(apart[group]) or "none"]
            for i, (group, rank) in enumerate(ranking.mean_ranks.items(), 1)
        ]
        left_out = (
            f" Left out (not measured in every block): {', '.join(ranking.left_out)}." if ranking.left_out else ""
        )
        lines += [
            f"## Ranking by {_metric_name(metric)} across data sets, ratios and seeds",
            "",
            f"Methods ranked within each of {blocks}; Friedman's test that all rank alike: chi-square "
            f"{ranking.statistic:.1f}, p = {ranking.p:.2g}. Nemenyi's post-hoc test (Demšar 2006) at 5 %: mean ranks "
            f"further apart than the critical difference {ranking.critical_difference:.2f} differ. Seeds of one data "
            "set share its images, so this ranks the methods on these data sets, not on data sets in general."
            + left_out,
            "",
            *_md_table(["rank", "method", "mean rank", "differs (Nemenyi p < 0.05) from"], rows),
            "",
            f"![Critical-difference diagram]({svg.name})",
            "",
        ]
    return lines


def _by_method(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` with each group named by its method label (its epochs and backbone can differ between sections, so
    a ranking over sections pairs methods), unless two groups of one section share a label."""
    labels = runs["group"].map(_method)
    sections = runs.assign(label=labels).groupby(COMPARABLE, sort=False)
    shared = (sections["group"].nunique() != sections["label"].nunique()).any()
    return runs if shared else runs.assign(group=labels)


def _test_split(results: list) -> list[str]:
    """The test images behind the section's numbers, per class; a warning when its runs were not tested alike."""
    splits = {
        tuple(zip(r.class_names, r.metrics["per_class"]["support"], strict=True))
        for r in results
        if "support" in r.metrics.get("per_class", {})
    }
    if not splits:
        return []
    if len(splits) > 1:
        seen = "; ".join(", ".join(f"{name} {count:,}" for name, count in split) for split in sorted(splits))
        return [
            f"**Warning: these runs were not tested on the same images** ({len(splits)} different test splits: "
            f"{seen}); their differences mix methods with test sets. Re-run them on one split.",
            "",
        ]
    (split,) = splits
    total = sum(count for _, count in split)
    return [f"Test split: {total:,} images ({', '.join(f'{name} {count:,}' for name, count in split)}).", ""]


def _posthoc_choices(results: list, runs: pd.DataFrame) -> list[str]:
    """What each method's `finalize` recorded after training (e.g. tau-norm's tau, chosen on validation), per seed."""
    seeds = runs.set_index("run_id")["seed"]
    chosen: dict[str, dict[int, str]] = {}
    for r in results:
        for name, value in (r.metrics.get("posthoc") or {}).items():
            shown = f"{value:g}" if isinstance(value, (int, float)) else str(value)
            chosen.setdefault(f"`{_method(r.group)}` {name}", {})[int(seeds[r.run_id])] = shown
    if not chosen:
        return []

    def by_seed(values: dict[int, str]) -> str:
        if len(values) > 1 and len(set(values.values())) == 1:
            return f"{next(iter(values.values()))} (every seed)"
        return ", ".join(f"{value} (seed {seed})" for seed, value in values.items())

    return [
        "Set after training (each method's `finalize`; `tau_norm` chooses its tau on the validation split): "
        + "; ".join(f"{what}: {by_seed(values)}" for what, values in chosen.items())
        + ".",
        "",
    ]


def _class_differences(
    results: list, runs: pd.DataFrame, reference_group: str, where: dict[str, str], tidy: list[dict[str, Any]]
) -> pd.DataFrame:
    """Per-class test recall of every other group minus `reference_group`'s, paired by seed, added to the CSV rows."""
    change = paired_class_differences(results, runs, reference_group)
    for r in change.itertuples(index=False):
        cells = {"metric": "recall", "class": r[1], "train_count": r.train_count}
        tidy.append(_difference_row("per_class_recall_difference", where, r, reference_group, **cells))
    return change


def _paired_table(
    runs: pd.DataFrame,
    reference_group: str,
    every: list[str],
    shown: list[str],
    where: dict[str, str],
    tidy: list[dict[str, Any]],
) -> list[str]:
    """Every other group minus `reference_group`, paired by seed: all metrics in the CSV, `shown` in the markdown."""
    diffs = paired_differences(runs, reference_group, every)
    for row in diffs.itertuples(index=False):
        tidy.append(_difference_row("paired_difference", where, row, reference_group, metric=row.metric))
    groups = list(dict.fromkeys(diffs["group"]))
    if not groups:
        return []
    cells = {(r.group, r.metric): _diff(r, r.metric) for r in diffs.itertuples()}
    reference = _method(reference_group)
    return [
        f"Paired differences vs `{reference}` (method − {reference}, paired by seed; mean [95 % interval], n pairs):",
        "",
        *_md_table(
            ["method", "n pairs"] + [_metric_name(m) for m in shown],
            [
                [_method(g), str(int(diffs[diffs["group"] == g]["n_pairs"].max()))]
                + [cells.get((g, m), "—") for m in shown]
                for g in groups
            ],
        ),
        "",
        _verdicts(diffs, "differences (every metric: the CSV has them all)"),
        "",
    ]


def _difference_row(table: str, where: dict[str, str], row: Any, reference_group: str, **cells: Any) -> dict[str, Any]:
    """A CSV row of one paired difference (`row` has group, n_pairs, mean_diff, low, high) against `reference_group`."""
    return {
        "table": table,
        **where,
        "method": _method(row.group),
        "group": row.group,
        "n": row.n_pairs,
        "mean": row.mean_diff,
        "low": row.low,
        "high": row.high,
        "reference": reference_group,
        "p": row.p,
        "p_holm": row.p_holm,
        **cells,
    }


def _validation_curves(curves: pd.DataFrame, where: dict[str, str], tidy: list[dict[str, Any]]) -> list[str]:
    """The validation score by epoch (every epoch in the CSV; a few per method in the markdown): did the budget
    suffice? Each method's own budget: two-stage methods train more epochs, and pick their best in the last stage."""
    if curves.empty:
        return []
    for r in curves.itertuples(index=False):
        tidy.append(
            {
                "table": "validation_curve",
                **where,
                "method": _method(r.group),
                "group": r.group,
                "metric": r.metric,
                "epoch": r.epoch,
                "stage": r.stage,
                "n": r.n,
                "mean": r.mean,
                "sd": r.sd,
            }
        )
    rows = []
    for group, curve in curves.groupby("group", sort=False):
        mean = dict(zip(curve["epoch"], curve["mean"]))
        last = int(curve["epoch"].max())
        at = [max(1, round(last * f)) for f in (0.25, 0.5, 0.75)] + [last]
        final_stage = curve[curve["stage"] == curve["stage"].iloc[-1]].dropna(subset=["mean"])
        best = final_stage.loc[final_stage["mean"].idxmax()] if len(final_stage) else None
        stages = list(dict.fromkeys(curve["stage"]))
        rows.append(
            [
                _method(group),
                str(int(curve["n"].max())),
                str(last) + (f" ({' + '.join(stages)})" if len(stages) > 1 else ""),
            ]
            + [f"{mean[e]:.3f} ({e})" if np.isfinite(mean.get(e, np.nan)) else "—" for e in at]
            + [f"{best['mean']:.3f} ({int(best['epoch'])})" if best is not None else "—"]
        )
    metric = str(curves["metric"].iloc[0]).removeprefix("val_")
    return [
        f"Validation {metric} by epoch (epoch in brackets), mean over seeds: the score each run picks its best epoch "
        "by, at a quarter, half, three quarters and all of each method's epochs, and its best epoch (in the last "
        "stage: a two-stage method resets its head and restarts its curve at the second stage). A method still "
        "rising at its last epoch had not converged. Every epoch is in the CSV.",
        "",
        *_md_table(["method", "n (seeds)", "epochs", "¼", "½", "¾", "last", "best"], rows),
        "",
    ]


def _not_in_tables(steps: list[Step]) -> list[str]:
    lines = []
    skipped = {s.run.method.label: s.note for s in steps if s.state == "skip"}
    if skipped:
        lines += ["## Skipped methods (the protocol says why)", ""]
        lines += [f"- `{label}`: {reason}" for label, reason in skipped.items()] + [""]
    missing = [s for s in steps if s.state != "skip" and s.final_status != "finished"]
    if missing:
        lines += ["## Not finished (not in the tables)", ""]
        for s in missing:
            status = s.final_status
            why = s.note or (s.outcome.error if s.outcome and s.outcome.error else "")
            state = STATE_TEXT[s.state] if s.state in ("blocked", "elsewhere") else f"{status or 'not run'}"
            lines.append(
                f"- {s.run.describe()}: {state}" + (f" ({s.run_id})" if s.run_id else "") + (f" — {why}" if why else "")
            )
        lines += [
            "",
            "Run the same command again after fixing these: finished runs are kept, stopped, interrupted "
            "and failed ones resume from their last completed epoch.",
            "",
        ]
    return lines


def _runs_table(steps: list[Step], records: dict[str, dict]) -> list[str]:
    rows = []
    for s in steps:
        record = records.get(s.run_id or "")
        seconds = _training_seconds(record) if record else float("nan")
        epoch_seconds = _epoch_seconds(record) if record else []
        if s.state in DONE_TEXT:
            if s.outcome:
                state = DONE_TEXT[s.state]
            elif s.started:  # the command was interrupted while training it: the next one resumes it
                state = "interrupted (resumes next time)"
            else:
                state = "not reached (the command ended first; the next call trains it)"
        else:
            state = STATE_TEXT[s.state] + (f", {s.note}" if s.state == "reuse" and s.note else "")
        if s.outcome and s.outcome.attempts > 1:
            state += f", {s.outcome.attempts} attempts (worker died)"
        rows.append(
            [
                f"`{s.run.label}`" + (f" [{s.run.task}]" if s.run.task else ""),
                s.run.data.name,
                _ratio_label(s.run.ratio),
                str(s.run.seed),
                f"`{s.run_id}`" if s.run_id else "—",
                (record or {}).get("status", "—"),
                state,
                "—" if np.isnan(seconds) else f"{seconds:.0f}",
                f"{np.median(epoch_seconds):.0f}" if epoch_seconds else "—",
                _short_version((record or {}).get("code_version")),
            ]
        )
    return [
        "## Runs",
        "",
        *_md_table(
            ["method", "data", "ratio", "seed", "run", "status", "this command", "train s", "median s / epoch", "code"],
            rows,
        ),
        "",
    ]


def _short_version(version: str | None) -> str:
    """A run's code versions, commits shortened ("unrecorded" for runs trained before runs recorded theirs)."""
    if not version:
        return "unrecorded"
    return " then ".join(
        v[:7] + ("+uncommitted" if v.endswith("+uncommitted") else "") for v in version.split(" then ")
    )


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def _diff(row: Any, metric: str) -> str:
    return format_difference(row.mean_diff, row.low, row.high, row.p_holm, metric, row.n_pairs)


def _verdicts(differences: pd.DataFrame, what: str) -> str:
    """How many differences exclude 0 before and after Holm's correction over all of them (the family: every
    metric, or every class, of the section against this reference), as a sentence under their table."""
    tested = differences[differences["low"].notna()]
    raw = int(((tested["low"] > 0) | (tested["high"] < 0)).sum())
    held = tested[tested["p_holm"] < ALPHA]
    key = "metric" if "class" not in held else "class"
    named = ", ".join(f"`{_method(g)}` {k} {d:+.3f}" for g, k, d in zip(held["group"], held[key], held["mean_diff"]))
    return (
        f"Of the {len(tested)} {what} with an interval, {raw} exclude 0 at 95 % each; tested together with Holm's "
        f"correction, {len(held)} hold (marked{HOLM_MARK})" + (f": {named}" if named else "") + f". {CLIPPED_NOTE}."
    )


def _method(group: str) -> str:
    return group.split(" · ")[0]


def _metric_name(metric: str) -> str:
    return {
        "many_acc": "many acc",
        "medium_acc": "medium acc",
        "few_acc": "few acc",
        "balanced_acc": "balanced acc",
        "macro_f1": "macro-F1",
        "acc": "acc",
        "auroc": "AUROC",
        "auprc": "AUPRC",
        "sens_at_95_spec": "sens @ 95 % spec",
    }.get(metric, metric)


def _ratio_label(ratio: float | None) -> str:
    return "natural" if ratio is None else f"{ratio:g}"


def _weights_digests(steps: list[Step], records: dict[str, dict[str, Any]]) -> str:
    """ " (SHA-256 abc...)" of the starting weights the finished runs recorded in weights.json, when pretrained."""
    recorded = (records[s.run_id]["weights_sha256"] for s in steps if s.run_id in records)
    digests = sorted({digest[:16] for digest in recorded if digest})
    return f" (SHA-256 {', '.join(digests)}..., from each run's weights.json)" if digests else ""


def _training_seconds(record: dict[str, Any]) -> float:
    """A run's training time: its last training call (data, epochs, test) or, when resumed, the sum of its epochs'
    times over every call, whichever is longer (the store keeps only the last call's duration)."""
    epochs = sum(_epoch_seconds(record))
    last_call = record["duration_s"]
    return max(epochs, float(last_call)) if last_call is not None else (epochs or float("nan"))


def _history(record: dict[str, Any]) -> list[dict]:
    """A run's per-epoch records (losses, validation scores, seconds) over all its training calls."""
    return (record.get("progress") or {}).get("history") or []


def _epoch_seconds(record: dict[str, Any]) -> list[float]:
    return [float(epoch["seconds"]) for epoch in _history(record) if epoch.get("seconds") is not None]


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _shown_path(path: Path) -> str:
    """Relative to the working folder when inside it (as a command would name it), else absolute."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)
