"""The ``timebin`` command and the packaging of the distribution."""

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from timebin.host.cli import main
from timebin.sim.tx.run import seed_key_iv
from timebin.sim.tx.top import TransmitterModel

ROOT = Path(__file__).resolve().parents[1]


def test_sim_tx_writes_npz(tmp_path, capsys):
    out = tmp_path / "tx.npz"
    assert main(["sim", "tx", "--lanes", "4", "--uis-per-symbol", "4", "--symbols", "1001",
                 "--seed", "5", "--protocol", "4", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["symbols"] == 1001 and summary["key_symbols"] == 1001
    assert sum(summary["states"].values()) == 1001 and summary["states"]["X-"] > 0

    run = np.load(out)
    meta = json.loads(str(run["meta"]))
    assert meta["ui_rate_hz"] == 156.25e6 * 16
    np.testing.assert_array_equal(run["index"], np.arange(1001))
    words = -(-1001 // 4)
    assert run["carver"].shape == (words, 16) and run["carver_ui"].shape == (words * 16,)
    # The serializer words are those that carry the logged symbols: Z0 lights the first
    # half of its symbol, Z1 the second, X both (default pulse window: the whole bin).
    state = run["basis"].astype(int) * 2 + run["bit"]
    ui = run["carver_ui"][:1001 * 4].reshape(1001, 4)
    np.testing.assert_array_equal(ui[:, 0], state != 1)
    np.testing.assert_array_equal(ui[:, 2], state != 0)
    # And they are what the model gives for the seed's key and IV.
    key, iv = seed_key_iv(5)
    assert meta["key"] == f"{key:020x}"
    model = TransmitterModel(lanes=4, uis_per_symbol=4)
    ref = model.run(40, {"key": key, "iv": iv, "protocol": 1},
                    enable=np.arange(40) >= 19).symbols
    first = np.flatnonzero(ref.valid)[0]
    np.testing.assert_array_equal(run["basis"][:8], ref.basis[first:first + 2].ravel())


def test_sim_tx_is_reproducible(tmp_path, capsys):
    a, b, c = (tmp_path / f"{x}.npz" for x in "abc")
    for path, seed in ((a, "9"), (b, "9"), (c, "10")):
        main(["sim", "tx", "--lanes", "2", "--symbols", "300", "--seed", seed, "--out",
              str(path)])
    capsys.readouterr()
    np.testing.assert_array_equal(np.load(a)["im_ui"], np.load(b)["im_ui"])
    assert not np.array_equal(np.load(a)["basis"], np.load(c)["basis"])


@pytest.mark.parametrize(("args", "text"), [
    (["--lanes", "0"], "--lanes: must be a positive integer, not '0'"),
    (["--lanes", "two"], "not 'two'"),
    (["--uis-per-symbol", "3"], "not 3"),
    (["--intensities", "0.5,0.6"], "0.5, 0.6"),
    (["--p-z", "1.5"], "1.5"),
])
def test_sim_tx_bad_arguments(args, text, capsys):
    try:
        code = main(["sim", "tx", "--symbols", "10", *args])
    except SystemExit as exit:
        code = exit.code
    assert code == 2
    assert text in capsys.readouterr().err


def test_bench_tx_json():
    """The benchmark runs and reports measured rates (small sizes; no Verilator here)."""
    result = subprocess.run(
        [sys.executable, "-m", "timebin.host.cli", "bench", "tx", "--json", "--no-verilator",
         "--model-symbols", "20000", "--amaranth-cycles", "50"],
        capture_output=True, text=True, check=True, timeout=600)
    report = json.loads(result.stdout)
    assert report["bench"] == "tx"
    for entry in report["results"]:
        assert entry["model"]["symbols_per_s"] > 0
        assert entry["amaranth"]["cycles_per_s"] > 0


def test_normal_install_layout(tmp_path):
    """A normal (non-editable) build maps the top folders to the ``timebin.*`` packages."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, timeout=600)
    (wheel,) = tmp_path.glob("timebin-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in ("timebin/gateware/tx/top.py", "timebin/gateware/records.py",
                 "timebin/sim/tx/top.py", "timebin/sim/cocotb/runner.py",
                 "timebin/sim/cocotb/tb_tx_top.py", "timebin/host/cli.py",
                 "timebin/boards/__init__.py"):
        assert path in names, path
    assert not any(name.startswith(("tests/", "gateware/", "timebin/tests")) for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "timebin = timebin.host.cli:main" in text

    # Installed into a plain folder and imported from there, it works without the checkout.
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "import timebin.gateware.tx.top as t, timebin.host.cli as c;"
            "assert t.__file__.startswith(sys.argv[1]), t.__file__;"
            "print(c.main(['sim', 'tx', '--lanes', '2', '--symbols', '64', '--json']))")
    result = subprocess.run([sys.executable, "-I", "-c", code, str(target)],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("0")


def test_host_does_not_import_amaranth():
    """DESIGN.md section 5: the host side runs without Amaranth loaded."""
    modules = sorted(f"timebin.host.{path.stem}" for path in (ROOT / "host").glob("*.py")
                     if path.stem != "__init__")
    code = (f"import sys, timebin.host, {', '.join(modules)};"
            "assert not [m for m in sys.modules if m.startswith('amaranth')], 'amaranth'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert "timebin.host.transport" in modules


def test_regmap_markdown_and_json(capsys):
    assert main(["regmap", "--role", "bob", "--channels", "2"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Register map of bob") and "| `dead_time` |" in text
    assert "| `clicks.1` |" in text and "| `clicks.2` |" not in text
    assert main(["regmap", "--role", "alice", "--json"]) == 0
    regs = json.loads(capsys.readouterr().out)
    names = {reg["name"] for reg in regs}
    assert {"id", "write_errors", "p_z", "alarm_clear"} <= names
    addresses = [a for reg in regs for a in reg["addresses"]]
    assert len(addresses) == len(set(addresses))


def test_regmap_of_a_loopback_board(capsys):
    assert main(["regmap", "--role", "loopback", "--board", "--channels", "2", "--json"]) == 0
    names = {reg["name"] for reg in json.loads(capsys.readouterr().out)}
    assert {"tx_enable", "rx_dead_time", "sift_errors.7", "sift_results"} <= names
    assert main(["regmap", "--role", "loopback"]) == 2
    assert "give --board" in capsys.readouterr().err


def test_demo_runs_the_whole_chain(tmp_path, capsys):
    """The README's main job, small: transmitter and receiver checked against their
    gateware, then a reference-model QKD session with its summary table (10^6 symbols) and,
    in JSON, its key (10^7 symbols) against the theory of the same link, and its plots."""
    plots = tmp_path / "plots"
    argv = ["demo", "--tx-symbols", "100000", "--rx-cycles", "20000", "--check-cycles", "300",
            "--out", str(tmp_path / "tx.npz"), "--rx-out", str(tmp_path / "rx.npz"),
            "--distance-km", "2", "--plots", str(plots)]
    # The table of a session too short for key (one block of 10^6 symbols).
    assert main([*argv, "--symbols", "1000000"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "QKD session (reference model): 2 km, gated detectors, cascade" in out
    assert re.search(r"keys equal on both sides\s+│ True", out)
    assert re.search(r"symbols sent\s+│ 1,000,000 in 1 block", out)
    assert "theory for this link" in out
    for name in ("histogram", "timeline", "keyrate"):
        path = plots / f"{name}.png"
        assert f"plot ({name}): {path}" in out
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        path.unlink()
    assert main([*argv, "--symbols", "10000000", "--json"]) == 0
    captured = capsys.readouterr()
    assert "QKD session" not in captured.err          # no progress bar with --json
    result = json.loads(captured.out)
    session = result["distillation"]
    assert session["keys_match"] and session["status"] == ["key"]
    assert session["symbols"] == 10_000_000 and session["block_symbols"] == 10_000_000
    assert 0 < session["qber_z"][0] < 0.03 and session["key_bits"][0] > 0
    assert result["transmitter"]["transmitter"]["symbols"] == 100_000
    assert set(result["plots"]) == {"histogram", "timeline", "keyrate"}
    assert all(Path(p).is_file() for p in result["plots"].values())
    check = session["keyrate"]["check"]
    assert check["measured_bits"] == session["key_bits"][0] and abs(check["z"]) <= 3
    measured = session["keyrate"]["measured"]
    assert measured["rate_bps"] == pytest.approx(session["key_rate_bps"])
    assert 0 < measured["sigma_bps"] < measured["rate_bps"]
    curve = session["keyrate"]["curve"]
    assert curve[0]["distance_km"] == 0 and curve[-1]["distance_km"] == 40
    assert curve[0]["key_rate_bps"] > curve[-1]["key_rate_bps"] == 0


@pytest.mark.parametrize(("args", "text"), [
    (["--symbols", "15000000"],
     "--symbols must be at most 10000000 or a whole number of 10000000-symbol blocks, "
     "not 15000000"),
    (["--distance-km", "-1"], "--distance-km: must be a non-negative number, not '-1'"),
    (["--detector", "apd"], "--detector: invalid choice: 'apd'"),
])
def test_demo_bad_arguments(args, text, tmp_path, capsys):
    """Bad input is refused before any work, naming the value."""
    argv = ["demo", "--out", str(tmp_path / "tx.npz"), "--rx-out", str(tmp_path / "rx.npz"),
            "--plots", str(tmp_path / "plots"), *args]
    try:
        code = main(argv)
    except SystemExit as exit_:                   # argparse usage errors
        code = exit_.code
    assert code == 2
    assert text in capsys.readouterr().err
    assert not (tmp_path / "tx.npz").exists() and not (tmp_path / "plots").exists()


def test_demo_rtl_session(tmp_path, capsys):
    """``--rtl``: the QKD session with both boards' gateware in the loop (short)."""
    pytest.importorskip("timebin.sim.lab_rtl", reason="the RTL-in-the-loop lab is not there")
    argv = ["demo", "--rtl", "--symbols", "4096", "--tx-symbols", "10000", "--rx-cycles", "2000",
            "--check-cycles", "100", "--out", str(tmp_path / "tx.npz"),
            "--rx-out", str(tmp_path / "rx.npz"), "--plots", str(tmp_path / "plots"),
            "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    session = result["distillation"]
    assert session["rtl"] and session["keys_match"]
    assert {"timeline", "keyrate"} <= set(result["plots"])



def test_bench_lab_measures_the_channel_and_a_whole_session(capsys):
    argv = ["bench", "lab", "--symbols", "2000000", "--session-symbols", "2000000",
            "--rtl-symbols", "0", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["channel"]["fast_path"] and out["channel"]["word_path"]
    session = out["reference_session"]
    assert session["symbols"] == 2_000_000 and session["symbols_per_second"] > 0
    assert session["clicks"] > 0 and "rtl_session" not in out


def test_bench_lab_refuses_a_partial_block(capsys):
    assert main(["bench", "lab", "--curve", "--curve-symbols", "15000000", "--json"]) == 2
    assert "--curve-symbols must be at most 10000000 or a whole number of 10000000-symbol " \
           "blocks, not 15000000" in capsys.readouterr().err


def test_demo_plots_check_their_data(tmp_path):
    """The demo's plots from a made-up session summary; missing or misshapen data is named."""
    from timebin.sim.plots import plot_histogram, plot_timeline

    summary = {"status": ["key", "key"], "qber_z": [0.01, 0.012], "qber_x": [0.02, float("nan")],
               "key_bits": [100, 120], "stored_bits": [80, 100], "block_symbols": 1000,
               "symbol_rate_hz": 1e6, "distance_km": 5.0, "detector": "gated",
               "timeline": [{"time_s": 0.0, "symbols": 0, "delays": [3, 4, 4]},
                            {"time_s": 0.002, "symbols": 2000, "delays": [3, 5, 4]}],
               "histogram": {"counts": [[0, 5, 9, 1]] * 3, "period_symbols": 2,
                             "uis_per_symbol": 2, "ui_ps": 800.0,
                             "windows": [[0, 1], [3, 2], [3, 2]], "delays": [3, 4, 4],
                             "channels": ["Z", "X+", "X-"]}}
    for plot, name in ((plot_histogram, "h.png"), (plot_timeline, "t.png")):
        assert plot(summary, tmp_path / name) == str(tmp_path / name)
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no 'histogram': cannot plot Bob's timing histogram"):
        plot_histogram({}, tmp_path / "x.png")
    summary["histogram"]["counts"] = [[1, 2, 3]] * 3
    with pytest.raises(ValueError, match=r"must be 3 rows of P \* S = 4 bins, not \[3, 3, 3\]"):
        plot_histogram(summary, tmp_path / "x.png")
