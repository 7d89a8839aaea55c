"""The train pipeline compiles with the launcher wired: every GPU training step takes `launcher`, `launch_json` and
the run id, and an exit handler deletes the run's TrainJobs; `release_trainjobs` is a no-op without TrainJobs."""

import yaml


def test_train_pipeline_wires_the_launcher_and_the_exit_handler(tmp_path):
    from kfp import compiler

    from pipelines.train import PIPELINE

    path = tmp_path / "train.yaml"
    compiler.Compiler().compile(PIPELINE, str(path))
    ir = next(yaml.safe_load_all(path.read_text()))
    root = ir["root"]["dag"]["tasks"]
    assert root["release-trainjobs"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert {"launcher", "launch_config_json"} <= set(ir["root"]["inputDefinitions"]["parameters"])
    body = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    for step in ("rapo-stage1", "rapo-stage2", "synthesizer-sft"):
        params = body[step]["inputs"]["parameters"]
        assert params["launcher"] == {"componentInputParameter": "pipelinechannel--launcher"}
        assert params["launch_json"] == {"componentInputParameter": "pipelinechannel--launch_config_json"}
        assert params["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"


def test_release_trainjobs_is_a_no_op_without_trainjobs():
    from components.launch import release_trainjobs

    assert release_trainjobs.python_func(launcher="inprocess", launch_json="{}", run_id="r") == ""
    assert release_trainjobs.python_func(launcher="accelerate", launch_json="{}", run_id="r") == ""


def test_retrain_wires_the_launcher_into_its_training_steps_and_teardown(tmp_path):
    """The weekly retrain chooses its launcher from its profile (`paper`: accelerate on the pod's GPUs; a config URI
    can ask for a TrainJob of N nodes): the three GPU training steps and the exit handler's teardown get it."""
    from kfp import compiler

    from fathom.retrain import body_arguments, resolve
    from pipelines.retrain import PIPELINE

    assert body_arguments(resolve({"profile": "paper"}), "r")["launcher"] == "accelerate"
    assert body_arguments(resolve({"profile": "embedded"}), "r")["launcher"] == "inprocess"
    path = tmp_path / "retrain.yaml"
    compiler.Compiler().compile(PIPELINE, str(path))
    ir = next(yaml.safe_load_all(path.read_text()))
    body = next(c for name, c in ir["components"].items() if name.startswith("comp-fathom-retrain-run"))
    tasks = body["dag"]["tasks"]
    teardown = next(t for name, t in tasks.items() if name.startswith("teardown-release"))
    assert teardown["inputs"]["parameters"]["launcher"] == {"componentInputParameter": "launcher"}
    inner = next(c for name, c in ir["components"].items() if name.startswith("comp-exit-handler"))["dag"]["tasks"]
    for step in ("rapo-stage1", "rapo-stage2", "synthesizer-sft"):
        params = inner[step]["inputs"]["parameters"]
        assert params["launcher"] == {"componentInputParameter": "pipelinechannel--launcher"}
        assert params["launch_json"] == {"componentInputParameter": "pipelinechannel--launch_config_json"}
