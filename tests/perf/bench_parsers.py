# ruff: noqa: E501  (the result rows are long f-strings; they read best one per line)
"""In-process parse benchmark (issue 15, point 1): each text format's decode + validate path
against its parse limit, on the very bodies of `make bench`'s section (c), in one process.

For each format (/v1 JSON matrix and records, v2 JSON, /v1 CSV) at 256 × 20,000 and 2,000 × 765:
(a) the limit, as `tests/perf/bench.py` measures it (orjson.loads of the body + np.asarray
float32; pyarrow's CSV reader, gene columns typed float32, its fastest block size, + the matrix
as numpy), (b) the service's path for that body: the functions the routes call, in the order they
call them, up to the float32 matrix ready for the model. For /v1: `negotiate.inflate` and
`payloads.decode_json` / `tables.decode_delimited` (every cell checked), then what
`app.services.predict._prepare` does (`contract.align.to_panel`: scale choice, alignment;
`refuse_negative`); for v2: `kserve._infer`'s `decode` (`v2.parse`, `require_scale`,
`refuse_negative`). (a) and (b) alternate, one of each per round; the ratio is limit time /
service time per round (100 % = the service runs at the limit), median over the rounds. Both
wall and CPU time (this process, all threads) are printed: on a shared machine CPU time is the
steadier of the two.

Run: `python -m tests.perf.bench_parsers [--rounds 7] [--only "v2 JSON"] [--profile FORMAT]`.
"""

from __future__ import annotations

import argparse
import cProfile
import platform
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from app.codecs import tables, v2
from app.codecs.negotiate import inflate
from app.codecs.payloads import decode_json
from contract.align import PanelIndex, to_panel
from contract.card import ModelCard
from contract.scale import refuse_negative, require_scale
from tests.perf.bench import SHAPES, text_formats
from tests.perf.model import GENES
from tests.perf.server import load, machine, write_block

HERE = Path(__file__).resolve().parent
MAX_SAMPLES, MAX_BYTES, MIN_OVERLAP = 10_000, 1 << 31, 0.5


def card_for(n_genes: int, root: Path) -> ModelCard:
    """A classifier card on the first `n_genes` of the benchmark's genes (log scale, like the
    benchmark model), without torch: the test factories' linear model."""
    from tests.factories import write_model

    folder = write_model(
        root=root, name=f"parse-{n_genes}", genes=GENES[:n_genes], labels=["a", "b"]
    )
    return ModelCard.read(folder)


def service_path(fmt: str, body: bytes, card: ModelCard, index: PanelIndex) -> Callable[[], Any]:
    """What the route does with `body` up to the matrix the model gets."""
    if fmt == "v2 JSON":

        def infer() -> Any:
            parsed = v2.parse(inflate(body, None, MAX_BYTES), None, card, MAX_SAMPLES)
            require_scale(parsed.x, card.input_scale, parsed.declared_scale)
            refuse_negative(parsed.x, card.input_scale, None, parsed.declared_scale)
            return parsed.x

        return infer

    def classify() -> Any:
        raw = inflate(body, None, MAX_BYTES)
        if fmt == "/v1 CSV":
            expr = tables.decode_delimited(raw, delimiter=",", max_samples=MAX_SAMPLES)
        else:
            expr = decode_json(raw, max_samples=MAX_SAMPLES)
        done = to_panel(
            expr.values,
            expr.genes,
            index,
            card.input_scale,
            min_overlap=MIN_OVERLAP,
            transforms=card.input_transforms,
        )
        refuse_negative(expr.values, card.input_scale, expr.sample_ids, None)
        return done.values

    return classify


