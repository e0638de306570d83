"""The ``jaxhlm`` command line, run as a subprocess on bundled data and CSV files."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import jaxhlm
from jaxhlm import cli
from jaxhlm._src import example

ROOT = Path(jaxhlm.__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
REF = DATA / "reference"


def run_cli(*args, cwd=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        [sys.executable, "-m", "jaxhlm", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def ref(case):
    return json.loads((REF / f"{case}.json").read_text())


def test_fit_json_on_bundled_dataset_matches_lme4():
    r = run_cli("fit", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    R = ref("sleepstudy_rs_reml")
    assert out["reml"] is True and out["nobs"] == 180 and out["ngroups"] == {"Subject": 18}
    for k, v in R["beta"].items():
        assert out["fixef"][k] == pytest.approx(v, rel=1e-6)
    for k, v in R["se"].items():
        assert out["se"][k] == pytest.approx(v, rel=1e-4)
    for k, v in R["satterthwaite"]["df"].items():
        assert out["df"][k] == pytest.approx(v, rel=1e-3)
    for k, v in R["theta"].items():
        assert out["theta"][k] == pytest.approx(v, rel=1e-3, abs=1e-4)
    assert out["sigma"] == pytest.approx(R["sigma"], rel=1e-6)
    assert out["REMLcrit"] == pytest.approx(R["REMLcrit"], rel=1e-9)
    assert out["logLik"] == pytest.approx(R["logLik"], rel=1e-9)
    assert out["AIC"] == pytest.approx(R["AIC"], rel=1e-9)
    assert out["BIC"] == pytest.approx(R["BIC"], rel=1e-9)
    assert [(v["grp"], v["var1"], v["var2"]) for v in out["varcorr"]] == list(
        zip(R["varcorr"]["grp"], R["varcorr"]["var1"], R["varcorr"]["var2"])
    )
    for got, want in zip(out["varcorr"], R["varcorr"]["vcov"]):
        assert got["vcov"] == pytest.approx(want, rel=1e-3)
    assert out["converged"] is True and out["singular"] is False


def test_fit_csv_ml_prints_summary(capsys):
    """`jaxhlm fit FILE.csv ... --ml` (in-process: main() is what the console script calls)."""
    assert cli.main(["fit", str(DATA / "Dyestuff.csv"), "Yield ~ 1 + (1 | Batch)", "--ml"]) == 0
    R = ref("dyestuff_ml")
    r = capsys.readouterr()
    text = r.out
    assert "Linear mixed model fit by maximum likelihood" in text
    assert "Formula: Yield ~ 1 + (1 | Batch)" in text
    assert f"{R['AIC']:.1f}" in text and f"{R['deviance']:.1f}" in text
    assert "Number of obs: 30, groups:  Batch, 6" in text
    assert "(Intercept)" in text and "Residual" in text
    assert r.err == ""


def test_errors_exit_2_with_one_line_message(tmp_path):
    r = run_cli("fit", "sleepstudy", "Reaction ~ Dayz + (Days | Subject)")
    assert r.returncode == 2
    assert r.stderr.startswith("jaxhlm: error: column 'Dayz'")
    assert "Days" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_error_messages_in_process(tmp_path, capsys):
    """The other error paths, via main() (same code path as the console script, no subprocess)."""
    assert cli.main(["fit", str(tmp_path / "missing.csv"), "y ~ x + (1 | g)"]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("y,x,g\n1,2,a\n")
    assert cli.main(["fit", str(bad), "y ~ x + (1 | g"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxhlm: error:") and "never closed" in err
    assert cli.main(["datasets", "nope"]) == 2
    assert "no bundled dataset named 'nope'" in capsys.readouterr().err
    assert cli.main([]) == 2


def test_datasets_command(capsys):
    assert cli.main(["datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in jaxhlm.datasets.names():
        assert any(line.startswith(name + " ") for line in lines), name
    assert any("8378 rows" in line for line in lines)


def test_datasets_describe(capsys):
    assert cli.main(["datasets", "Penicillin"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Penicillin:") and "Source:" in out and "diameter" in out


TINY = (
    example.Step("Load", "Text `one`.", 'import jaxhlm\ndat = jaxhlm.datasets.load("Dyestuff")\nprint(len(dat), "rows")'),
    example.Step(
        "Plot",
        "A plot.",
        'import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([0, 1], [1, 0])\nfig.savefig("p.png")',
        images=("p.png",),
    ),
    example.Step("Fail", "Raises.", "print('before')\n1 / 0"),
)


def test_example_runner_prints_code_output_and_errors(tmp_path, monkeypatch):
    """`jaxhlm example` machinery on small steps (the real walk-through runs in test_readme.py)."""
    monkeypatch.setattr(example, "STEPS", TINY)
    buf = io.StringIO()
    rc = example.run(outdir=str(tmp_path / "out"), file=buf)
    text = buf.getvalue()
    assert rc == 1
    assert "== 1/3. Load" in text and 'dat = jaxhlm.datasets.load("Dyestuff")' in text and "30 rows" in text
    assert (tmp_path / "out" / "p.png").stat().st_size > 1000
    assert "before" in text and "Step 3 failed" in text and "ZeroDivisionError" in text
    assert "example.py" not in text  # the traceback shows the step's code only

    buf = io.StringIO()
    assert example.run(outdir=str(tmp_path / "o2"), plots=False, file=buf) == 1
    assert "(skipped: --no-plots)" in buf.getvalue() and not (tmp_path / "o2").exists()

    monkeypatch.setattr(example, "_have_matplotlib", lambda: False)
    monkeypatch.setattr(example, "STEPS", TINY[:2])
    buf = io.StringIO()
    assert example.run(outdir=str(tmp_path / "o3"), file=buf) == 0
    assert "matplotlib is not installed" in buf.getvalue()


def test_example_command_wiring(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(example, "STEPS", TINY[:2])
    assert cli.main(["example", "--outdir", str(tmp_path / "plots")]) == 0
    assert "30 rows" in capsys.readouterr().out
    assert (tmp_path / "plots" / "p.png").exists()
