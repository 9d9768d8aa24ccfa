"""`mattebox train` with the tiny CPU config: runs, logs, checkpoints, resumes to the same weights as an
uninterrupted run, evaluates, and never imports pyzmq/msgpack."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mattebox.cli import main  # noqa: E402
from mattebox.training import checkpoint  # noqa: E402
from mattebox.training.data import HELDOUT_SEED_START, DataConfig, SynthMattingDataset, make_sample  # noqa: E402
from mattebox.training.trainer import TrainConfig, Trainer, build_model, objective_terms  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny-cpu.json"


def tiny_config(tmp_path, **changes) -> Path:
    values = json.loads(TINY.read_text())
    values.update(output=str(tmp_path / "run"), **changes)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    return path


def test_tiny_config_trains_logs_checkpoints_and_evaluates(tmp_path, capsys):
    assert main(["train", str(tiny_config(tmp_path))]) == 0
    run = tmp_path / "run"
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 4 and Path(result["weights"]).is_file()
    assert set(result["evaluation"]["heldout"]) == {"sad", "mse", "grad", "conn"}
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    assert {"sep", "laplacian", "grad", "composition", "semantic", "detail", "confidence", "total"} <= set(records[0])
    for tag in ("last", "final"):
        assert (run / f"{tag}.safetensors").is_file() and (run / f"{tag}.optim.pt").is_file()
        assert json.loads((run / f"{tag}.json").read_text())["step"] == 4


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    straight = Trainer(TrainConfig.load(str(tiny_config(tmp_path / "a", steps=4, eval_heldout=0))), log=lambda m: 0)
    straight.train()
    interrupted = TrainConfig.load(str(tiny_config(tmp_path / "b", steps=4, eval_heldout=0)))
    assert Trainer(interrupted, log=lambda m: 0).train(stop_at=2)["step"] == 2
    messages = []
    second = Trainer(interrupted, log=messages.append)
    second.train()
    assert any("resumed" in m and "step 2" in m for m in messages)
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), second.model.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_progress_line_has_eta(tmp_path):
    import io

    stream = io.StringIO()
    Trainer(TrainConfig.load(str(tiny_config(tmp_path, eval_heldout=0))), log=lambda m: 0).train(
        progress_stream=stream)
    assert "step 4/4" in stream.getvalue() and "ETA" in stream.getvalue()


def test_alpha_free_objective_uses_no_alpha_labels():
    sample = make_sample(3, DataConfig(crop=24))
    batch = {k: torch.from_numpy(v[None] if v.ndim == 2 else v.transpose(2, 0, 1))[None] for k, v in sample.items()}
    del batch["alpha"], batch["foreground"], batch["background"], batch["clean"]
    alpha = torch.rand(1, 1, 24, 24, requires_grad=True)
    terms = objective_terms("alpha-free", {"alpha": alpha}, batch)
    assert set(terms) == {"known", "ddc"}
    sum(terms.values()).backward()
    assert alpha.grad.abs().sum() > 0


def test_config_errors_name_the_field(tmp_path, capsys):
    assert main(["train", str(tiny_config(tmp_path, objective="magic"))]) == 2
    assert "objective" in capsys.readouterr().err
    assert main(["train", str(tiny_config(tmp_path, learning_rate=1))]) == 2
    assert "learning_rate" in capsys.readouterr().err
    assert main(["train", str(tiny_config(tmp_path, data={"crop": 32, "kinds": ["hair", "feathers"]}))]) == 2
    assert "feathers" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_dataset_is_deterministic_and_never_uses_heldout_seeds():
    config = DataConfig(crop=24)
    a, b = SynthMattingDataset(config, 3, base_seed=5)[1], SynthMattingDataset(config, 3, base_seed=5)[1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["image"].shape == (3, 24, 24) and a["trimap"].shape == (1, 24, 24)
    assert set(torch.unique(a["trimap"]).tolist()) <= {0.0, 0.5, 1.0}
    with pytest.raises(ValueError, match="held-out"):
        SynthMattingDataset(config, 10, base_seed=HELDOUT_SEED_START - 5)
    clean = make_sample(9, DataConfig(crop=24, degrade=False, colour_jitter=0, alpha_gamma=0))
    assert np.array_equal(clean["image"], clean["clean"])


def test_checkpoints_round_trip_through_models_weights(tmp_path):
    from tests.support.models import TinyHeadsNet

    model, other = TinyHeadsNet(), TinyHeadsNet()
    digest = checkpoint.save_model(model, tmp_path / "w.safetensors", {"k": "v"})
    assert len(digest) == 64
    checkpoint.load_model(other, tmp_path / "w.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    raw = (tmp_path / "w.safetensors").read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert header["__metadata__"] == {"k": "v"} and header["body.0.weight"]["dtype"] == "F32"


def test_train_command_never_imports_pyzmq_or_msgpack(tmp_path):
    config = tiny_config(tmp_path, steps=1, eval_heldout=1, log_every=1)
    code = ("import sys; sys.modules['zmq'] = None; sys.modules['msgpack'] = None\n"
            "from mattebox.cli import main\n"
            f"sys.exit(main(['train', {str(config)!r}]))")
    env = {"PYTHONPATH": f"{ROOT / 'plugin'}:{ROOT / 'server'}:{ROOT}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_time_limit_pauses_with_a_checkpoint_and_the_same_command_resumes(tmp_path, capsys):
    config = str(tiny_config(tmp_path, eval_heldout=0, checkpoint_every=100))
    assert main(["train", config, "--steps", "3"]) == 0
    capsys.readouterr()
    trainer = Trainer(TrainConfig.load(config), log=lambda m: 0)
    paused = trainer.train(time_limit=0.0)  # stops before its first step (it resumed at 3 of 4)
    assert paused["step"] == 3
    assert main(["train", config]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 4


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.json")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    config = TrainConfig.load(str(path))
    assert config.steps > 0 and config.output.startswith("runs/")


def test_two_frame_samples_carry_aligned_views_and_avoid_the_pair_held_out_seeds():
    from mattebox.synth.pairs import HELD_OUT_SEEDS

    config = DataConfig(crop=32, two_frame=True)
    a, b = make_sample(4, config), make_sample(4, config)
    assert {"bg_aligned", "fg_aligned", "companion", "warped_trimap"} <= set(a)
    assert all(np.array_equal(a[k], b[k]) for k in a) and a["bg_aligned"].shape == (32, 32, 3)
    with pytest.raises(ValueError, match="held-out"):
        SynthMattingDataset(config, 10, base_seed=HELD_OUT_SEEDS.start - 3)


def test_real_foregrounds_from_alphamatting_dev_are_excluded_from_its_evaluation():
    from mattebox.paths import alphamatting_dir
    from mattebox.training.evaluate import alphamatting_names

    if alphamatting_dir() is None:
        pytest.skip("alphamatting-dev not found (../shared/data/alphamatting-dev or MATTEBOX_ALPHAMATTING)")
    config = DataConfig.from_dict({"crop": 48, "alphamatting_foregrounds": ["GT02"], "alphamatting_fraction": 1.0})
    sample = make_sample(1, config)
    assert sample["alpha"].shape == (48, 48) and ((sample["alpha"] > 0) & (sample["alpha"] < 1)).any()
    assert "GT02" not in alphamatting_names(exclude=config.alphamatting_foregrounds)
    assert "GT02" in alphamatting_names()
    with pytest.raises(ValueError, match="alphamatting_foregrounds"):
        DataConfig.from_dict({"alphamatting_fraction": 0.5})


@pytest.mark.parametrize("name", ["parallax", pytest.param("ppmatting", marks=pytest.mark.slow),
                                  pytest.param("mask2alpha", marks=pytest.mark.slow)])
def test_registry_models_train_a_step_with_their_paper_heads(tmp_path, name):
    data = {"crop": 64, "two_frame": name == "parallax"}  # the Parallax net on flow-aligned parallax pairs
    config = TrainConfig.load(str(tiny_config(tmp_path, model=name, model_options={"tiny": True}, steps=1,
                                              accumulate=1, log_every=1, eval_heldout=1, data=data)))
    trainer = Trainer(config, log=lambda m: 0)
    result = trainer.train()
    assert result["step"] == 1 and set(result["evaluation"]["heldout"]) == {"sad", "mse", "grad", "conn"}
    terms = set(json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1]))
    expected = {"parallax": {"composition"}, "ppmatting": {"semantic", "detail"},
                "mask2alpha": {"confidence", "alpha_low"}}[name]
    assert expected | {"sep", "laplacian", "grad"} <= terms
    reloaded = build_model(name, {"tiny": True})
    checkpoint.load_model(reloaded, tmp_path / "run" / "final.safetensors")


def test_install_exports_a_finished_run_where_the_learned_engines_look(tmp_path, monkeypatch, capsys):
    from mattebox.models import registry
    from mattebox.models.weights import weights_status

    monkeypatch.setenv("MATTEBOX_MODELS", str(tmp_path / "models"))
    config = tiny_config(tmp_path, model="parallax", model_options={"tiny": True}, steps=1, accumulate=1,
                         log_every=1, eval_heldout=0, data={"crop": 32})
    assert main(["train", str(config), "--install"]) == 0
    installed = Path(json.loads(capsys.readouterr().out)["installed"])
    assert installed == tmp_path / "models" / "parallax.safetensors"
    assert Path(str(installed) + ".sha256").is_file()
    assert weights_status(registry.get_spec("parallax"))[0]
