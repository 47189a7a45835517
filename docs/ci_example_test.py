#!/usr/bin/env python3
"""CTest ci_example: docs/ci-example.yml is valid YAML, README shows it verbatim, and its Kiln
steps work: "Start kiln serve" (with this build's kiln) starts a server that answers healthz,
and "Kiln's metrics and log" prints the metrics it names. The Python SDK step is not run here
(no PyPI): that is the user's own test job.   ci_example_test.py REPO_ROOT KILN_BINARY
"""
import os
import signal
import subprocess
import sys
import tempfile

import yaml


def main(root, kiln):
    text = open(os.path.join(root, "docs", "ci-example.yml")).read()
    workflow = yaml.safe_load(text)
    readme = open(os.path.join(root, "README.md")).read()
    assert text in readme, "README does not show docs/ci-example.yml verbatim"
    steps = {s.get("name"): s for s in workflow["jobs"]["train-against-kiln"]["steps"]}
    for name in ("Build Kiln", "Start kiln serve", "Train", "Kiln's metrics and log"):
        assert name in steps, f"step '{name}' missing"
    assert steps["Build Kiln"]["run"].strip() == "make -C kiln build", "the build step must be the README's command"
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "kiln", "build"))
        os.symlink(kiln, os.path.join(tmp, "kiln", "build", "kiln"))
        env = dict(os.environ, RUNNER_TEMP=tmp)
        # The workflow's port is 8000; here any free one, so a test run never collides.
        port = "0"
        start = steps["Start kiln serve"]["run"]
        assert "--port 8000" in start and "http://127.0.0.1:8000" in start
        serve = subprocess.Popen(["bash", "-c", start.replace("--port 8000", "--port " + port)
                                  .replace(" &\n", " & echo $! >\"$RUNNER_TEMP/pid\"\n")
                                  .replace("http://127.0.0.1:8000", "$(cat \"$RUNNER_TEMP/url\")")
                                  .replace("for _ in", "until grep -o 'http://127.0.0.1:[0-9]*' \"$RUNNER_TEMP/kiln.log\" | head -1 >\"$RUNNER_TEMP/url\" && [ -s \"$RUNNER_TEMP/url\" ]; do sleep 0.1; done\nfor _ in", 1)],
                                 cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, _ = serve.communicate(timeout=90)
        pid = int(open(os.path.join(tmp, "pid")).read())
        try:
            assert serve.returncode == 0, "Start kiln serve failed:\n" + out
            url = open(os.path.join(tmp, "url")).read().strip()
            # Some work, so the metrics step has steps and tokens to find.
            run_training(url)
            check = steps["Kiln's metrics and log"]["run"].replace("http://127.0.0.1:8000", url)
            done = subprocess.run(["bash", "-e", "-c", check], cwd=tmp, env=env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, "metrics step failed:\n" + done.stdout + done.stderr
            for metric in ("kiln_optimizer_steps_total 1", "kiln_tokens_trained_total 3"):
                assert metric in done.stdout, f"'{metric}' not in:\n{done.stdout}"
            assert '"event":"request"' in done.stdout, "the JSON log has no request lines:\n" + done.stdout
        finally:
            os.kill(pid, signal.SIGTERM)
    print("ci example: ok")


def run_training(url):
    import json
    import time
    import urllib.request

    def post(path, body):
        req = urllib.request.Request(url + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json", "X-API-Key": "tml-ci"})
        return json.load(urllib.request.urlopen(req, timeout=30))

    def result(rid):
        for _ in range(100):
            try:
                return post("/api/v1/retrieve_future", {"request_id": rid})
            except urllib.error.HTTPError as e:
                if e.code != 408:
                    raise
                time.sleep(0.05)
        raise RuntimeError("no result")

    session = post("/api/v1/create_session", {"tags": [], "user_metadata": {}, "sdk_version": "0.25.0"})["session_id"]
    model = result(post("/api/v1/create_model", {"session_id": session, "model_seq_id": 0, "base_model": "kiln/tiny",
                                                 "lora_config": {"rank": 4}})["request_id"])["model_id"]
    datum = {"model_input": {"chunks": [{"type": "encoded_text", "tokens": [72, 105, 33]}]},
             "loss_fn_inputs": {"target_tokens": {"data": [105, 33, 10], "dtype": "int64", "shape": [3]}}}
    result(post("/api/v1/forward_backward", {"model_id": model, "seq_id": 1,
                                             "forward_backward_input": {"data": [datum], "loss_fn": "cross_entropy"}})["request_id"])
    result(post("/api/v1/optim_step", {"model_id": model, "seq_id": 2, "adam_params": {"learning_rate": 0.001}})["request_id"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
