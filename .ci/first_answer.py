"""CI: wait for `pip install -e . && qa serve` (started by .ci/run) to answer a question; print how long each step
took. Exits non-zero, with the server's log, if the server dies or does not answer in time.

usage: python .ci/first_answer.py URL SERVER_PID SERVER_LOG STARTED_EPOCH_SECONDS
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

DEADLINE_SECONDS = 1200
QUESTION = "Who formed the ruling triumvirate after Lenin's death?"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def fail(message: str, log: Path) -> None:
    print(f"first answer: {message}\n--- server log (end) ---\n{log.read_text(errors='replace')[-4000:]}")
    sys.exit(1)


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def ask(url: str) -> dict:
    body = json.dumps({"question": QUESTION, "top_k": 3}).encode()
    request = urllib.request.Request(url + "/v1/ask", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())


def main() -> None:
    url, pid, log, started = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4])
    script = Path(sys.prefix) / "bin" / "qa"
    installed = None
    while not ready(url):
        if installed is None and script.exists():
            installed = time.time()
        if not alive(pid):
            fail("the server exited before it was ready", log)
        if time.time() - started > DEADLINE_SECONDS:
            fail(f"not ready after {DEADLINE_SECONDS} s", log)
        time.sleep(0.5)
    answer = ask(url)
    done = time.time()
    if not answer.get("answered") or not answer.get("passages"):
        fail(f"the service did not answer {QUESTION!r}: {json.dumps(answer)[:500]}", log)
    install = f"{installed - started:.0f} s" if installed else "?"
    print(f"first answer: install {install}, first answer {done - started:.0f} s after the command started")
    print(f"first answer: top passage: {answer['passages'][0]['text'][:120]!r}")


if __name__ == "__main__":
    main()
