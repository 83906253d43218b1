"""The ``twins`` command line: list, params, parity and their errors."""

import json

import numpy as np
import pytest

from twins import tolerances
from twins.cli import main


def test_list_names_every_example(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ["tiny_linear", "scale", "unregistered", "with_mask", "mlp"]:
        assert name in out


def test_params_pairs_torch_and_flax_names(capsys):
    assert main(["params", "with_mask"]) == 0
    out = capsys.readouterr().out
    assert "linear.weight" in out
    assert "params/linear/kernel" in out
    assert "(3, 3)" in out
    assert "buffers/mask" in out
    assert "buffer" in out


def test_params_unknown_example_lists_known(capsys):
    assert main(["params", "mlpp"]) == 2
    err = capsys.readouterr().err
    assert "unknown example 'mlpp'" in err
    assert "tiny_linear" in err
    assert "mlp" in err


def test_parity_writes_json_rows(tmp_path, capsys):
    path = tmp_path / "parity.json"
    assert main(["parity", "--example", "scale", "--dtype", "float64", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())
    checks = {row["check"] for row in rows}
    assert checks == {"forward", "grad", "trajectory:sgd_momentum", "trajectory:adam"}
    assert all(row["passed"] for row in rows)
    assert all(row["device"] == "cpu" for row in rows)
    assert "4 passed, 0 failed" in capsys.readouterr().out


def test_parity_fails_with_nonzero_exit(monkeypatch, capsys):
    monkeypatch.setitem(tolerances._TOLERANCES, (np.dtype(np.float64), "grad"), -1.0)
    assert main(["parity", "--example", "scale", "--dtype", "float64"]) == 1
    assert "3 passed, 1 failed" in capsys.readouterr().out


def test_parity_rejects_unavailable_device(capsys):
    from twins.devices import cuda_available

    if cuda_available():
        pytest.skip("a GPU is present, so the cuda pair is available")
    assert main(["parity", "--device", "cuda"]) == 2
    assert "device pair 'cuda' is not available" in capsys.readouterr().out


def test_parity_includes_nqs_rows(tmp_path):
    path = tmp_path / "parity.json"
    assert main(["parity", "--example", "rbm_complex", "--dtype", "float32", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())
    assert [row["check"] for row in rows] == ["log_psi", "energy_grad", "sr_direction", "trajectory:adam"]
    assert all(row["passed"] for row in rows)
    assert all(row["dtype"] == "float32" for row in rows)


def test_nqs_log_psi_row_detects_wrong_weights(monkeypatch):
    from twins import nqs_parity

    case = nqs_parity.CASES["rbm"]

    def shifted(dtype, scale):
        torch_model, flax_model, params = case.build(dtype, scale)
        params = {**params, "visible_bias": params["visible_bias"] + 1e-6}
        return torch_model, flax_model, params

    row = nqs_parity.check_log_psi(nqs_parity.NQSCase("rbm", case.hamiltonian, shifted, "sgd_sr"))
    assert not row.passed
