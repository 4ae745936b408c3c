"""`make lab` starts JupyterLab for root and non-root users alike: start it headless the way the
Makefile does (bin/lab), ask its contents API for the notebooks, stop it."""
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(sys.platform == "win32", reason="bin/lab is a bash script")
def test_lab_starts_and_lists_the_notebooks(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    venv = Path(sys.executable).parent.parent          # the environment running the tests
    env = {**os.environ, "VENV": str(venv), "JUPYTER_RUNTIME_DIR": str(tmp_path), "HOME": str(tmp_path)}
    server = subprocess.Popen(
        [str(ROOT / "bin" / "lab"), "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
         f"--IdentityProvider.token={token}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        listing, deadline = None, time.monotonic() + 120
        while listing is None and time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"jupyter lab exited with {server.returncode}:\n{server.stdout.read()}")
            try:
                url = f"http://127.0.0.1:{port}/api/contents?token={token}"
                with urllib.request.urlopen(url, timeout=5) as response:
                    listing = json.load(response)
            except OSError:
                time.sleep(0.5)
        assert listing is not None, "jupyter lab did not answer on its port within two minutes"
        names = {item["name"] for item in listing["content"]}
        expected = {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
        assert expected and expected <= names, f"missing from the lab's listing: {sorted(expected - names)}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
