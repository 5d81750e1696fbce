"""The benchmark scripts' argument handling and plans (the benchmarks themselves are not tests:
they run with `make bench`, `make bench-gpu`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.perf import bench_gpu


def test_bench_gpu_defaults_to_the_full_gpu_run() -> None:
    args = bench_gpu.parse_args([])
    assert (args.dry_run, args.seconds, args.pretrain_steps, args.skip) == (False, 6.0, 100, set())
    assert args.out == Path(bench_gpu.__file__).parent / "RESULTS-gpu.md"
    assert bench_gpu.plan(args) == [
        "probe providers",
        "serve + /readyz check",
        "serving (a)-(d)",
        "pretrain: cuda, cpu",
        "fine-tuning job",
        f"write {args.out}",
    ]


def test_bench_gpu_dry_run_is_short_cpu_only_and_writes_elsewhere(tmp_path: Path) -> None:
    args = bench_gpu.parse_args(["--dry-run", "--skip", "finetune,pretrain"])
    assert (args.seconds, args.pretrain_steps) == (1.0, 3)
    assert args.out.name == "genexfer-bench-gpu-dry-run.md"
    assert bench_gpu.plan(args)[:3] == [
        "providers: CPU only (dry run)",
        "serve + /readyz check",
        "serving (a)-(d)",
    ]
    out = tmp_path / "r.md"
    args = bench_gpu.parse_args(["--dry-run", "--out", str(out), "--seconds", "2.5"])
    assert (args.out, args.seconds) == (out, 2.5)
    assert "pretrain: cpu" in bench_gpu.plan(args)


@pytest.mark.parametrize(
    "argv",
    [["--seconds", "0"], ["--clients", "0"], ["--skip", "serving,nonsense"], ["--bogus"]],
)
def test_bench_gpu_refuses_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_gpu.parse_args(argv)
    assert exc.value.code == 2


def test_bench_gpu_probe_says_why_a_provider_is_unusable() -> None:
    providers, notes = bench_gpu.probe(no_tensorrt=True)
    assert providers[-1] == "CPUExecutionProvider"
    if providers == ["CPUExecutionProvider"]:  # this machine: no GPU, maybe no GPU build
        assert notes
        assert all(n.strip() for n in notes)


def test_nvidia_libs_is_a_list_of_folders() -> None:
    assert all(Path(p).is_dir() for p in bench_gpu.nvidia_libs())


def test_results_blocks_are_replaced_and_stay_before_the_serving_table(tmp_path: Path) -> None:
    from tests.perf.server import SERVING_MARKER, write_block

    path = tmp_path / "RESULTS.md"
    path.write_text(f"# Results\n\nnotes\n\n{SERVING_MARKER}\n| serving |\n")
    write_block(path, "bench_upload", "first")
    write_block(path, "bench_finetune", "jobs")
    write_block(path, "bench_upload", "second")
    text = path.read_text()
    assert "first" not in text
    assert text.index("second") < text.index(SERVING_MARKER)
    assert text.index("jobs") < text.index(SERVING_MARKER)
    assert text.endswith(f"{SERVING_MARKER}\n| serving |\n")
    fresh = tmp_path / "new.md"
    write_block(fresh, "x", "body")
    assert "<!-- x:start -->\nbody\n<!-- x:end -->" in fresh.read_text()


def test_bench_parsers_service_paths_give_the_limits_matrix(tmp_path: Path) -> None:
    import numpy as np

    from contract.align import PanelIndex
    from tests.perf import bench_parsers
    from tests.perf.bench import text_formats

    card = bench_parsers.card_for(30, tmp_path)
    index = PanelIndex.of(card.panel)
    formats = text_formats(4, 30)
    assert list(formats) == ["/v1 JSON matrix", "/v1 JSON records", "v2 JSON", "/v1 CSV"]
    for fmt, (body, _, _, parse) in formats.items():
        limit = np.asarray(bench_parsers.limit_path(fmt, parse)()).reshape(4, 30)
        got = bench_parsers.service_path(fmt, body, card, index)()
        assert got.dtype == np.float32, fmt
        assert np.array_equal(got, limit), fmt
    times = bench_parsers.measure(lambda: None, lambda: None, 3)
    assert sorted(times) == ["lc", "lw", "sc", "sw"]
    assert all(len(v) == 3 for v in times.values())
