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
