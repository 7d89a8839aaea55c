"""`fathom pipeline run --local` times every step: a real two-task pipeline under kfp.local (SubprocessRunner), one
task that succeeds and one that fails on both of its attempts; each attempt is recorded with its status, the
times land in the run folder, and the CLI's table sums the retries."""

import builtins
import json

import pytest
from kfp import dsl, local


@dsl.component(base_image="python:3.11")
def sleeper(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@dsl.component(base_image="python:3.11")
def breaker(x: float):
    raise RuntimeError(f"broken on purpose after {x}")


@dsl.pipeline(name="timed")
def timed_pipeline():
    first = sleeper(seconds=1.5)
    second = breaker(x=first.output)
    second.set_retry(num_retries=1, backoff_duration="0s")


def test_every_task_attempt_is_timed_and_written_to_the_run_folder(tmp_path):
    from fathom.pipeline_cli import StepTimes, timed_tasks

    real_print = builtins.print
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path), raise_on_error=True)
    try:
        with pytest.raises(RuntimeError, match="breaker"), timed_tasks(tmp_path) as times:
            timed_pipeline()
    finally:
        builtins.print = real_print
    assert isinstance(times, StepTimes)
    assert [(r["step"], r["status"]) for r in times] == [("sleeper", "SUCCESS"), ("breaker", "FAILURE"),
                                                        ("breaker", "FAILURE")]
    assert times[0]["seconds"] >= 1.5  # the task's own sleep, measured around the subprocess
    assert times.table_rows()[1] == ("breaker", "FAILURE (2 attempts)", times.table_rows()[1][2])
    (run,) = times.run_dirs()
    written = json.loads((tmp_path / run / "step-times.json").read_text())
    assert written == list(times)
    # the dispatcher is restored: a later run is not timed into this list
    from kfp.local import task_dispatcher

    assert task_dispatcher.run_single_task_implementation.__name__ == "run_single_task_implementation"
