#!/usr/bin/env python3
"""CTest conform_ci_example: README's "Check your client in CI" is true. conform-ci.yml is valid
YAML and README shows it and my_driver.py verbatim; its Conform step, run with this build's kiln
in this directory (where my_driver.py and the small in-house client myclient.py live), writes the
JUnit and JSON reports, names the client on the report's first line, passes what the client does
right and fails, with exit status 1, what it lacks (chunking, retries).
    ci_test.py REPO_ROOT KILN_BINARY
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
PASSES = ["numbers.oracle_agreement", "accumulation.until_optim_step", "wire.request_fields", "wire.seq_id_order"]
FAILS = ["wire.chunk_limits", "resilience.retry_branches", "resilience.exactly_once"]  # no chunking, no retries


def main(root, kiln):
    text = open(os.path.join(HERE, "conform-ci.yml")).read()
    steps = {s.get("name"): s for s in yaml.safe_load(text)["jobs"]["conform"]["steps"]}
    readme = open(os.path.join(root, "README.md")).read()
    assert text in readme, "README does not show docs/conform-example/conform-ci.yml verbatim"
    assert open(os.path.join(HERE, "my_driver.py")).read() in readme, "README does not show my_driver.py verbatim"
    assert steps["Build Kiln"]["run"].strip() == "make -C kiln build", "the build step must be the README's command"
    argv = shlex.split(steps["Conform"]["run"])
    assert argv[0] == "kiln/build/kiln", argv
    with tempfile.TemporaryDirectory() as work:
        for name in ("my_driver.py", "myclient.py"):
            shutil.copy(os.path.join(HERE, name), work)
        # The workflow's step, with this build's kiln and three cases per property to stay quick.
        run = subprocess.run([kiln] + argv[1:] + ["--cases", "3"], cwd=work, capture_output=True, text=True, timeout=600)
        out = run.stdout
        assert run.returncode == 1, "exit status %d (want 1: the example client fails some properties)\n%s" % (run.returncode, out)
        first = out.splitlines()[0]
        assert first.startswith("kiln conform: myclient 0.1") and "seed 1" in first, first
        status = {tc.get("name"): ("fail" if tc.find("failure") is not None else "skip" if tc.find("skipped") is not None else "pass")
                  for tc in ET.parse(os.path.join(work, "conform.xml")).iter("testcase")}
        report = json.load(open(os.path.join(work, "conform.json")))
        assert report["client"]["name"] == "myclient", report["client"]
        for name in PASSES:
            assert status.get(name) == "pass", "%s: %s\n%s" % (name, status.get(name), out)
        for name in FAILS:
            assert status.get(name) == "fail", "%s: %s\n%s" % (name, status.get(name), out)
    print("conform_ci_example: ok (%d properties in the JUnit report)" % len(status))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
