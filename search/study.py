"""A study's vocabulary and identity: the states and trial attributes every part reads, and the
definition (tasks, model, objective, budget) and space a resumed study must still match."""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from search.space import SearchSpace
from tasks.notices import counted

if TYPE_CHECKING:
    from search.request import SearchRequest

DONE = (TrialState.COMPLETE, TrialState.PRUNED)
# stored on the trial (and matched by workers.py: keep it as it is); said as INTERRUPTED_SAID
INTERRUPTED = "interrupted (Ctrl-C or SIGINT) before its config was judged"
# a worker whose search command was killed is interrupted as by Ctrl-C (see workers.stop_with_parent)
INTERRUPTED_SAID = ("interrupted (Ctrl-C, SIGINT or SIGTERM, or its search command was killed) before its config "
                    "was judged")
# trial user attrs
CONFIG_ATTR = "config"  # {"method", "settings", "train"} as the trial sampled them
FAIL_REASON_ATTR = "fail_reason"
NOT_RUN_ATTR = "not_run"  # why a trial ended before it ran (budget full, point already run)
PRUNED_REASON_ATTR = "pruned_reason"  # where a trial was stopped, or why (a diverging loss)
RECORDS_ATTR = "records"  # the paths of a trial's run records, a task each
TASKS_ATTR = "tasks"  # the tasks a trial ran, in its records' order
HOST_ATTR, WORKER_ATTR = "host", "worker"  # the machine that keeps its records and adapter; the process that ran it
# study user attrs
DEFINITION_ATTR = "definition"  # what a resumed study must still match: tasks, model, objective, budget
SPACE_ATTR = "space"  # the space file's digest and path
REFERENCES_ATTR = "references"  # each task's full fine-tuning score, which trials' scores are relative to
METRIC_ATTR = "metric"  # a one-task study's primary metric, as its card names it
WEAK_REFERENCES_ATTR = "weak_references"  # task -> how its reference compares with the commonest class, where near


def score_label(study: optuna.Study, *, split: str = "validation ") -> str:
    """What a trial's score is: a task's validation score (by its metric's name), or the mean over
    several tasks (relative to each one's full fine-tuning score where the study has them). `split`
    "" where a chart's axis names the split already."""
    tasks = study.user_attrs.get(DEFINITION_ATTR, {}).get("tasks", [])
    if len(tasks) < 2:
        return f"{split}{study.user_attrs.get(METRIC_ATTR, 'score')}"
    return f"mean {split}score / full FT's" if study.user_attrs.get(REFERENCES_ATTR) else f"mean {split}score"


def _offered(distribution: optuna.distributions.BaseDistribution) -> str:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return f"choices {', '.join(map(str, distribution.choices))}"
    scale = "log" if distribution.log else "linear"
    kind = "integers" if isinstance(distribution, optuna.distributions.IntDistribution) else "numbers"
    return f"{kind} on a {scale} scale"


