"""`bcdi-stream demo`, as a function and as the installed command: an embedded Tiled server (or
an existing one), several rocking curves of different simulated crystals, live reconstructions
read back from a fresh client, and one-line errors for bad options."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest_live import API_KEY, one_torch_thread, shared_server, tiny_settings

from bcdi_stream.demo import run_demo


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    yield from one_torch_thread()


@pytest.mark.timeout(300)
def test_demo_on_an_existing_server() -> None:
    server = shared_server()
    base = server.uri.split("?", 1)[0]
    lines: list[str] = []
    rows = run_demo(n_scans=1, tiled_uri=base, api_key=server.api_key, echo=lines.append,
                    size=32, detector_shape=(64, 80), settings=tiny_settings(32),
                    publish_analysis=False)
    assert rows[0]["status"] == "ok" and rows[0]["readback"]
    assert server.api_key not in "\n".join(lines)  # the key is not printed for a remote server


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_scans": 0}, "n_scans"),
        ({"size": 4}, "size"),
        ({"strains": ()}, "strains"),
        ({"serve": True, "tiled_uri": "http://x/api/v1"}, "serve"),
        # below 16 the simulator refuses the grid: caught here, before a server starts
        ({"size": 8}, "size"),
        ({"size": 15}, "size"),
        ({"size": 32.5}, "size"),
        ({"size": 2048}, "size"),
        ({"n_scans": float("nan")}, "n_scans"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"timeout": float("nan")}, "timeout"),
        ({"exposure_s": float("inf")}, "exposure_s"),  # a trigger that never ends
        ({"strains": "wobbly"}, "got wobbly$"),  # a string is a class name, not letters
        ({"strains": "weak,wobbly"}, "got wobbly$"),
        ({"directory": "/tmp", "tiled_uri": "http://x/api/v1"}, "directory"),
    ],
)
def test_demo_validates_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        run_demo(**kwargs)
    assert "\n" not in str(err.value)


def test_demo_rejects_an_unusable_directory_before_starting(tmp_path, capsys) -> None:
    """A --directory that cannot hold the server's data is bad input (one line naming it, exit
    2), found before the embedded server starts, not an internal error from inside Tiled."""
    from bcdi_stream.errors import InputError

    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    lines: list[str] = []
    for bad in (a_file, a_file / "below"):
        with pytest.raises(InputError, match=r"^directory"):
            run_demo(directory=bad, echo=lines.append)
        with pytest.raises(InputError, match=r"^live_figure_dir"):
            run_demo(live_figure_dir=bad, echo=lines.append)
    assert lines == []  # nothing started
    for option in ("--directory", "--figures"):
        code, _out, err = _cli(capsys, "demo", option, str(a_file / "below"))
        assert code == 2, err
        (line,) = err.strip().splitlines()
        assert line.startswith("bcdi-stream: error: ") and "Traceback" not in err, err
        assert "a-file" in line and "directory" in line, line


# ---------------------------------------------------------------- the `bcdi-stream demo` command


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from bcdi_stream.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (["--scans", "0"], "--scans"),
        (["--size", "4"], "--size"),
        (["--threads", "-1"], "--threads"),
        (["--exposure", "-1"], "--exposure"),
        (["--timeout", "0"], "--timeout"),
        (["--strains", "weak,wobbly"], "strains"),
        (["--strains", ","], "strains"),
        (["--serve", "--tiled-uri", "http://127.0.0.1:9/api/v1"], "--serve"),
        (["--tiled-uri", "ftp://example/api/v1"], "tiled_uri"),
        (["--tiled-uri", "http://127.0.0.1:9/api/v1"], "cannot use the Tiled server"),
    ],
)
def test_demo_command_bad_options_one_line_exit_2(capsys, args: list[str], word: str) -> None:
    code, out, err = _cli(capsys, "demo", *args)
    assert code == 2, (args, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bcdi-stream: error:") and word in lines[0], err
    assert "Traceback" not in err


@pytest.mark.timeout(300)
def test_demo_command_on_an_existing_server_json(capsys) -> None:
    """`--tiled-uri/--api-key --json`: results land in that server, the JSON is one list."""
    import json

    from tiled.client import from_uri

    server = shared_server()
    base = server.uri.split("?", 1)[0]
    code, out, err = _cli(capsys, "demo", "--scans", "1", "--size", "32", "--exposure", "0",
                          "--tiled-uri", base, "--api-key", API_KEY, "--threads", "1",
                          "--seed", "5", "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["status"] == "ok" and row["readback"] is True
    assert row["latency"] > 0 and set(row["timings"]) >= {"read", "refine", "write"}
    assert "per-scan latency" in err and "from_uri(" in err  # progress goes to stderr
    node = from_uri(server.uri)["processed"][row["uid"]]
    assert node.metadata["status"] == "ok"
    assert node["strain"].read().shape == (32, 32, 32)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_command_serves_results_to_a_fresh_client(tmp_path) -> None:
    """The installed command in its own process: `bcdi-stream demo --scans 3 --serve`
    reconstructs three scans; the browsing snippet it prints opens them from a fresh client;
    Ctrl-C ends it cleanly (exit 0, no hang)."""
    import os
    import queue
    import re
    import signal
    import subprocess
    import sys
    import threading
    import time

    from tiled.client import from_uri
    from tiled.queries import Key

    env = {k: v for k, v in os.environ.items() if k != "TILED_API_KEY"}
    figures = tmp_path / "figures"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcdi_stream.cli", "demo", "--scans", "3", "--size", "32",
         "--exposure", "0", "--threads", "1", "--serve", "--figures", str(figures)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        # Ctrl-C must reach it as at a terminal, even when the suite itself runs in the
        # background (`cmd &` in a script starts with SIGINT ignored, and children inherit that)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 420
        while not any("serving; press Ctrl-C" in ln for ln in seen):
            assert proc.poll() is None, "".join(seen)
            assert time.monotonic() < deadline, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        text = "".join(seen)
        assert "3/3 scans reconstructed and read back from a fresh Tiled client" in text, text
        assert text.count("latency") >= 4, text  # three summary lines + the table header
        assert "per-scan latency" in text and "format=image/png" in text, text
        assert len(set(re.findall(r"crystal-\d+-\w+", text))) == 3, text  # three crystals
        snippet = re.search(r"c = from_uri\('([^']+)'\)", text)
        assert snippet, text
        c = from_uri(snippet.group(1))  # exactly what the command told a person to run
        done = list(c["processed"].search(Key("status") == "ok"))
        assert len(done) == 3, done
        for uid in done:
            r = c["processed"][uid]
            assert r.metadata["raw_uid"] == uid and r.metadata["timings"]["latency"] > 0
            assert r["strain"].read().shape == (32, 32, 32)
            assert r["figures"]["slices"].read().dtype.name == "uint8"
            assert "primary" in c[uid]  # the raw run beside it
        assert len(list(figures.glob("*.png"))) == 3
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            # say what the demo was doing when it did not stop (its last lines), then kill it
            proc.kill()
            proc.wait()
            reader.join(timeout=5)
            while not lines.empty():
                seen.append(lines.get())
            pytest.fail("the demo did not exit within 90 s of Ctrl-C; its output:\n"
                        + "".join(seen[-40:]))
        assert code == 0, "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
