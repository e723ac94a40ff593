"""`plan`'s rough duration of a training stage before its first run, from the spec and the
model's size (read without loading it)."""

from __future__ import annotations

from pathlib import Path

import yaml

from subsetctl.modeling.duration import Cpu, rough_seconds, this_cpu
from subsetctl.spec import Spec

#: the packaged SmolLM2-135M-Instruct's parameters (its safetensors headers)
SMOLLM2_PARAMS = 134_515_008

#: the CPU the rough times were calibrated on: 2 threads on 2 free cores
FREE = Cpu(threads=2, cores=2, load=0.0, passive=False)


def _quickstart() -> Spec:
    return Spec.model_validate(yaml.safe_load(
        (Path(__file__).parents[2] / "examples" / "quickstart" / "subsetctl.yaml").read_text()))


def test_the_rough_time_meets_the_quickstarts_measured_stages() -> None:
    """Calibrated on README's measured quickstart (meta-init 40 s; 4 distinct fine-tunes
    89 s; gradients of 328 rows 43 s; evaluate of 64 test rows through 4 adapters 28 s) and
    the tiny model's fixed times: within a fifth of those, on the free cores calibrated on."""
    spec = _quickstart()
    assert abs(rough_seconds("meta_init", spec, SMOLLM2_PARAMS, cpu=FREE) - 40) < 8
    # the spec's 3 strategies and 2 baselines picked 4 distinct subsets: as many fine-tunes
    four = spec.model_copy(update={"finetune": spec.finetune.model_copy(update={"baselines": ["all"]})})
    assert abs(rough_seconds("finetune", four, SMOLLM2_PARAMS, cpu=FREE) - 89) < 18
    assert abs(rough_seconds("gradients", spec, SMOLLM2_PARAMS, 328, FREE) - 43) < 9
    assert abs(rough_seconds("evaluate", four, SMOLLM2_PARAMS, 64, FREE) - 28) < 6
    # it grows with the steps, rows and model; the stages of the data's rows need their count
    longer = spec.model_copy(update={"meta_init": spec.meta_init.model_copy(update={"steps": 300})})
    assert (rough_seconds("meta_init", longer, SMOLLM2_PARAMS, cpu=FREE)
            > 7 * rough_seconds("meta_init", spec, SMOLLM2_PARAMS, cpu=FREE))
    assert (rough_seconds("gradients", spec, SMOLLM2_PARAMS, 3280, FREE)
            > 7 * rough_seconds("gradients", spec, SMOLLM2_PARAMS, 328, FREE))
    assert rough_seconds("gradients", spec, SMOLLM2_PARAMS, cpu=FREE) is None
    assert rough_seconds("evaluate", spec, SMOLLM2_PARAMS, cpu=FREE) is None


def test_the_rough_time_counts_the_cores_this_process_may_use_and_the_load(monkeypatch) -> None:
    """The rough time assumed 2 free cores wherever plan ran: with other processes busy on
    the cores the quickstart's meta-init took 7 times (one other) to 23-46 times (load average
    11, its steps) its 40 s, which plan put at 40 s. It takes the cores this process may use, the
    threads torch uses, and the load now, and says what it assumed."""
    spec = _quickstart()
    monkeypatch.setattr("subsetctl.pipeline.thread_counts", dict)  # (no torch loaded, no OMP_NUM_THREADS)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr("os.getloadavg", lambda: (11.0, 8.0, 4.0))
    busy = this_cpu()
    assert (busy.threads, busy.cores, busy.load, busy.passive) == (2, 2, 11.0, False)
    free = rough_seconds("meta_init", spec, SMOLLM2_PARAMS, cpu=FREE)
    # the measured 23 to 46 times its steps (their share of the whole, with the fixed time)
    assert 20 * free < rough_seconds("meta_init", spec, SMOLLM2_PARAMS) < 40 * free
    assert "load average 11.0" in busy.text() and "OMP_WAIT_POLICY=PASSIVE" in busy.text()
    # one other process busy: the measured 7 times (292-329 s); 2.6 times with OMP_WAIT_POLICY=PASSIVE (104 s)
    assert 250 < rough_seconds("meta_init", spec, SMOLLM2_PARAMS, cpu=Cpu(2, 2, 1.5, False)) < 380
    assert 60 < rough_seconds("meta_init", spec, SMOLLM2_PARAMS, cpu=Cpu(2, 2, 1.5, True)) < 120
    # one core (taskset, OMP_NUM_THREADS=1), free: half the rate; 8 free cores: 4 times it
    monkeypatch.setattr("os.getloadavg", lambda: (0.2, 0.2, 0.2))
    monkeypatch.setattr("subsetctl.pipeline.thread_counts", lambda: {"torch": 1, "OMP_NUM_THREADS": "1"})
    one = this_cpu()
    assert (one.threads, one.cores) == (1, 2) and "the cores free now" in one.text()
    work = free - rough_seconds("meta_init", spec, 0, cpu=FREE)  # (the fixed time alone, with no arithmetic)
    assert abs(rough_seconds("meta_init", spec, SMOLLM2_PARAMS, cpu=one) - (free + work)) < 1
    assert abs(rough_seconds("meta_init", spec, SMOLLM2_PARAMS, cpu=Cpu(8, 8, 0.0, False)) - (free - 0.75 * work)) < 1



