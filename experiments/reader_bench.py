"""What the checks on untrusted run files (issue 18) cost on the normal path: reading a long run's event log,
the engine's control polling and its event appends, each beside the plain code that does the same unchecked.

    OMP_NUM_THREADS=1 python experiments/reader_bench.py [--epochs 200] [--reps 21]

Builds, in a temporary folder, the events.jsonl of a 200-epoch search and of a 200-epoch FocusFormer run by
repeating the longest epoch line of tests/recorded_run and of tests/recorded_focus_run (epoch and time
renumbered; the search line carries α of 9 edges x 8 ops, the focus line the sampler's bins and points),
then prints the best of --reps timings of each (one JSON object per line; on a loaded machine other work
only adds time, so the best is the cost):

- plain: json.loads of every line, the unchecked reader
- parse: rundir.parse_line of every line (bounded size and depth, printable strings)
- read_events: rundir.read_events (parse_line, then events.clean_event: every field against the schema)
- poll: runtime.Run.poll_control on an unchanged control.jsonl (the engine does it at most every 0.2 s),
  beside os.stat of the file, the least a poll can do
- append: rundir.append_jsonl of one epoch event (opened without following links, fstat, one write),
  beside json.dumps and open(path, "ab").write

Run it with PYTHONPATH naming another checkout to time that checkout's code on the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent / "tests"


def long_log(src: Path, dst: Path, epochs: int) -> Path:
    """`src`'s events.jsonl with its longest epoch line repeated for `epochs` epochs."""
    lines = [json.loads(ln) for ln in (src / "events.jsonl").read_text().splitlines() if ln.strip()]
    epoch = max((e for e in lines if e["type"] == "epoch"), key=lambda e: len(json.dumps(e)))
    head = [e for e in lines if e["type"] in ("run_start", "space")]
    out = [*head, *({**epoch, "epoch": k, "epochs": epochs, "time": epoch["time"] + k} for k in range(1, epochs + 1))]
    dst.mkdir(parents=True)
    (dst / "events.jsonl").write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in out))
    (dst / "config.yaml").write_text((src / "config.yaml").read_text())
    return dst


def best_seconds(fn, reps: int) -> float:
    fn()  # warm
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--reps", type=int, default=21)
    args = ap.parse_args()

    import dasvit
    from dasvit.run import jsonio, jsonl, layout

    print(json.dumps({"dasvit": str(Path(dasvit.__file__).parent.parent), "python": platform.python_version()}))
    with tempfile.TemporaryDirectory() as tmp:
        for name, src in (("search", HERE / "recorded_run"), ("focus", HERE / "recorded_focus_run")):
            run = long_log(src, Path(tmp) / name, args.epochs)
            raw = (run / "events.jsonl").read_bytes()
            lines = [ln for ln in raw.split(b"\n") if ln.strip()]

            def plain(run=run):
                return [json.loads(ln) for ln in (run / "events.jsonl").read_bytes().split(b"\n") if ln.strip()]

            def parse(run=run):
                return [jsonio.parse_line(ln) for ln in (run / "events.jsonl").read_bytes().split(b"\n") if ln.strip()]

            row = {"log": name, "lines": len(lines), "bytes": len(raw), "load": os.getloadavg()[0]}
            for label, fn in (
                ("plain", plain),
                ("parse", parse),
                ("read_events", lambda run=run: jsonl.read_events(run)),
            ):
                row[f"{label}_ms"] = round(1e3 * best_seconds(fn, args.reps), 3)
            row["read_events_over_plain"] = round(row["read_events_ms"] / row["plain_ms"], 2)
            print(json.dumps(row))

        from dasvit.run.distributed import DistInfo
        from dasvit.run.presets import load_config
        from dasvit.run.runtime import Run

        run_dir = Path(tmp) / "engine"
        epoch_event = json.loads((Path(tmp) / "search" / "events.jsonl").read_text().splitlines()[-1])
        with Run(run_dir, load_config("demo"), "search", DistInfo(), progress=False) as run:
            with open(run_dir / layout.CONTROL, "ab") as f:  # an answered proposal: what a control file holds
                f.write(b'{"time":1,"type":"approve","stage":1}\n')
            run.poll_control()
            control = run_dir / layout.CONTROL
            n = 2000
            row = {"what": "engine", "load": os.getloadavg()[0]}
            row["poll_us"] = round(1e6 * best_seconds(lambda: [run.poll_control() for _ in range(n)], 5) / n, 2)
            row["stat_us"] = round(1e6 * best_seconds(lambda: [os.stat(control) for _ in range(n)], 5) / n, 2)
            events = run_dir / "bench.jsonl"

            def plain_append():
                for _ in range(n):
                    with open(events, "ab") as f:
                        f.write((json.dumps(epoch_event, separators=(",", ":")) + "\n").encode())

            row["append_us"] = round(
                1e6 * best_seconds(lambda: [jsonl.append_jsonl(events, epoch_event) for _ in range(n)], 5) / n, 2
            )
            row["plain_append_us"] = round(1e6 * best_seconds(plain_append, 5) / n, 2)
            events.unlink()
            print(json.dumps(row))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
