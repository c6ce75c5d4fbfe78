"""The benchmark harness: ``python -m bench --list`` names every case, a case writes its JSON record, and
``python -m bench tables`` writes that record into a marked docs section."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

RAW = """thread (MainThread);<module> (x.py:1);_find_and_load (<frozen>:1) 3
thread (MainThread);<module> (x.py:1);training_step (gan.py:9) 5
thread (MainThread);<module> (x.py:1);fit (trainer.py:2) 2
thread (Thread-1);run (threading.py:1) 7
"""


def test_list_names_every_case():
    out = subprocess.run([sys.executable, "-m", "bench", "--list"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    sys.path.insert(0, str(ROOT))
    from bench.__main__ import CASES

    for name in [*CASES, "tables"]:
        assert f"  {name} " in out
    assert {"overhead", "user_overhead", "style_speed", "gan_fid", "vae_nll", "gpu_check", "parity"} <= set(
        CASES
    )


def test_a_case_writes_its_record_and_tables_writes_it_into_the_docs(tmp_path):
    raw = tmp_path / "profile.raw"
    raw.write_text(RAW)
    record_path = tmp_path / "results" / "shares.json"
    subprocess.run([sys.executable, "-m", "bench", "profile_shares", str(raw), "--rate", "10", "--json",
                    str(record_path)], cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    record = json.loads(record_path.read_text())
    assert record["name"] == "profile_shares" and record["command"].startswith(
        "python -m bench profile_shares"
    )
    assert record["parameters"]["rate"] == 10 and "torch" in record["machine"]
    rows = {
        row["stage"]: row for row in record["results"]["rows"]
    }  # the other thread's 7 samples are skipped
    assert (
        rows["imports"]["s"] == 0.3
        and rows["training_step (the rest of it; automatic optimisation: forward + losses)"]["s"] == 0.5
        and rows["other"]["s"] == 0.2
    )
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n<!-- bench:shares -->\nold table\n<!-- /bench:shares -->\n\nafter\n")
    subprocess.run([sys.executable, "-m", "bench", "tables", str(record_path), "--docs", str(page)], cwd=ROOT,
                   check=True, capture_output=True)  # fmt: skip
    text = page.read_text()
    assert "old table" not in text and text.endswith("<!-- /bench:shares -->\n\nafter\n")
    assert "`python -m bench profile_shares" in text and "| imports | 30.0 % | 0.3 |" in text