def limit_path(fmt: str, parse: Callable[[], Any]) -> Callable[[], Any]:
    """bench.py's limit, ending in a numpy matrix for CSV too (the JSON limits already do)."""
    if fmt != "/v1 CSV":
        return parse

    def read() -> Any:
        table = parse()
        genes = table.drop_columns([table.column_names[0]]).combine_chunks()
        return genes.to_batches()[0].to_tensor(row_major=True).to_numpy()

    return read


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(
    limit: Callable[[], Any], service: Callable[[], Any], rounds: int
) -> dict[str, list[float]]:
    """Alternating rounds (one warm-up of each first): per-round wall and CPU times."""
    limit(), service()
    out: dict[str, list[float]] = {"lw": [], "lc": [], "sw": [], "sc": []}
    for i in range(rounds):
        pair = ((limit, "l"), (service, "s"))
        for fn, key in pair if i % 2 == 0 else pair[::-1]:  # neither always goes first
            wall, cpu = timed(fn)
            out[key + "w"].append(wall)
            out[key + "c"].append(cpu)
    return out


def ratio(limit: list[float], service: list[float]) -> float:
    return statistics.median(lim / s for lim, s in zip(limit, service, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="", help="one format, e.g. '/v1 CSV'")
    parser.add_argument("--profile", default="", help="cProfile the service path of this format")
    parser.add_argument(
        "--results",
        type=Path,
        default=HERE / "RESULTS.md",
        help="results file whose bench_parsers block is replaced ('-': none)",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="genexfer-parsers-"))
    rows, loads, started = [], [], time.monotonic()
    for samples, n_genes in SHAPES:
        card = card_for(n_genes, root)
        index = PanelIndex.of(card.panel)
        loads.append(f"{samples}×{n_genes}: {load()}")
        for fmt, (body, _, _, parse) in text_formats(samples, n_genes).items():
            if args.only and fmt != args.only:
                continue
            limit, service = limit_path(fmt, parse), service_path(fmt, body, card, index)
            expected = np.asarray(limit()).reshape(samples, n_genes)
            got = service()
            assert got.dtype == np.float32, fmt
            assert np.array_equal(got, expected), fmt
            if args.profile == fmt:
                profiler = cProfile.Profile()
                profiler.runcall(service)
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
            t = measure(limit, service, args.rounds)
            wall, cpu = ratio(t["lw"], t["sw"]), ratio(t["lc"], t["sc"])
            ms = {k: 1000 * statistics.median(v) for k, v in t.items()}
            print(
                f"{fmt:17s} {samples:5d}×{n_genes:<6d} limit {ms['lw']:6.0f} ms, service {ms['sw']:6.0f} ms: "
                f"{wall:4.0%} wall ({', '.join(f'{a / b:.0%}' for a, b in zip(t['lw'], t['sw'], strict=True))}); "
                f"CPU {ms['lc']:.0f} vs {ms['sc']:.0f} ms: {cpu:.0%}",
                flush=True,
            )
            rows.append(
                f"| {fmt} | {samples:,} × {n_genes:,} ({len(body) / 1e6:.0f} MB) | {ms['lw']:.0f} | {ms['sw']:.0f} | "
                f"**{wall:.0%}** | {ms['lc']:.0f} / {ms['sc']:.0f} = {cpu:.0%} | {'met' if wall >= 0.8 else '**missed**'} |"
            )
    text = (
        f"- command: `python -m tests.perf.bench_parsers --rounds {args.rounds}`"
        f"{f' --only {args.only!r}' if args.only else ''}, {time.monotonic() - started:.0f} s\n"
        f"- machine: {machine()}; load averages (1/5/15 min) before each size: {'; '.join(loads)}\n"
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; pyarrow {pa.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}\n"
        f"- ratio = limit time / service time, per alternating round, median of {args.rounds} "
        "(100 % = at the limit); CPU: this process's, all threads\n\n"
        "| format | batch | limit, ms (median) | service, ms | service/limit (wall) | CPU ms, limit / service | ≥ 80 % |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    print("\n" + text)
    if str(args.results) != "-":
        write_block(args.results, "bench_parsers", text)


if __name__ == "__main__":
    main()
