"""The model interface (sekd.models.base): built-in networks, user networks with hooked taps, model specs in
configs and checkpoints."""

import copy
from pathlib import Path

import pytest
import torch

from sekd.checkpoint import PREFIX, load_enhancer, save_enhancer
from sekd.cli import main
from sekd.config import load_config
from sekd.engine.module import build_model
from sekd.errors import SekdError
from sekd.models import EnhancementNetwork, HookedNetwork, build_enhancer, build_network
from sekd.models.base import TRUST_ENV

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "my_net.yaml"
MY_NET = "examples.my_net:MyNet"
TAPS = {"encoder": ["down1", "down2"], "middle": ["rnn"], "decoder": ["up1", "up2"]}


@pytest.fixture(autouse=True)
def examples_importable(monkeypatch):
    """The example package is importable from the repository root, as the README runs it (PYTHONPATH=.)."""
    monkeypatch.syspath_prepend(str(ROOT))


def my_net(**args):
    torch.manual_seed(0)
    return build_network({"class": MY_NET, "args": args, "taps": TAPS})


@pytest.mark.parametrize("preset", ["tiny", "gtcrn"])
def test_built_in_networks_implement_the_interface(preset):
    net = build_enhancer(preset).network.eval()
    assert isinstance(net, EnhancementNetwork) and set(net.tap_sets) == {"encoder", "middle", "decoder"}
    shapes, mask_tap = net.tap_layout(257)
    feats = torch.randn(2, 2, 11, 257)
    mask, taps = net(feats, return_taps=True)
    assert list(taps) == [n for names in net.tap_sets.values() for n in names] == list(shapes)
    for name, (c, d) in shapes.items():
        assert taps[name].shape == (2, c, 11, d), name
    assert mask_tap == net.tap_sets["decoder"][-1] and taps[mask_tap] is mask
    assert torch.equal(net(feats), mask)


def test_hooks_capture_the_named_submodules():
    net = my_net(channels=8, hidden=16).eval()
    assert isinstance(net, HookedNetwork) and net.tap_sets == TAPS
    feats = torch.randn(2, 2, 7, 257)
    mask, taps = net(feats, return_taps=True)
    inner = net.module
    e1 = inner.down1(feats)
    e2 = inner.down2(e1)
    r = inner.rnn(e2)
    expected = {"down1": e1, "down2": e2, "rnn": r, "up1": inner.up1(r)}
    for name, value in expected.items():
        torch.testing.assert_close(taps[name], value)
    assert taps["up2"] is mask and net.tap_layout(257)[1] == "up2"
    assert not any(m._forward_hooks for m in net.modules())  # hooks only during a forward with taps
    twin = copy.deepcopy(net)  # a copy captures its own taps
    torch.testing.assert_close(twin(feats, return_taps=True)[1]["rnn"], r)
    assert torch.equal(net(feats), mask)


def test_hooked_network_errors_name_the_problem():
    with pytest.raises(SekdError, match="'nope', which is not a submodule of MyNet; its submodules: down1"):
        build_network({"class": MY_NET, "taps": {**TAPS, "middle": ["nope"]}})
    with pytest.raises(SekdError, match="must map each of encoder, middle, decoder"):
        build_network({"class": MY_NET, "taps": {"encoder": ["down1"]}})
    with pytest.raises(SekdError, match="model.taps must name its submodules"):
        build_network({"class": MY_NET})
    with pytest.raises(SekdError, match=r"MyNet\(channels, width\) failed.*it accepts: in_channels, channels, hidden"):
        build_network({"class": MY_NET, "args": {"channels": 8, "width": 3}, "taps": TAPS})
    # A GRU's output is [B, T, H], not a feature map.
    net = build_network({"class": MY_NET, "taps": {**TAPS, "middle": ["rnn.gru"]}})
    with pytest.raises(SekdError, match=r"tap 'rnn_gru' has shape \[1, 4, 64\].*\[B, C, T, D\]"):
        net.tap_layout(257)


def test_a_submodule_that_runs_twice_is_refused():
    net = my_net(channels=8, hidden=16)
    inner = net.module
    inner.forward = lambda feats: inner.up2(inner.up1(inner.rnn(inner.rnn(inner.down2(inner.down1(feats))))))
    with pytest.raises(SekdError, match="'rnn' runs more than once"):
        net(torch.randn(1, 2, 3, 257), return_taps=True)


@pytest.mark.parametrize("path, message", [
    ("nosuch_pkg.nets:Net", "model class 'nosuch_pkg.nets:Net' is not importable .*PYTHONPATH"),
    ("examples.my_net:Missing", "module 'examples.my_net' has no nn.Module class 'Missing'"),
    ("MyNet", "must be written 'package.module:Class'"),
])
def test_a_class_that_cannot_be_imported_is_refused(path, message):
    with pytest.raises(SekdError, match=f"^model.yaml: .*{message}"):
        build_network({"class": path, "taps": TAPS}, where="model.yaml")


