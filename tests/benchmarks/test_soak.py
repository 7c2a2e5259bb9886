"""`evc bench soak`: its failure rule on fabricated records, and a short run through PulseAudio."""

from __future__ import annotations

import csv
import json

import pytest

from benchmarks import soak
from benchmarks.e2e import why_not
from engine.cli import main
from engine.signal import SignalSpec
from support.toy_model import write_toy_model


def records(n: int = 5, **changes) -> list[soak.Record]:
    """n clean one-minute records; changes: {field: {minute: value}}."""
    out = []
    for m in range(1, n + 1):
        values = dict(minute=m, seconds=60.0, blocks=3000, xruns=0, input_overruns=0, output_overruns=0,
                      portaudio_flags=0, late=0, dropped=0, p50_ms=1.7, p99_ms=3.1, max_ms=6.0, rss_mib=240.0,
                      heap_mib=2.0, fds=24)
        values.update({k: v[m] for k, v in changes.items() if m in v})
        out.append(soak.Record(**values))
    return out


def test_a_clean_run_passes():
    assert soak.verdict(records()) == []


@pytest.mark.parametrize("field", ["xruns", "late", "dropped"])
def test_any_xrun_late_or_dropped_block_fails_naming_its_interval(field):
    reasons = soak.verdict(records(**{field: {4: 2}}))
    assert len(reasons) == 1 and reasons[0].startswith("2 ") and "interval(s) 4" in reasons[0]


def test_memory_growth_counts_from_the_end_of_the_first_interval():
    # start-up allocation inside interval 1 is not growth: the baseline is its end
    assert soak.verdict(records(rss_mib={1: 240.0, 2: 240.9, 3: 240.5})) == []
    reasons = soak.verdict(records(rss_mib={1: 240.0, 5: 241.2}))
    assert reasons == ["RSS grew 1.20 MiB after the first interval (240.0 -> 241.2 MiB; limit 1)"]
    assert soak.verdict(records(heap_mib={3: 3.5}))[0].startswith("Python heap grew 1.50 MiB")


def test_a_transient_peak_above_the_limit_fails_too():
    assert soak.verdict(records(rss_mib={3: 241.5, 4: 240.0}))  # a leak freed later still spent the memory


def test_several_failures_are_all_reported():
    reasons = soak.verdict(records(xruns={2: 1}, late={2: 1}, rss_mib={5: 250.0}))
    assert [r.split()[1] for r in reasons] == ["xrun(s)", "late", "grew"]


def test_no_interval_is_a_failure():
    assert soak.verdict([]) == ["no interval completed"]


def test_the_summary_says_pass_or_fail():
    report = {"server": "pulse", "load": 0, "interval_s": 60.0, "block_ms": 20.0, "verdict": [],
              "records": [vars(r) for r in records()]}
    assert soak.summary(report).endswith("PASS")
    report["verdict"] = ["2 late (in interval(s) 4)"]
    assert soak.summary(report).endswith("FAIL: 2 late (in interval(s) 4)")


@pytest.mark.audio
@pytest.mark.slow
def test_a_short_soak_through_pulseaudio_writes_csv_png_and_passes(tmp_path, capsys):
    if why_not("pulse"):
        pytest.skip(why_not("pulse"))
    model = write_toy_model(tmp_path / "toy", SignalSpec())
    out = tmp_path / "out"
    rc = main(["bench", "soak", "--model", str(model), "--minutes", "0.1", "--interval", "3", "--out", str(out)])
    text = capsys.readouterr().out
    report = json.loads((out / "soak.json").read_text())
    rows = list(csv.DictReader((out / "soak.csv").open()))
    assert len(rows) == len(report["records"]) == 2
    for row in rows:
        assert int(row["blocks"]) >= 100 and float(row["rss_mib"]) > 10 and int(row["fds"]) > 3
    assert (out / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rc == (1 if report["verdict"] else 0)
    assert ("PASS" in text) == (rc == 0), text
