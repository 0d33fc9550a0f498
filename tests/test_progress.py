"""vigil process shows a live bar on a terminal and plain log lines anywhere else."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

FAST = ["--sample-fps", "0.5", "--shard-seconds", "60"]
SHARDS = [
    {"recording_id": "cam-1", "shard": {"index": 0, "start": "0", "end": "60"}},
    {"recording_id": "cam-1", "shard": {"index": 1, "start": "60", "end": "139/2"}},
    {"recording_id": "cam-2", "shard": {"index": 0, "start": "0", "end": "30"}},
]


def _run(stream: io.StringIO, interactive: bool) -> None:
    from vigil.orchestration.progress import ShardProgress

    with ShardProgress(SHARDS, stream=stream, interactive=interactive) as progress:
        for task in SHARDS:
            assert progress.done(task, {"frames": 30}) == {"frames": 30}


def test_progress_off_a_terminal_writes_one_plain_line_per_shard():
    stream = io.StringIO()
    _run(stream, interactive=False)
    lines = stream.getvalue().splitlines()
    assert [line.split(" done")[0] for line in lines] == ["vigil: shard 1/3", "vigil: shard 2/3", "vigil: shard 3/3"]
    assert "recordings 0/2" in lines[0] and "recordings 1/2" in lines[1] and "recordings 2/2" in lines[2]
    assert all("frames/s" in line for line in lines) and "left" in lines[0] and lines[2].endswith("finished")
    assert "\x1b[" not in stream.getvalue(), "no terminal control codes in a log"


def test_progress_on_a_terminal_draws_a_bar_instead():
    stream = io.StringIO()
    _run(stream, interactive=True)
    text = stream.getvalue()
    assert "vigil: shard" not in text
    assert "shards 3/3" in text and "recordings 2/2" in text and "frames/s" in text
    assert "━" in text, "a bar"


def test_progress_is_plain_when_the_stream_is_not_a_terminal():
    from vigil.orchestration.progress import ShardProgress

    assert ShardProgress(SHARDS, stream=io.StringIO()).interactive is False


@pytest.mark.slow
@pytest.mark.parametrize("terminal", [True, False])
def test_vigil_process_shows_a_bar_on_a_terminal_and_lines_in_a_pipe(terminal, tmp_path, footage):
    import fcntl
    import pty
    import struct
    import termios

    from vigil.uri import file_uri

    command = [sys.executable, "-m", "vigil.cli", "process", file_uri(footage), "--out", file_uri(tmp_path / "out"), *FAST]
    env = {**os.environ, "TERM": "xterm-256color"}
    if not terminal:
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        assert sum(line.startswith("vigil: shard") for line in done.stderr.splitlines()) == 3
        assert "\x1b[" not in done.stderr and "━" not in done.stderr, "no bar in a log"
        return
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=secondary, env=env)
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed: the command is done
            break
        if not chunk:
            break
        seen += chunk
    worker.stdout.read()
    assert worker.wait() == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert "vigil: shard" not in text
    assert "shards 3/3" in text and "recordings 1/1" in text and "frames/s" in text