def test_config_names_a_user_class():
    cfg = load_config(EXAMPLE, ["model.args.channels=8"])
    assert (cfg.model.class_, cfg.model.args["channels"], cfg.model.taps) == (MY_NET, 8, TAPS)
    d = cfg.to_dict()
    assert d["model"]["class"] == MY_NET and "class_" not in d["model"]
    # A preset config resolves as before these keys existed (sekd study compares resolved configs).
    assert list(load_config(None).to_dict()["model"]) == ["preset", "channels", "layers", "in_channels", "causal",
                                                          "lookback"]
    model = build_model(cfg)
    assert model.network.module.down1[0].out_channels == 8
    with pytest.raises(SekdError, match="model.clas; valid keys: .*model.class, model.args, model.taps"):
        load_config(EXAMPLE, ["model.clas=x"])
    with pytest.raises(SekdError, match="model.class: expected str or null"):
        load_config(EXAMPLE, ["model.class=[1]"])
    with pytest.raises(SekdError, match="model.args and model.taps go with model.class"):
        build_model(load_config(None, ["model.args={a: 1}"]))
    with pytest.raises(SekdError, match="model.channels apply to presets"):
        build_model(load_config(EXAMPLE, ["model.channels=8"]))


def test_user_model_checkpoint_round_trip(tmp_path, capsys, monkeypatch):
    model = build_model(load_config(EXAMPLE, ["model.args.channels=8", "model.args.hidden=16"])).eval()
    path = tmp_path / "mine.ckpt"
    save_enhancer(model, path)
    # Plain data only: the payload loads without unpickling any code.
    payload = torch.load(path, weights_only=True)["sekd"]
    assert payload["format"] == 2
    assert payload["enhancer"]["model"] == {"class": MY_NET, "args": {"in_channels": 1, "channels": 8, "hidden": 16},
                                            "taps": TAPS, "in_channels": 1}
    monkeypatch.setenv(TRUST_ENV, MY_NET)  # loading it is another step: a class outside sekd needs the user's trust
    loaded = load_enhancer(path)
    noisy = torch.randn(1, 8000)
    torch.testing.assert_close(loaded(noisy), model(noisy))
    assert main(["profile", "--ckpt", str(path), "--seconds", "0.2", "--json"]) == 0
    assert '"architecture": "HookedNetwork"' in capsys.readouterr().out


def test_checkpoint_of_a_class_that_is_gone_is_refused(tmp_path, capsys, monkeypatch):
    path = tmp_path / "mine.ckpt"
    save_enhancer(build_model(load_config(EXAMPLE, ["model.args.channels=8"])), path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["sekd"]["enhancer"]["model"]["class"] = "renamed_pkg.nets:MyNet"
    torch.save(ckpt, path)
    monkeypatch.setenv(TRUST_ENV, "renamed_pkg.nets:MyNet")  # trusted, so that the import is tried
    with pytest.raises(SekdError, match=f"{path}: model class 'renamed_pkg.nets:MyNet' is not importable"):
        load_enhancer(path)
    assert main(["enhance", "--ckpt", str(path), "x.wav", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "renamed_pkg.nets:MyNet" in err


def test_format_1_checkpoints_still_load(tmp_path):
    """DPDCRN checkpoints written before model specs stored the DPDCRN arguments as model_args."""
    torch.manual_seed(0)
    model = build_enhancer("tiny", causal=True, lookback=4).eval()
    config = model.get_config()
    old = {"model_args": config["model"]["args"], "signal_args": config["signal_args"], "ref_channel": 0}
    path = tmp_path / "old.ckpt"
    torch.save({"sekd": {"enhancer": old, "format": 1},
                "state_dict": {PREFIX + k: v for k, v in model.state_dict().items()}}, path)
    loaded = load_enhancer(path)
    assert loaded.network.get_model_args() == model.network.get_model_args()
    noisy = torch.randn(1, 4000)
    torch.testing.assert_close(loaded(noisy), model(noisy))


def test_presets_refuse_options_their_network_lacks():
    with pytest.raises(SekdError, match="model.lookback does not apply to preset 'gtcrn' \\(GTCRN\\)"):
        build_enhancer("gtcrn", lookback=3)
    assert build_enhancer("gtcrn", causal=False, channels=8).network.causal  # GTCRN is causal by design
    with pytest.raises(SekdError, match="unknown model preset 'gtcrn-xl'.*gtcrn, gtcrn-l"):
        build_enhancer("gtcrn-xl")
