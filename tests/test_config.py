import pytest

from sekd.config import load_config
from sekd.errors import SekdError


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  preset: tiny\ntrain:\n  max_steps: 7\n")
    cfg = load_config(path, ["train.lr=0.01", "data.valid_files=null", "model.causal=true"])
    assert (cfg.model.preset, cfg.train.max_steps, cfg.train.lr) == ("tiny", 7, 0.01)
    assert cfg.data.valid_files is None and cfg.model.causal is True
    assert load_config(None, []).train.max_steps == 2000


@pytest.mark.parametrize("override, message", [
    ("train.max_stepz=3", "unknown key"),
    ("train.max_steps=ten", "expected int"),
    ("model.causal=3", "expected bool"),
    ("nonsense=1", "expected section.key=value"),
    ("train", "expected section.key=value"),
    ("optim.lr=1", "unknown section"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(SekdError, match=message):
        load_config(None, [override])


def test_bad_files(tmp_path):
    with pytest.raises(SekdError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(SekdError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize("override, message", [
    ("train.max_steps=-5", "train.max_steps must be at least 1"),
    ("train.max_steps=0", "train.max_steps must be at least 1"),  # nothing trained would be reported as best
    ("data.batch_size=0", "data.batch_size must be at least 1"),
    ("data.crop_seconds=-1", "data.crop_seconds must be greater than 0"),
    ("train.lr=-1", "train.lr must be greater than 0"),
    ("train.val_every=0", "train.val_every must be at least 1"),
    ("train.devices=abc", "train.devices must be auto"),
    ("train.accelerator=tpx", "train.accelerator must be one of"),
    ("train.seed=-1", "train.seed must be in"),
    ("loss.compress=0", "loss.compress must be in"),
    ("train.lr_min=0.1", "must not exceed train.lr"),
    ("signal.hop=1024", "must not exceed signal.n_fft"),
])
def test_values_out_of_range_name_the_key(override, message):
    with pytest.raises(SekdError, match=message):
        load_config(None, [override])


@pytest.mark.parametrize("override", ["train.devices=2", "train.devices=0,1", "train.devices=-1", "train.devices=auto",
                                      "train.threads=null", "data.valid_files=null"])
def test_valid_values_pass(override):
    load_config(None, [override])
