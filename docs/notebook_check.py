"""Run jaxhlm in a real Jupyter kernel and check what a notebook shows; screenshot the HTML.

What it does
------------
1. Builds a notebook (nbformat) that fits the README's random-slope model of the NELS-like
   data, and displays the model, its ``summary()``, an ``anova()`` table and a bootstrap with
   its progress bar.
2. Executes it in a fresh ``python3`` kernel (nbclient + ipykernel) and checks the outputs:
   each display has a ``text/html`` form with the expected content (R's p-value formatting,
   groups, scaled residuals, correlations, significance legend; no ``NaN`` in the anova
   table) and the progress bar is labelled ``bootstrap``.
3. Writes the HTML of those outputs to one page (``--html``, default
   ``docs/notebook_outputs.html``) and, if Chromium is installed, renders it headless to a PNG
   (``--png``, default ``docs/notebook_outputs.png``).

Usage (from the repository root)::

    pip install nbclient nbformat ipykernel      # not jaxhlm dependencies
    apt-get install -y chromium                  # optional, for the screenshot
    PYTHONPATH=$PWD python docs/notebook_check.py [--save-notebook out.ipynb]

Exit status 0 when every check passes; the failed checks are listed otherwise.
"""
from __future__ import annotations

import argparse
import html
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CELLS = [
    "import warnings\nimport jaxhlm\ndat = jaxhlm.datasets.load('nels_like')",
    "m1 = jaxhlm.lmer('mathscore ~ family_inc + (1 | sch_id)', dat, reml=False)\n"
    "m2 = jaxhlm.lmer('mathscore ~ family_inc + (family_inc | sch_id)', dat, reml=False)\nm2",
    "m2.summary(data_name='dat')",
    "jaxhlm.anova(m1, m2)",
    "boot = m1.bootstrap(nsim=40, seed=1, chunk_size=10)\nboot.confint().round(3)",
]


def build():
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def execute(nb, timeout: int = 600):
    from nbclient import NotebookClient

    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = ROOT + (os.pathsep + env_path if env_path else "")
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
    return nb


def outputs(cell, kind):
    """The ``kind`` (``text/html``, ``text/plain``, ``stream``) outputs of a cell, joined."""
    out = []
    for o in cell.get("outputs", []):
        if kind == "stream" and o.get("output_type") == "stream":
            out.append(o.get("text", ""))
        elif o.get("output_type") in ("execute_result", "display_data") and kind in o.get("data", {}):
            out.append(o["data"][kind])
    return "\n".join(out)


def check(nb) -> list:
    """The failed checks (an empty list when all pass)."""
    errors = []
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                errors.append(f"cell {i} raised {o.get('ename')}: {o.get('evalue')}")
    model, summ, anova = (outputs(nb.cells[k], "text/html") for k in (1, 2, 3))
    want = {
        "model": (model, ["Linear mixed model fit by maximum likelihood", "mathscore ~ family_inc + (family_inc | sch_id)",
                          "Std.Dev.", "Corr", "sch_id: 854"]),
        "summary": (summ, ["&lt;2e-16", "Scaled residuals", "Random effects", "Correlation of fixed effects", "(Intr)",
                           "Signif. codes", "sch_id: 854", "Observations", "dat"]),
        "anova": (anova, ["Pr(&gt;Chisq)", "Chisq", "npar"]),
    }
    for what, (page, needles) in want.items():
        if not page:
            errors.append(f"{what}: no text/html output")
            continue
        for n in needles:
            if n not in page:
                errors.append(f"{what}: {n!r} not in its HTML")
    if "NaN" in anova or "nan<" in anova:
        errors.append("anova: NaN in the HTML table")
    bar = outputs(nb.cells[4], "stream") + outputs(nb.cells[4], "application/vnd.jupyter.widget-view+json")
    if "bootstrap" not in bar:
        errors.append(f"bootstrap: no progress bar labelled 'bootstrap' (got {bar[:200]!r})")
    return errors


def page(nb) -> str:
    parts = []
    for k, title in ((1, "m2 (the model)"), (2, "m2.summary(data_name='dat')"), (3, "jaxhlm.anova(m1, m2)")):
        parts.append(f"<h3 style='font-family:sans-serif;color:#444'>In [{k + 1}]: {html.escape(title)}</h3>")
        parts.append(outputs(nb.cells[k], "text/html"))
    states = [t.strip() for t in outputs(nb.cells[4], "stream").replace("\r", "\n").split("\n") if t.strip()]
    parts.append("<h3 style='font-family:sans-serif;color:#444'>In [5]: m1.bootstrap(nsim=40, seed=1, chunk_size=10)"
                 "</h3><p style='font-family:sans-serif;color:#444'>the progress bar (stderr), first and last state:</p>"
                 "<pre style='background:#fdd;padding:4px'>"
                 + html.escape("\n".join(states[1:2] + states[-1:])) + "</pre>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>jaxhlm in Jupyter</title></head>"
            "<body style='margin:16px;max-width:900px'>" + "\n".join(parts) + "</body></html>")


def screenshot(html_path: str, png_path: str) -> bool:
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chrome is None:
        return False
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chrome, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--no-first-run", "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
               "--hide-scrollbars", "--window-size=960,1360", f"--screenshot={os.path.abspath(png_path)}",
               "file://" + os.path.abspath(html_path)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return os.path.exists(png_path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--html", default=os.path.join(HERE, "notebook_outputs.html"))
    ap.add_argument("--png", default=os.path.join(HERE, "notebook_outputs.png"))
    ap.add_argument("--save-notebook", default=None, help="write the executed notebook here")
    args = ap.parse_args(argv)
    nb = execute(build())
    if args.save_notebook:
        import nbformat

        nbformat.write(nb, args.save_notebook)
    with open(args.html, "w", encoding="utf-8") as fh:
        fh.write(page(nb))
    shot = screenshot(args.html, args.png)
    errors = check(nb)
    print(f"notebook executed; HTML written to {args.html}" + (f"; screenshot {args.png}" if shot else ""))
    for e in errors:
        print("FAILED:", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
