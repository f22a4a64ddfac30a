import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import kernels as kernel_bench  # noqa: E402 - the benchmark lives beside its scripts, not in the library
from autodsnn.cli import main


def test_linear_and_resnet_rows_run_the_native_kernels():
    portable = kernel_bench._portable_module() is not None  # an AVX-512 machine also times the AVX2 build
    rows = kernel_bench.linear_rows(features=256, batches=(1, 3), reps=2)
    assert len(rows) == 2 * 2 * (4 + portable)  # batches x cache states x (fp32 + shift variants)
    shift = [r for r in rows if r.impl.startswith("shift")]
    assert {r.path for r in shift} == {"native-cpu float", "native-cpu integer"} | (
        {"native-cpu float (no AVX-512)"} if portable else set())
    assert all(r.ms > 0 and r.vs_float > 0 and r.bytes_floor_ms > 0 for r in rows)
    fp32 = next(r for r in rows if r.impl == "torch fp32")
    nibbles = next(r for r in rows if r.impl == "shift 4-bit float")
    assert nibbles.bytes_floor_ms * 8 == fp32.bytes_floor_ms  # 4 bits against 32 per weight
    resnet = kernel_bench.resnet_rows(batches=(2,), reps=1)
    assert [r.path for r in resnet] == ["torch", "torch-emulation", "native-cpu float", "native-cpu float",
                                        "native-cpu integer"] + (["native-cpu float (no AVX-512)"] if portable else [])
    assert "| resnet20 cifar" in kernel_bench.format_rows([vars(r) for r in resnet])


def test_bench_command_rejects_unknown_targets(capsys):
    assert main(["bench", "gpu"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'gpu'" in err and err.count("\n") == 1  # one line, not argparse's usage block


def test_an_unfinished_benchmark_run_is_moved_aside_never_deleted(tmp_path):
    from common import set_aside_unfinished

    assert set_aside_unfinished(tmp_path / "absent") is None
    run = tmp_path / "smac-seed0"
    for _ in range(2):  # twice within one second: the second name must not clash with the first
        (run / "smac").mkdir(parents=True)
        (run / "trials.sqlite").write_bytes(b"someone's work")
        moved = set_aside_unfinished(run)
        assert not run.exists() and (moved / "trials.sqlite").read_bytes() == b"someone's work"
    assert len(list(tmp_path.glob("smac-seed0.interrupted-*"))) == 2