def space_clashes(study: optuna.Study, space: SearchSpace) -> list[str]:
    """Parameters this space offers in a form the study's trials rule out. Optuna keeps one
    distribution per parameter name in a study: ranges may change, but not a categorical's
    choices, a number's scale, or its kind; a trial asking otherwise would fail."""
    stored: dict[str, optuna.distributions.BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        stored.update(trial.distributions)
    clashes = []
    for key, new in space.distributions().items():
        if key not in stored:
            continue
        try:
            optuna.distributions.check_distribution_compatibility(stored[key], new)
        except ValueError:
            clashes.append(f"{key}: {_offered(stored[key])} in the study, {_offered(new)} now")
    return clashes


DEFINITION_ADDED_LATER = {"gradient_checkpointing": False}
# the flag that sets each key of a study's definition, as a refused resume names it
DEFINITION_FLAGS = {"tasks": "--task", "model": "--model", "objective": "--objective", "steps": "--steps",
                    "batch_size": "--batch-size", "eval_every": "--eval-every", "eval_size": "--eval-size",
                    "monitor_size": "--monitor-size (--eval-size unless given)", "seed": "--seed",
                    "gradient_checkpointing": "--gradient-checkpointing",
                    "cards": "--task (the cards the names find, and their versions)"}
# keys whose value in a study recorded before they counted is unknown: the first resume's is kept
RECORDED_ON_FIRST_RESUME = ("seed", "cards")


def study_definition(request: SearchRequest) -> dict:
    """What a search's trials measure, as `claim_study` ties its study to it (keys as in DEFINITION_FLAGS)."""
    from search.costs import RECOMPUTATION_COSTS

    train = request.train
    definition = {"tasks": list(request.tasks), "model": request.model, "objective": list(request.objectives),
                  "steps": train.steps, "batch_size": train.batch_size, "eval_every": train.eval_every,
                  "monitor_size": train.monitor_size, "eval_size": train.eval_size,
                  "seed": train.seed,  # the seed trains every trial: one per study
                  # a user's card that replaces a shipped one of its name, or a new version, is another task
                  "cards": request.card_versions}
    if request.cost in RECOMPUTATION_COSTS:  # scores are the same either way; these costs are not
        definition["gradient_checkpointing"] = train.gradient_checkpointing
    return definition


def claim_study(study: optuna.Study, definition: dict, *, directions: list[str]) -> None:
    """Tie the study to what its trials measure (tasks, model, objective, training budget): a rerun
    with other settings under the same name would mix incomparable trials, or, with another
    objective, fail every trial without end. A new study records the definition; a loaded one must match.
    A search's study made before definitions were recorded records it on its first resume; a study
    holding no search's trials (a shared suite's, whose name was given) is refused."""
    # trials first: a command on another machine records the definition before it queues a trial,
    # so one whose queued trials are seen here has its definition seen too
    trials = study.get_trials(deepcopy=False)
    stored = study.user_attrs.get(DEFINITION_ATTR)
    if stored is None and not trials:
        study.set_user_attr(DEFINITION_ATTR, definition)
        return
    if stored is None and not any(CONFIG_ATTR in trial.user_attrs for trial in trials):
        raise ValueError(f"study {study.study_name!r} holds {counted(len(trials), 'trial')}, none of them a search's "
                         "(a shared suite's runs, or another program's): pass another --study name")
    wanted = [d.upper() for d in directions]
    if [d.name for d in study.directions] != wanted:
        made_with = (f"was made with --objective {','.join(stored['objective'])}" if (stored or {}).get("objective")
                     else f"optimizes {', '.join(d.name.lower() for d in study.directions)}")  # made before definitions
        raise ValueError(f"study {study.study_name!r} {made_with}, this command asks "
                         f"{','.join(definition['objective'])}: pass another --study name for a new objective")
    if stored is None:  # a search made before studies recorded what they measure: from now on they do
        study.set_user_attr(DEFINITION_ATTR, definition)
        return
    unknown = [k for k in RECORDED_ON_FIRST_RESUME if k in definition and k not in stored]
    if unknown:
        stored = {**stored, **{k: definition[k] for k in unknown}}
        study.set_user_attr(DEFINITION_ATTR, stored)
    # a key added to definitions later reads, in a study recorded before, as its default then
    differing = {k: (stored.get(k, DEFINITION_ADDED_LATER.get(k)), v) for k, v in definition.items()
                 if stored.get(k, DEFINITION_ADDED_LATER.get(k)) != v}
    if "tasks" in differing:  # other tasks are other cards: said once
        differing.pop("cards", None)
    if differing:
        changes = "; ".join(f"{DEFINITION_FLAGS.get(key, key)} {old!r} -> {new!r}"
                            for key, (old, new) in differing.items())
        raise ValueError(f"study {study.study_name!r} holds trials of other settings ({changes}): pass another "
                         "--study name, or the study's own settings to resume it")


def done_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=DONE))


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Mark failed the trials left running by processes whose heartbeat went stale (a killed command),
    as a search's first trial would; their numbers. A command that runs no trial says so too, rather
    than count them as running."""
    def running() -> set[int]:
        return {trial.number for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}

    before = running()
    if not before:
        return []
    optuna.storages.fail_stale_trials(study)
    # a live process's trial may end meanwhile, completed or failed: only those failed now were stale
    failed = {trial.number for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    return sorted((before - running()) & failed)
