"""A checkpoint names only classes the user trusts: sekd's own, or those given by --trust-class,
SEKD_TRUST_CLASSES, distill.trust_classes or the config the user runs; any other is refused by
its name, before its module is imported (importing runs the module's code)."""

import subprocess
import sys

import pytest
import torch

from sekd.checkpoint import PREFIX, load_enhancer
from sekd.cli import main
from sekd.config import load_config
from sekd.engine.train import trust_config_classes
from sekd.errors import SekdError
from sekd.models import SpeechEnhancer, build_enhancer
from sekd.models import base
from sekd.study import trusting_env
from test_untrusted import commands

MODULE = "leaves_a_mark"
CLASS = f"{MODULE}:Net"
TAPS = {"encoder": ["enc"], "middle": ["mid"], "decoder": ["dec"]}
# Importing the module writes the marker file beside it: what any code in a named module could do.
SOURCE = f'''
import pathlib
pathlib.Path(__file__).with_name("imported").write_text("{MODULE} was imported")
import torch


class Net(torch.nn.Module):
    def __init__(self, channels=4):
        super().__init__()
        self.enc = torch.nn.Conv2d(2, channels, 1)
        self.mid = torch.nn.Conv2d(channels, channels, 1)
        self.dec = torch.nn.Conv2d(channels, 2, 1)

    def forward(self, feats):
        return torch.tanh(self.dec(self.mid(self.enc(feats))))
'''


def refusal(ckpt, name=CLASS) -> str:
    return (f"error: {ckpt}: refused: the checkpoint names the class {name}, which is not part of sekd; if you "
            f"trust it, pass --trust-class {name} (or set SEKD_TRUST_CLASSES)")


@pytest.fixture(autouse=True)
def fresh_trust(monkeypatch):
    """Each test starts trusting nothing beyond sekd, and what it trusts goes with it."""
    monkeypatch.setattr(base, "_trusted", set())
    monkeypatch.delenv(base.TRUST_ENV, raising=False)


@pytest.fixture
def marking_module(tmp_path, monkeypatch):
    """An importable module whose import leaves a file; returns that file's (future) path."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    return folder / "imported"


def plain_checkpoint(path, spec, state=None):
    """A checkpoint of plain data only (what anyone can write with torch.save), naming ``spec``'s class."""
    torch.save({"sekd": {"format": 2, "enhancer": {"model": spec, "signal_args": {}, "ref_channel": 0}},
                "state_dict": state or {}}, path)
    return path


@pytest.fixture
def outside_ckpt(tmp_path):
    """A working checkpoint of the marking module's network, written without importing it here."""
    spec = {"class": CLASS, "args": {"channels": 4}, "taps": TAPS, "in_channels": 1}
    torch.manual_seed(0)
    weights = {"enc": torch.nn.Conv2d(2, 4, 1), "mid": torch.nn.Conv2d(4, 4, 1), "dec": torch.nn.Conv2d(4, 2, 1)}
    state = {f"{PREFIX}network.module.{name}.{k}": v for name, layer in weights.items()
             for k, v in layer.state_dict().items()}
    return plain_checkpoint(tmp_path / "outside.ckpt", spec, state)


@pytest.mark.parametrize("command", ["enhance", "enhance --stream", "evaluate", "profile", "stream", "export",
                                     "distill"])
