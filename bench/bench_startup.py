"""Start-up cost as a user pays it: `import macminidump` and `macminidump --help`.

    python bench/bench_startup.py [--rounds 21] [--here] [--json]

The package is installed as a user installs it (``pip install`` of this checkout into a
fresh venv; ``--here`` uses this interpreter's install instead). Baseline: `python -c
pass` with that venv's interpreter. Subjects, each a
fresh process, interleaved with the baseline in a shuffled order every round:
`python -c "import macminidump"`, `macminidump --help` (the installed command) and
`macminidump run -- /bin/true` (Linux). Targets: the first two ≤ 3.5× the baseline;
`run -- /bin/true` ≤ 1.2× `--help`. Exit status 1 on a miss beyond the measured noise.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from _timing import end_to_end_arguments, interleave, run_command, user_install, verdict


def main() -> int:
    parser = end_to_end_arguments(__doc__, rounds=21)
    args = parser.parse_args()

    with user_install(args.here) as installed, tempfile.TemporaryDirectory() as d:
        py, cli, env = installed.python, installed.command, installed.env
        core = os.path.join(d, "never-written.core")
        subjects = {
            "python -c pass": lambda: run_command([py, "-c", "pass"], env),
            "import macminidump": lambda: run_command([py, "-c", "import macminidump"], env),
            "macminidump --help": lambda: run_command([*cli, "--help"], env),
        }
        if sys.platform == "linux":
            subjects["macminidump run -- /bin/true"] = lambda: run_command(
                [*cli, "run", "-o", core, "--", "/bin/true"], env
            )
        samples = interleave(subjects, args.rounds)
    base = samples["python -c pass"]
    checks = [
        ("import macminidump", verdict(samples["import macminidump"], base, 3.5)),
        ("macminidump --help", verdict(samples["macminidump --help"], base, 3.5)),
    ]
    if "macminidump run -- /bin/true" in samples:
        checks.append(
            (
                "run -- /bin/true vs --help",
                verdict(
                    samples["macminidump run -- /bin/true"], samples["macminidump --help"], 1.2
                ),
            )
        )
    if args.json:
        out = {
            "samples": {
                k: {"median": v.median, "min": v.low, "max": v.high} for k, v in samples.items()
            },
            "checks": {
                k: {"ratio": v.ratio, "noise": v.noise, "missed": v.missed} for k, v in checks
            },
        }
        print(json.dumps(out, indent=2))
    else:
        print(f"{args.rounds} interleaved rounds; median (min–max)")
        for name, sample in samples.items():
            print(f"  {name:<32} {sample.ms()}")
        for name, v in checks:
            print(f"  {name:<32} {v.text()}")
    return 1 if any(v.missed for _, v in checks) else 0


if __name__ == "__main__":
    raise SystemExit(main())
