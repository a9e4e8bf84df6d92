"""`macminidump build` of a large spec, end to end, beside its baselines in the same run.

    python bench/bench_build.py [--rounds 5] [--threads 1000] [--regions 10000] [--here] [--json]

The spec is ``macminidump.testing.synthetic.thread_spec`` (x86_64, every thread a named
register set, every region a list of 16 `UInt64` words), written once as JSON and once
as YAML. The package is installed as a user installs it (``pip install`` of this
checkout into a fresh venv; ``--here``: this interpreter's). Interleaved, shuffled,
every round, each a fresh process:

* `macminidump build spec.json -o CORE` (target: ≤ 0.5 s median);
* `macminidump build spec.yaml -o CORE` against `python -c` loading the same YAML file
  with PyYAML's C loader (`yaml.load(f, Loader=yaml.CSafeLoader)`) and nothing else
  (target: ≤ 1.5× that);
* `python -c pass`, for scale.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from _timing import end_to_end_arguments, interleave, run_command, user_install, verdict


def main() -> int:
    parser = end_to_end_arguments(__doc__, rounds=5)
    parser.add_argument("--threads", type=int, default=1000)
    parser.add_argument("--regions", type=int, default=10000)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import yaml

    from macminidump.testing.synthetic import thread_spec

    with (
        user_install(args.here) as installed,
        tempfile.TemporaryDirectory(prefix="bench-build-") as d,
    ):
        py, cli, env = installed.python, installed.command, installed.env
        spec = thread_spec(args.threads, args.regions)
        as_json, as_yaml, core = Path(d, "spec.json"), Path(d, "spec.yaml"), Path(d, "core")
        as_json.write_text(json.dumps(spec))
        as_yaml.write_text(yaml.safe_dump(spec, sort_keys=False))
        c_loader = f"import yaml; yaml.load(open({str(as_yaml)!r}, 'rb'), Loader=yaml.CSafeLoader)"
        samples = interleave(
            {
                "build spec.json": lambda: run_command(
                    [*cli, "build", str(as_json), "-o", str(core)], env
                ),
                "build spec.yaml": lambda: run_command(
                    [*cli, "build", str(as_yaml), "-o", str(core)], env
                ),
                "CSafeLoader alone": lambda: run_command([py, "-c", c_loader], env),
                "python -c pass": lambda: run_command([py, "-c", "pass"], env),
            },
            args.rounds,
        )
        sizes = {"json": as_json.stat().st_size, "yaml": as_yaml.stat().st_size}
    yaml_check = verdict(samples["build spec.yaml"], samples["CSafeLoader alone"], 1.5)
    json_median = samples["build spec.json"].median
    json_missed = samples["build spec.json"].low > 0.5
    if args.json:
        out = {
            "samples": {
                k: {"median": v.median, "min": v.low, "max": v.high} for k, v in samples.items()
            },
            "yaml_vs_c_loader": {"ratio": yaml_check.ratio, "noise": yaml_check.noise},
            "spec_bytes": sizes,
        }
        print(json.dumps(out, indent=2))
    else:
        print(
            f"{args.threads} threads, {args.regions} regions (JSON {sizes['json']:,} B, "
            f"YAML {sizes['yaml']:,} B); {args.rounds} interleaved rounds, median (min–max)"
        )
        for name, sample in samples.items():
            print(f"  {name:<20} {sample.ms()}")
        state = "met" if json_median <= 0.5 else ("MISSED" if json_missed else "within noise")
        print(f"  build spec.json      {json_median:.2f} s (target ≤ 0.5 s): {state}")
        print(f"  yaml vs C loader     {yaml_check.text()}")
    return 1 if json_missed or yaml_check.missed else 0


if __name__ == "__main__":
    sys.exit(main())