def test_an_outside_class_is_refused_before_its_module_is_imported(command, marking_module, outside_ckpt, tmp_path,
                                                                   pair_folder, capsys):
    assert main(commands(outside_ckpt, tmp_path, pair_folder)[command]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == refusal(outside_ckpt) and "Traceback" not in err
    assert not marking_module.exists() and MODULE not in sys.modules


def test_any_importable_module_is_refused_by_name(tmp_path):
    """The issue's case: a checkpoint naming Python's ``this`` printed the Zen of Python before the refusal."""
    ckpt = plain_checkpoint(tmp_path / "zen.ckpt", {"class": "this:Nothing", "args": {}})
    result = subprocess.run([sys.executable, "-m", "sekd", "profile", "--ckpt", str(ckpt)], capture_output=True,
                            text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == refusal(ckpt, "this:Nothing")
    assert "Beautiful is better than ugly" not in result.stdout + result.stderr


@pytest.mark.parametrize("how", ["--trust-class", "SEKD_TRUST_CLASSES", "dotted name"])
def test_a_trusted_class_loads(how, marking_module, outside_ckpt, monkeypatch, capsys):
    trust = []
    if how == "--trust-class":
        trust = ["--trust-class", CLASS]
    elif how == "SEKD_TRUST_CLASSES":
        monkeypatch.setenv(base.TRUST_ENV, f"some.other:Net, {CLASS}")
    else:  # trusted as package.module.Class, named package.module:Class: the same class
        trust = ["--trust-class", f"{MODULE}.Net"]
    assert main(["profile", "--ckpt", str(outside_ckpt), "--seconds", "0.2", "--json", *trust]) == 0
    assert '"architecture": "HookedNetwork"' in capsys.readouterr().out
    assert marking_module.exists()


def test_the_loaded_network_is_the_checkpoints(marking_module, outside_ckpt, monkeypatch):
    monkeypatch.setenv(base.TRUST_ENV, CLASS)
    model = load_enhancer(outside_ckpt)
    assert type(model.network.module).__module__ == MODULE
    assert torch.equal(model.network.module.mid.weight, torch.load(outside_ckpt)["state_dict"][
        f"{PREFIX}network.module.mid.weight"])


def test_sekd_networks_need_no_trust(tiny_ckpt, tmp_path):
    assert type(load_enhancer(tiny_ckpt).network).__name__ == "DPDCRN"
    gtcrn = build_enhancer("gtcrn", channels=8)
    torch.save({"sekd": {"format": 2, "enhancer": gtcrn.get_config()},
                "state_dict": {PREFIX + k: v for k, v in gtcrn.state_dict().items()}}, tmp_path / "g.ckpt")
    assert type(load_enhancer(tmp_path / "g.ckpt").network).__name__ == "GTCRN"


def test_a_foreign_class_reached_through_a_sekd_module_is_refused(tmp_path, monkeypatch):
    """``sekd.models.x:Y`` is trusted by its name only when Y is one of sekd's own classes."""
    monkeypatch.setattr(base, "Borrowed", torch.nn.Linear, raising=False)
    ckpt = plain_checkpoint(tmp_path / "b.ckpt", {"class": "sekd.models.base:Borrowed",
                                                  "args": {"in_features": 1, "out_features": 1}, "taps": TAPS})
    with pytest.raises(SekdError, match="'sekd.models.base:Borrowed' is not one of sekd's networks"):
        load_enhancer(ckpt)


def test_malformed_trusted_names_are_one_line(tmp_path, monkeypatch, capsys, tiny_ckpt):
    assert main(["profile", "--ckpt", str(tiny_ckpt), "--trust-class", "not a class"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --trust-class: model class 'not a class' must be written "
                                               "'package.module:Class'")
    monkeypatch.setenv(base.TRUST_ENV, "os;rm")
    with pytest.raises(SekdError, match=r"^\$SEKD_TRUST_CLASSES: model class 'os;rm' must be written"):
        base.trusted_classes()


def test_the_config_the_user_runs_trusts_its_classes(outside_ckpt, marking_module):
    """``model.class`` of a config the user runs is the user's choice; ``distill.trust_classes`` names the
    teacher's. Trusted in that process only (the study passes them to its jobs in the environment)."""
    assert not base.trusted_classes()
    trust_config_classes(load_config("examples/my_net.yaml", [f"distill.trust_classes=[{CLASS}]"]))
    assert base.trusted_classes() == {"examples.my_net:MyNet", CLASS}
    assert load_enhancer(outside_ckpt).in_channels == 1
    assert trusting_env()[base.TRUST_ENV] == f"examples.my_net:MyNet,{CLASS}"
    with pytest.raises(SekdError, match="distill.trust_classes: expected a class name"):
        trust_config_classes(load_config("examples/my_net.yaml", ["distill.trust_classes=[1]"]))
    with pytest.raises(SekdError, match="distill.trust_classes: expected list"):
        trust_config_classes(load_config("examples/my_net.yaml", [f"distill.trust_classes={CLASS}"]))


def test_distill_from_a_teacher_of_a_trusted_class(marking_module, outside_ckpt, pair_folder, tmp_path):
    """The teacher's class trusted by the config key: the run distils from it, and the student loads anywhere."""
    run = tmp_path / "kd"
    assert main(["distill", "configs/cpu-distill.yaml", f"data.train={pair_folder}", "model.preset=tiny",
                 f"train.out_dir={run}", f"distill.teacher={outside_ckpt}", f"distill.trust_classes=[{CLASS}]",
                 "distill.method=output", "distill.options={}", "data.batch_size=2", "data.crop_seconds=0.5", "data.valid_files=1",
                 "train.max_steps=1", "train.val_every=1", "train.warmup_steps=1"]) == 0
    assert marking_module.exists()
    base._trusted.clear()  # the student is DPDCRN: it needs no trust
    assert type(load_enhancer(run / "checkpoints" / "last.ckpt").network).__name__ == "DPDCRN"
