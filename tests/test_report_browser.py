"""The HTML report, rendered by headless Chromium: every chart and region map is drawn, offline.

Chromium (Debian: ``apt-get install -y chromium``) loads the report from disk with networking
disabled. A probe script, added to a copy of the page for the test only (the report itself
has no JavaScript), measures every chart after load and prints what it found into the DOM,
which ``--dump-dom`` returns. A screenshot (``reports/report-screenshot.png``) is then checked
pixel by pixel where the probe says the histograms and maps are.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess

import pytest

import equiv
from equiv import report
from equiv.pair import project_root

CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                             shutil.which("chromium-browser"), shutil.which("google-chrome")) if p and os.path.exists(p)),
                None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium: apt-get install -y chromium")

REPORTS = os.path.join(project_root(), "reports")
SCREENSHOT = os.path.join(REPORTS, "report-screenshot.png")
WIDTH = 1400  # the same for the probe and the screenshot, so the probe's boxes are the screenshot's pixels

PROBE = """
<script>
window.addEventListener("load", function () {
  const box = el => { const r = el.getBoundingClientRect();
                      return {x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height}; };
  const out = {charts: [], images: [], resources: performance.getEntriesByType("resource").map(e => e.name),
               height: document.documentElement.scrollHeight, decoded: 0, failed: 0};
  document.querySelectorAll("svg.chart").forEach(svg => {
    out.charts.push({kind: svg.dataset.kind, box: box(svg), rects: svg.querySelectorAll("path, rect").length,
                     texts: svg.querySelectorAll("text").length,
                     output: svg.closest("section.output").dataset.output,
                     pair: svg.closest("section.pair").dataset.pair});
  });
  const imgs = document.querySelectorAll("svg.chart image");
  imgs.forEach(im => {
    out.images.push({box: box(im)});
    const probe = new Image();
    probe.onload = () => { out.decoded += (probe.naturalWidth > 0 && probe.naturalHeight > 0) ? 1 : 0; done(); };
    probe.onerror = () => { out.failed += 1; done(); };
    probe.src = im.getAttribute("href") || im.getAttribute("xlink:href");
  });
  let pending = imgs.length;
  function done() { pending -= 1; if (pending <= 0) write(); }
  function write() { const pre = document.createElement("pre"); pre.id = "probe";
                     pre.textContent = JSON.stringify(out); document.body.appendChild(pre); }
  if (!pending) write();
});
</script>
"""


def _drops_last_column_block(sh, routed_y_buf, num_tokens, ffn_out, cfg):
    """moe.combine retiled, broken: never writes the last 64 columns (a coverage regression)."""
    from equiv import tile as pl

    T, TOPK, D = cfg.T, cfg.TOPK, cfg.D
    active = pl.cast(num_tokens, pl.INDEX)
    active = 0 if active < 0 else (T if active > T else active)
    for t in pl.spmd(T):
        if t < active:
            acc = pl.cast(sh[t:t + 1, 0:D - 64], target_type=pl.FP32)
            for k in pl.range(TOPK):
                acc = pl.add(acc, pl.cast(routed_y_buf[t * TOPK + k:t * TOPK + k + 1, 0:D - 64], target_type=pl.FP32))
            ffn_out[t:t + 1, 0:D - 64] = pl.cast(acc, target_type=pl.BF16, mode="rint")
        else:
            ffn_out[t:t + 1, 0:D - 64] = sh[t:t + 1, 0:D - 64]


def _chromium(*args, timeout=90):
    import tempfile

    with tempfile.TemporaryDirectory(prefix="equiv-chromium-") as profile:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-default-apps", "--disable-extensions", "--no-first-run", "--no-default-browser-check",
               "--mute-audio", "--hide-scrollbars", "--force-device-scale-factor=1",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line and ("Uncaught" in line or "Error" in line or ":ERROR:" in line)]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    pair = equiv.get("moe.combine")
    checks = [
        # pre leaves rows 8..9 unwritten: a pre-defect with a region map
        equiv.check(pair, shapes="T=10,D=256,TOPK=6", recipes=["realistic", "binades"]).to_dict(),
        # retiled never writes the last 64 columns: a regression with a region map and failures
        equiv.check(dataclasses.replace(pair, name="moe.combine-broken", retiled=_drops_last_column_block),
                    shapes="T=8,D=512,TOPK=2;T=4,D=256,TOPK=6", recipes=["realistic"], shrink_budget=4).to_dict(),
    ]
    model = report.build_model(checks)
    os.makedirs(REPORTS, exist_ok=True)
    path = os.path.join(REPORTS, "report-browser-test.html")
    report.write_report(checks, path)
    html = open(path, encoding="utf-8").read()
    probe_path = str(tmp_path_factory.mktemp("probe") / "probed.html")
    with open(probe_path, "w", encoding="utf-8") as fh:
        fh.write(html.replace("</body>", PROBE + "</body>"))
    return {"path": path, "html": html, "probe": probe_path, "model": model, "checks": checks}


def _dump(page) -> tuple[dict, str]:
    p = _chromium(f"--window-size={WIDTH},2400", "--virtual-time-budget=10000", "--dump-dom", "file://" + page["probe"])
    assert p.returncode == 0, p.stderr[-3000:]
    m = re.search(r'<pre id="probe">(.*?)</pre>', p.stdout, re.S)
    assert m, "the probe did not run: " + p.stdout[-2000:]
    import html as _html

    return json.loads(_html.unescape(m.group(1))), p.stderr


def test_page_is_self_contained(page):
    html = page["html"]
    assert not re.search(r'<(script|link|iframe|img)\b', html), "the report must need no script or external file"
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "@import" not in html and "url(http" not in html
    assert len(html) < 2 * 2**20


@needs_chromium
def test_every_chart_and_map_renders(page):
    probe, stderr = _dump(page)
    assert probe["resources"] == [], f"the page fetched {probe['resources']}"
    expected = [(p["name"], o["name"], kind) for p in page["model"]["pairs"] for o in p["outputs"]
                for kind, key in (("ulp-hist", "ulp_svg"), ("error-hist", "err_svg"), ("region-map", "map_svg"))
                if o[key]]
    got = [(c["pair"], c["output"], c["kind"]) for c in probe["charts"]]
    assert sorted(got) == sorted(expected)
    # both pairs have all three: two histograms and the map
    assert len(expected) == 6
    for c in probe["charts"]:
        assert c["box"]["w"] > 150 and c["box"]["h"] > 80, c
        assert c["rects"] > 5 and c["texts"] > 3, c
    maps = [c for c in probe["charts"] if c["kind"] == "region-map"]
    assert len(probe["images"]) >= len(maps) and probe["failed"] == 0
    assert probe["decoded"] == len(probe["images"]), "a map image did not decode"
    assert all(im["box"]["w"] > 40 and im["box"]["h"] > 20 for im in probe["images"])
    assert not _console_errors(stderr), _console_errors(stderr)


@needs_chromium
def test_screenshot_shows_the_charts(page):
    from PIL import Image

    probe, _ = _dump(page)
    height = min(int(probe["height"]) + 20, 9000)
    if os.path.exists(SCREENSHOT):
        os.unlink(SCREENSHOT)
    p = _chromium(f"--window-size={WIDTH},{height}", f"--screenshot={SCREENSHOT}", "file://" + page["probe"])
    assert p.returncode == 0 and os.path.exists(SCREENSHOT), p.stderr[-2000:]
    assert not _console_errors(p.stderr), _console_errors(p.stderr)
    img = Image.open(SCREENSHOT).convert("RGB")
    assert img.size[0] == WIDTH

    def colours(box):
        x, y, w, h = (int(box[k]) for k in ("x", "y", "w", "h"))
        assert y + h <= img.size[1], "chart below the screenshot"
        return img.crop((x, y, x + w, y + h)).getcolors(maxcolors=1 << 20)

    def near(c, target, tol=40):
        return all(abs(a - b) <= tol for a, b in zip(c, target))

    for c in probe["charts"]:
        cols = colours(c["box"])
        assert len(cols) > 5, f"{c['kind']} of {c['pair']}/{c['output']} looks blank"
        if c["kind"] == "ulp-hist":   # the bit-identical bar is green
            assert any(near(rgb, (0x3F, 0x8F, 0x4F)) for n, rgb in cols if n > 20), c
        if c["kind"] == "error-hist":  # pre and retiled bars
            assert any(near(rgb, (0x48, 0x78, 0xA8)) for n, rgb in cols if n > 20), c
            assert any(near(rgb, (0xE0, 0x8A, 0x2C)) for n, rgb in cols if n > 20), c
    for im in probe["images"]:      # unwritten cells are drawn red
        assert any(near(rgb, (0xD6, 0x27, 0x28)) for n, rgb in colours(im["box"]) if n > 20), im


# ---------------------------------------------------------------------------------------
# Without a browser: aggregation, the page's content, `equiv report`
# ---------------------------------------------------------------------------------------
def test_histograms_sum_bucket_counts_over_cases():
    results = [
        {"outputs": {"y": {"verdict": "equivalent", "ulp_hist": {"0": 10, "1": 2},
                           "error_vs_ref": {"pre": {"hist": {"≤0.5": 12}}, "retiled": {"hist": {"≤0.5": 11, "≤1": 1}}}}}},
        {"outputs": {"y": {"verdict": "regression", "ulp_hist": {"0": 5, "3-4": 1, "33-64": 2, "NaN/Inf mismatch": 1},
                           "error_vs_ref": {"pre": {"hist": {"≤0.5": 9}}, "retiled": {"hist": {">4096": 9}}}}}},
        {"outputs": {"y": {"verdict": "rejected", "ulp_hist": {"0": 1000}}}},
    ]
    ulp = report.aggregate_ulp(results, "y")
    assert list(ulp)[:3] == ["0", "1", "2"] and ulp["0"] == 15 and ulp["1"] == 2 and ulp["3–4"] == 1
    assert ulp["17–64"] == 2 and ulp["NaN/Inf"] == 1 and sum(ulp.values()) == 21
    err = report.aggregate_error(results, "y")
    assert err["pre"]["≤0.5"] == 21 and err["retiled"]["≤0.5"] == 11 and err["retiled"][">4096"] == 9
    assert list(err["pre"]) == list(report.ERR_BINS)


def test_page_lists_verdicts_hazards_shapes_and_repros(page):
    html = page["html"]
    assert '<tr data-pair="moe.combine" data-status="ok">' in html
    assert '<tr data-pair="moe.combine-broken" data-status="regression">' in html
    broken = next(c for c in page["checks"] if c["pair"] == "moe.combine-broken")
    for r in broken["results"]:
        assert r["repro"].replace("'", "&#39;") in html
    assert "retiled leaves all rows × cols [448, 512) of ffn_out unwritten" in html
    assert "<code>T=10,D=256,TOPK=6</code>" in html and "binades, realistic" in html
    assert "Shrunk counterexamples" in html and "Out-of-range accesses and races" in html
    assert html.count('class="chart"') == 6


def test_equiv_report_command_merges_saved_results(tmp_path, page, capsys):
    from equiv.cli import main

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"checks": page["checks"][:1]}))
    b.write_text(json.dumps({"checks": page["checks"][1:]}))
    out = tmp_path / "out" / "r.html"
    out.parent.mkdir()  # an output's folder must exist: a typo in a path is refused, not created
    assert main(["report", str(a), str(b), "-o", str(out)]) == 0
    assert "report of 2 checks from 2 files written" in capsys.readouterr().err
    html = out.read_text(encoding="utf-8")
    assert 'data-pair="moe.combine"' in html and 'data-pair="moe.combine-broken"' in html
    assert not [f for f in os.listdir(out.parent) if f.startswith(".tmp-")]
    assert main(["report", str(tmp_path / "nope.json")]) == 2


def _writes_past_end(sh, routed_y_buf, num_tokens, ffn_out, cfg):
    """moe.combine retiled, broken: the last block also stores one row past the end of ffn_out."""
    from equiv import tile as pl

    for t in pl.spmd(cfg.T):
        ffn_out[t:t + 1, :] = sh[t:t + 1, :]
        if t == cfg.T - 1:
            ffn_out[t + 1:t + 2, :] = sh[t:t + 1, :]


def test_hazards_are_listed():
    pair = dataclasses.replace(equiv.get("moe.combine"), name="moe.combine-oob", retiled=_writes_past_end)
    r = equiv.check(pair, shapes="T=8,D=64,TOPK=2", recipes=["realistic"], shrink_budget=0)
    html = report.render([r.to_dict()])
    table = html[html.index('<table class="hazards">'):]
    table = table[:table.index("</table>")]
    assert "<td>retiled</td><td>oob-write</td><td><code>ffn_out</code></td>" in table
    assert "test_report_browser.py:" in table  # the kernel's line


# ---------------------------------------------------------------------------------------
# What a reader sees first, and at what width
# ---------------------------------------------------------------------------------------
FOLD = """
<script>
window.addEventListener("load", function () {
  const seen = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, range = document.createRange();
    range.selectNodeContents(node);
    const r = range.getBoundingClientRect();
    if (r.width > 0 && r.height > 0 && r.bottom <= innerHeight && r.right <= innerWidth && node.textContent.trim())
      seen.push(node.textContent.trim());
  }
  const pre = document.createElement("pre"); pre.id = "fold";
  pre.textContent = JSON.stringify({above: seen.join(" | "), scrollWidth: document.documentElement.scrollWidth,
                                    innerWidth: innerWidth});
  document.body.appendChild(pre);
});
</script>
"""


def _fold(html: str, tmp_path, width: int, height: int) -> dict:
    path = tmp_path / f"fold-{width}.html"
    path.write_text(html.replace("</body>", FOLD + "</body>"), encoding="utf-8")
    p = _chromium(f"--window-size={width},{height}", "--virtual-time-budget=5000", "--dump-dom", "file://" + str(path))
    assert p.returncode == 0, p.stderr[-3000:]
    m = re.search(r'<pre id="fold">(.*?)</pre>', p.stdout, re.S)
    assert m, p.stdout[-2000:]
    import html as _html

    return json.loads(_html.unescape(m.group(1)))


@pytest.fixture(scope="module")
def expert_shared_pro():
    # `equiv check expert_shared --shapes pro`, one recipe and no shrinking to stay fast: the
    # finding is the same under every recipe (the retiled output stage never writes columns 4096..)
    r = equiv.check("expert_shared", shapes="pro", recipes=["realistic"], shrink_budget=0)
    assert r.regressions
    return report.render([r.to_dict()])


@needs_chromium
def test_expert_shared_at_pro_shows_regression_unwritten_count_and_region_above_the_fold(expert_shared_pro,
                                                                                         tmp_path):
    fold = _fold(expert_shared_pro, tmp_path, 1280, 800)
    above = fold["above"]
    assert "REGRESSION" in above and "expert_shared" in above, above
    assert "24,576 unwritten elements" in above, above     # 8 rows × 3072 columns never written
    assert "cols [4096, 7168)" in above, above               # and where


@needs_chromium
def test_tables_fit_an_800_pixel_window(expert_shared_pro, page, tmp_path):
    for html in (expert_shared_pro, page["html"]):
        fold = _fold(html, tmp_path, 800, 600)
        assert fold["scrollWidth"] <= fold["innerWidth"] <= 800, fold


def test_report_leads_with_the_failure_and_counts_unwritten_elements(expert_shared_pro):
    html = expert_shared_pro
    failed = html.index('<section id="failed">')
    assert failed < html.index('<section id="summary">') < html.index('class="hist ulp-hist"')
    lead = html[failed:html.index("</section>", failed)]
    assert "24,576 unwritten elements" in lead and "all rows × cols [4096, 7168)" in lead
    # the per-output table has the unwritten count next to "differing 0"
    counts = html[html.index('<table class="counts">'):]
    counts = counts[:counts.index("</table>")]
    assert "24,576 / 0" in counts


def test_pre_only_notes_are_not_labelled_regression(expert_shared_pro):
    # pre's out-of-range write at pro is a note about pre; the regression is retiled's unwritten columns
    html = expert_shared_pro
    assert "(note, pre only): note: pre oob-write on sh" in html
    assert "(regression): note:" not in html


def _drops_tail_checks():
    from tests.broken_combine import drops_tail

    pair = dataclasses.replace(equiv.get("moe.combine"), retiled=drops_tail)
    return equiv.check(pair, shapes="T=8,D=64,TOPK=2", recipes=["realistic", "binades", "extremes"],
                       shrink_budget=0).to_dict()


def test_the_same_finding_under_several_recipes_is_one_cause():
    chk = _drops_tail_checks()
    causes = report.findings_by_cause(chk["results"])
    regress = [c for c in causes if c["verdict"] == "regression"]
    assert len(regress) == 1, causes
    assert regress[0]["cases"] == 3 and regress[0]["recipes"] == ["realistic", "binades", "extremes"]
    html = report.render([chk])
    table = html[html.index('<table class="causes">'):]
    assert table[:table.index("</table>")].count("<tr>") == 2  # header + one cause


def test_max_error_vs_reference_leaves_out_infinite_cases_and_names_them():
    chk = _drops_tail_checks()
    extremes = [r for r in chk["results"] if r["case"]["recipe"] == "extremes"]
    extremes[0]["outputs"]["ffn_out"]["error_vs_ref"]["pre"]["max"] = float("inf")
    model = report.build_model([chk])
    out = model["pairs"][0]["outputs"][0]
    finite = max(r["outputs"]["ffn_out"]["error_vs_ref"]["pre"]["max"] for r in chk["results"]
                 if r["case"]["recipe"] != "extremes")
    assert out["max_err"]["pre"] == finite and out["err_infinite"] == ["extremes"]
    assert "it is infinite (a non-finite reference or result) in recipe extremes" in report.render([chk])
