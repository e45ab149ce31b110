"""``timebin sim rx`` and ``timebin bench rx``: generated and recorded detector words through the
model and the gateware give the same records, histograms and counters; bad settings and files
are refused with the value named."""

import json
import subprocess
import sys

import numpy as np
import pytest
from timebin.host.cli import main
from timebin.sim.rx.run import load_words


def sim_rx(capsys, *args):
    assert main(["sim", "rx", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def same_run(a, b):
    a, b = np.load(a), np.load(b)
    assert sorted(a.files) == sorted(b.files)
    for name in a.files:
        if name != "meta":
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_generated_words_model_and_verilator_agree(tmp_path, capsys):
    words, model, rtl = tmp_path / "words.npz", tmp_path / "model.npz", tmp_path / "rtl.npz"
    shape = ["--channels", "3", "--lanes", "4", "--uis-per-symbol", "4", "--oversampling", "2"]
    summary = sim_rx(capsys, *shape, "--cycles", "6000", "--seed", "3", "--click-probability",
                     "0.05", "--save-words", str(words), "--out", str(model), "--delay",
                     "0,5,17", "--dead-time", "40", "--dead-mode", "per-detector")
    assert summary["engine"] == "model" and summary["records"] > 1000
    assert summary["records_by_class"]["middle"][2] > 0               # the X detector
    assert summary["counters"]["dead_discards"][0] > 0
    again = sim_rx(capsys, "--in", str(words), "--out", str(rtl), "--rtl", "--delay", "0,5,17",
                   "--dead-time", "40", "--dead-mode", "per-detector")
    assert again["engine"] == "verilator"
    assert again["counters"] == summary["counters"]
    same_run(model, rtl)
    records = np.load(model)
    assert records["histogram"].shape == (3, 4)
    assert records["histogram"].sum() == sum(summary["counters"]["histogram_counted"])


def test_raw_capture_and_amaranth_engine(tmp_path, capsys):
    words, raw = tmp_path / "words.npz", tmp_path / "capture.bin"
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    shape = ["--channels", "2", "--lanes", "2", "--uis-per-symbol", "2"]
    sim_rx(capsys, *shape, "--cycles", "400", "--click-probability", "0.2",
           "--save-words", str(words), "--out", str(a))
    with np.load(words) as data:
        data["words"].tofile(raw)                              # a capture: bytes, no header
    samples, _ = load_words(raw, {"channels": 2, "lanes": 2, "uis_per_symbol": 2,
                                  "oversampling": 1})
    np.testing.assert_array_equal(samples, load_words(words)[0])
    sim_rx(capsys, *shape, "--in", str(raw), "--out", str(b), "--rtl", "--rtl-sim", "amaranth")
    same_run(a, b)


@pytest.mark.parametrize(("args", "text"), [
    (["--windows", "z,z"], "Window LUT must hold one table per channel (4), not 2"),
    (["--windows", "elm"], "Window LUT of channel 0 must have 2 entries"),
    (["--windows", "eq"], "'q' is not a class"),
    (["--dead-time", "31"], "Dead time must be 32..131071 UIs (one word at least), not 31"),
    (["--gates", "--gate-width", "0"], "Gate width must be 1..2*period UIs, not 0"),
    (["--gates", "--gate-period", "0"], "Gate period must be 1..256 symbols, not 0"),
    (["--delay", "1,2"], "2"),
    (["--histogram-period", "3"], "power of two, not 3"),
    (["--uis-per-symbol", "3"], "even"),
])
def test_bad_settings_are_refused(args, text, capsys):
    try:
        code = main(["sim", "rx", "--cycles", "50", *args])
    except SystemExit as exit:
        code = exit.code
    assert code == 2
    assert text in capsys.readouterr().err


def test_bad_word_files(tmp_path, capsys):
    raw = tmp_path / "odd.bin"
    raw.write_bytes(bytes(13))
    assert main(["sim", "rx", "--in", str(raw), "--channels", "2", "--lanes", "2"]) == 2
    assert "13 bytes, not a whole number of cycles of 2 channels x 1 bytes" in \
        capsys.readouterr().err
    other = tmp_path / "other.npz"
    np.savez(other, format=np.array("something-else"))
    assert main(["sim", "rx", "--in", str(other)]) == 2
    assert "not a detector-word file" in capsys.readouterr().err


def test_bench_rx_json():
    """The benchmark runs and reports measured rates (small sizes; no Verilator here)."""
    result = subprocess.run(
        [sys.executable, "-m", "timebin.host.cli", "bench", "rx", "--json", "--no-verilator",
         "--model-cycles", "5000", "--amaranth-cycles", "50"],
        capture_output=True, text=True, check=True, timeout=600)
    report = json.loads(result.stdout)
    assert report["bench"] == "rx"
    for entry in report["results"]:
        assert entry["model"]["detections_per_s"] > 0 and entry["model"]["detections"] > 0
        assert entry["amaranth"]["cycles_per_s"] > 0


def test_bench_link_json():
    """Compression figures against the entropy bound, and decode speeds (small sizes)."""
    result = subprocess.run(
        [sys.executable, "-m", "timebin.host.cli", "bench", "link", "--json", "--records",
         "20000"], capture_output=True, text=True, check=True, timeout=600)
    report = json.loads(result.stdout)
    assert report["bench"] == "link"
    for entry in report["compression"]:
        assert entry["bits_per_detection"] > entry["entropy_bound"]
        assert entry["decode_records_per_s"] > 0
    assert report["frame_decoder"]["megabytes_per_s"] > 0