def test_one_thread_on_busy_cores_is_not_slowed_for_spinning() -> None:
    """torch's threads spin as they wait for each other: one thread (``OMP_NUM_THREADS=1``,
    a one-core allocation) has none to wait for, yet the rough time slowed its arithmetic
    4.5 times more on busy cores and told the user OMP_WAIT_POLICY=PASSIVE would stop that."""
    spec = _quickstart()
    for one in (Cpu(1, 2, 2.0, False), Cpu(1, 1, 1.0, False)):
        assert not one.spinning and "OMP_WAIT_POLICY" not in one.text()
        passive = Cpu(one.threads, one.cores, one.load, True)
        assert (rough_seconds("meta_init", spec, SMOLLM2_PARAMS, cpu=one)
                == rough_seconds("meta_init", spec, SMOLLM2_PARAMS, cpu=passive))
    assert Cpu(2, 2, 1.0, False).spinning  # (two threads, one other process: the measured 7 times)


def test_the_rough_times_slowdown_is_not_rounded_to_one_time() -> None:
    """A light load (one thread on one core, load average 0.4: 1.4 times slower) read
    "its arithmetic 1 times slower"; the heavy load's figure stays whole."""
    assert "load average 0.4: its arithmetic 1.4 times slower)" in Cpu(1, 1, 0.4, False).text()
    assert "load average 11.0: its arithmetic 29 times slower;" in Cpu(2, 2, 11.0, False).text()
    assert "the cores free now (load average 0.0)" in Cpu(2, 2, 0.0, False).text()

def test_plan_gives_a_training_stage_never_run_a_rough_time(tiny_project: Path) -> None:
    """plan said a stage's time only from its last run: before a first run, nothing, though
    meta-init and the fine-tunes can take hours. It gives a rough time, saying it is rough
    and what it assumes."""
    from subsetctl.api import plan_project

    _, _, statuses = plan_project(tiny_project)
    by_stage = {s.name: s.to_dict() for s in statuses}
    for stage in ("meta_init", "finetune"):
        assert by_stage[stage]["last_seconds"] is None and by_stage[stage]["rough_seconds"] > 0
        assert by_stage[stage]["rough"].startswith("a rough guess before its first run: it assumes rows filling "
                                                   "model.max_length, ")
        assert "CPU thread" in by_stage[stage]["rough"] and "load average" in by_stage[stage]["rough"]
    # the stages of the data's rows, before the data stage prepared them: not estimated
    assert by_stage["gradients"]["rough_seconds"] is None and by_stage["evaluate"]["rough_seconds"] is None
    assert by_stage["data"]["rough"] is None


def test_plan_gives_gradients_and_evaluate_a_rough_time_once_the_data_stage_prepared_their_rows(
        tiny_project_ran) -> None:
    """gradients and evaluate had no rough time before their first run (their rows are the
    data stage's): once it has prepared them, they have, counting those rows."""
    from subsetctl.api import plan_project

    tiny_project = tiny_project_ran("data")  # a copy: the data stage has prepared the rows
    by_stage = {s.name: s.to_dict() for s in plan_project(tiny_project)[2]}
    assert by_stage["gradients"]["rough_seconds"] > 0 and by_stage["evaluate"]["rough_seconds"] > 0
    assert ", the 45 rows the data stage prepared last, " in by_stage["gradients"]["rough"]
    assert ", the 5 test rows the data stage prepared last, " in by_stage["evaluate"]["rough"]
