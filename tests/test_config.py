"""A training config refuses a wrong value where it is made, before any data is read or any minute
of the budget is spent: from Python, from --train-overrides and from a config.json alike."""

import pytest

from idream.cli import main
from idream.errors import InputError
from idream.training.train import TrainConfig

WRONG = [
    ({"schedule": "cosin"}, "schedule"),  # a mistyped mode used to surface after the whole budget
    ({"transform": "whitem"}, "transform"),
    ({"seq_batch_size": 0}, "seq_batch_size"),
    ({"epochs": 0}, "epochs"),
    ({"epochs": 2.5}, "epochs"),
    ({"lr": "fast"}, "lr"),
    ({"lr": 0.0}, "lr"),
    ({"p_intention": 1.5}, "p_intention"),
    ({"cold_frac": 1.0}, "cold_frac"),
    ({"width": 130, "heads": 4}, "width"),
    ({"clock": "gpu"}, "clock"),
    ({"item_residual": "yes"}, "item_residual"),
    ({"device": "tpu"}, "device"),
    ({"precision": "fp16"}, "precision"),
]


@pytest.mark.parametrize("kwargs,field", WRONG)
def test_a_wrong_value_is_refused_when_the_config_is_made(kwargs, field):
    with pytest.raises(InputError, match=field):
        TrainConfig(**kwargs)


def test_a_config_json_with_a_wrong_value_is_refused_as_it_is_read():
    d = {**TrainConfig().__dict__, "encoder": "causl"}
    with pytest.raises(InputError, match="encoder"):
        TrainConfig.from_dict(d)
    with pytest.raises(InputError, match="learned-guidance.patch"):  # the paper's learned ρ is retired
        TrainConfig.from_dict({**TrainConfig().__dict__, "guidance": "learned"})
    old = {**TrainConfig().__dict__, "guidance": "turn", "rho_grid": [0.25, 0.5]}  # what old configs hold
    assert TrainConfig.from_dict(old) == TrainConfig()
    assert TrainConfig.from_dict({**TrainConfig().__dict__, "epochs": 3}).epochs == 3


def test_the_right_values_pass_and_ints_stand_for_floats():
    cfg = TrainConfig(max_minutes=3, lr=1, w_grid=[0.0, 1.0], transform="scale")
    assert cfg.max_minutes == 3 and cfg.transform == "scale"


def test_train_refuses_before_it_reads_the_data(tmp_path, capsys):
    rc = main(["train", "--out", str(tmp_path / "ck"), "--dataset", str(tmp_path / "no-such-folder"),
               "--p-uncond", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "p_uncond" in err and "no-such-folder" not in err  # the data was never read
    assert not (tmp_path / "ck").exists()
