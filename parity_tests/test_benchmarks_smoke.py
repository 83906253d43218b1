"""Smoke test of the benchmark harness on the tiniest configuration.

Checks the results file's schema and that the no-recompile guard fires; the
timings themselves are not checked, since a shared machine makes them noisy.
"""

import json

import jax
import jax.numpy as jnp
import pytest

from benchmarks import report
from benchmarks.__main__ import main
from benchmarks.harness import RecompileError, Variant, measure

# Keys of the run metadata that a reader needs to trust and compare a run.
META_KEYS = ("created_utc", "command", "device", "cpu_model", "cpu_count", "torch_threads", "versions",
             "loadavg_start", "loadavg_end", "quick")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    status = main(["--quick", "--suite", "examples", "--example", "scale", "--no-torch-compile",
                   "--no-plots", "--rounds", "2", "--block-seconds", "0.001", "--out", str(out)])
    with open(out / "cpu.json") as handle:
        data = json.load(handle)
    return status, data, out


def test_run_exits_zero(tiny_run):
    status, _, _ = tiny_run
    assert status == 0


def test_results_schema(tiny_run):
    _, data, _ = tiny_run
    assert data["schema"] == report.SCHEMA
    assert set(report.TOP_LEVEL_KEYS) <= set(data)
    missing_meta = [key for key in META_KEYS if key not in data["meta"]]
    assert not missing_meta, f"metadata lacks {missing_meta}"
    assert data["meta"]["versions"]["torch"]
    assert data["meta"]["versions"]["jax"]


def test_every_case_has_both_frameworks(tiny_run):
    _, data, _ = tiny_run
    cases = [case for case in data["cases"] if case["suite"] == "examples"]
    # scale: three kinds (forward, grad, step) at two quick batch sizes.
    assert len(cases) == 6
    for case in cases:
        frameworks = {row["framework"] for row in case["results"]}
        assert frameworks == {"torch", "jax"}, case["case"]
        assert len(case["loadavg_before"]) == 3


def test_result_rows_are_complete(tiny_run):
    _, data, _ = tiny_run
    for case in data["cases"]:
        for row in case["results"]:
            missing = [key for key in report.RESULT_KEYS if key not in row]
            assert not missing, f"{case['case']} [{row['variant']}] lacks {missing}"
            assert row["p25_s"] <= row["median_s"] <= row["p75_s"]
            assert row["min_s"] > 0
            assert row["rounds"] == 2


def test_reference_ratio_is_one(tiny_run):
    _, data, _ = tiny_run
    for case in data["cases"]:
        rows = {row["variant"]: row for row in case["results"]}
        reference = rows[case["results"][0]["reference"]]
        assert reference["ratio_to_reference"] == pytest.approx(1.0)


def test_scan_reports_per_step(tiny_run):
    _, data, _ = tiny_run
    step_cases = [case for case in data["cases"] if case["params"].get("kind") == "step"]
    for case in step_cases:
        scan = next(row for row in case["results"] if row["variant"] == "jax scan")
        assert scan["steps_per_call"] > 1
        assert scan["unit_s"] == pytest.approx(scan["median_s"] / scan["steps_per_call"])


def test_markdown_written(tiny_run):
    _, _, out = tiny_run
    text = (out / "cpu.md").read_text()
    assert text.startswith("# Benchmark run")
    assert "| scale step b=1 | jax scan |" in text


def _jax_variant(shape_changes: bool) -> Variant:
    double = jax.jit(lambda x: 2.0 * x)
    state = {"size": 3}

    def run(calls: int) -> None:
        for _ in range(calls):
            if shape_changes:
                state["size"] += 1
            out = double(jnp.ones(state["size"]))
        out.block_until_ready()

    run(1)
    return Variant("jax", "jax", run)


def test_recompile_guard_passes_fixed_shapes():
    timings = measure([_jax_variant(shape_changes=False)], rounds=2, block_s=0.001)
    assert timings["jax"].rounds == 2


def test_recompile_guard_catches_new_shape():
    with pytest.raises(RecompileError, match="'jax' recompiled after warm-up"):
        measure([_jax_variant(shape_changes=True)], rounds=2, block_s=0.001)


@pytest.mark.parametrize("n_samples", [64, 8], ids=["params<=samples", "params>samples"])
def test_fused_sr_matches_twin_solve(n_samples):
    """The fused iteration's unchecked SR solve gives the twin's direction (both spaces)."""
    import numpy as np

    import flax_impl.vmc
    from benchmarks import fused_vmc

    rng = np.random.default_rng(0)
    o_matrix = rng.standard_normal((n_samples, 12))
    e_loc = rng.standard_normal(n_samples)
    weights = np.full(n_samples, 1.0 / n_samples)

    fused = fused_vmc.sr_direction(jnp.asarray(o_matrix), jnp.asarray(e_loc), 0.1)
    _, _, gradient = flax_impl.vmc.energy_and_gradient(
        jnp.asarray(o_matrix + 0j), jnp.asarray(e_loc + 0j), jnp.asarray(weights))
    expected = flax_impl.vmc.sr_solve(
        flax_impl.vmc.sr_matrix(jnp.asarray(o_matrix + 0j), jnp.asarray(weights)), gradient, 0.1)

    # float64 Cholesky against LU on a system with condition number below 1e3.
    np.testing.assert_allclose(np.asarray(fused), np.asarray(expected), rtol=1e-10, atol=1e-12)


def test_netket_skipped_without_interpreter():
    from benchmarks.harness import SkipVariant
    from benchmarks.nqs import NqsConfig
    from benchmarks.vmc_stages import netket_builder

    build = netket_builder(NqsConfig(20, 1, 1008, 16), None, "netket_peer.py", {})
    with pytest.raises(SkipVariant, match="NetKet is not installed"):
        build()
