#!/usr/bin/env python3
"""Every reference the repository makes into docs/protocol.md resolves there.

Citations look like `protocol.md §W3.3`, `§S9.3–9.4`, `§W6–7`, and rule codes like `(B1)`,
`(F2, F3)`, `rule C1`, `rules D1–D8`. Exits 1 listing each one that names no section or rule.
"""
import pathlib
import re
import subprocess
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
doc = (root / "docs/protocol.md").read_text()

# Anchors: headings "### W1.7 …" / "## S4. …", table rows "| W6.12 |", bold "**W8.4**", rules "**A1**".
anchors = set(re.findall(r"^#{2,3} ([WS]\d+(?:\.\d+)?)[.\s–]", doc, re.M))
anchors |= set(re.findall(r"^\| ([WS]\d+\.\d+) \|", doc, re.M))
anchors |= set(re.findall(r"\*\*([WS]\d+(?:\.\d+)?)\b", doc))
for kind, major, a, b in re.findall(r"^#{2,3} ([WS])(\d+)\.(\d+)–[WS]?\d+\.(\d+)", doc, re.M):
    anchors |= {f"{kind}{major}.{i}" for i in range(int(a), int(b) + 1)}
rules = set(re.findall(r"\*\*([A-I]\d{1,2})\*\*", doc))

try:
    files = subprocess.check_output(["git", "ls-files"], cwd=root, text=True, stderr=subprocess.DEVNULL).split()
except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but build output
    files = [str(p.relative_to(root)) for p in root.rglob("*")
             if p.is_file() and not str(p.relative_to(root)).startswith(("build", ".git"))]
sources = [f for f in files if re.search(r"\.(cpp|hpp|h|py|md|txt|proto|in)$|^Makefile$|^\.ci/", f)
           and not f.startswith("docs/protocol.md") and not f.startswith("fixtures/wire-captures/")]

missing = []
for f in sources:
    text = (root / f).read_text(errors="replace")
    for m in re.finditer(r"§([WS])(\d+)(?:\.(\d+))?(?:–(?:[WS])?(\d+)(?:\.(\d+))?)?", text):
        kind, major, minor, major2, minor2 = m.groups()
        wanted = [f"{kind}{major}" + (f".{minor}" if minor else "")]
        if major2 and minor2:                      # §W6.17–6.19
            wanted.append(f"{kind}{major2}.{minor2}")
        elif major2 and minor:                     # §W4.1–2 reads as §W4.1–4.2's short form
            wanted.append(f"{kind}{major}.{major2}")
        elif major2:                               # §S4–6
            wanted.append(f"{kind}{major2}")
        for w in wanted:
            if w not in anchors:
                missing.append(f"{f}: §{w} (in '{m.group(0)}')")
    for m in re.finditer(r"§\d[\d.]*", text):
        missing.append(f"{f}: '{m.group(0)}' (a section is cited with its part: §W… or §S…)")
    for m in re.finditer(r"§([A-I]\d{1,2})\b", text):
        missing.append(f"{f}: '§{m.group(1)}' (a rule is cited as 'rule {m.group(1)}', not as a section)")
    for m in re.finditer(r"(?:\(|rules? |, )([A-I]\d{1,2})(?:–([A-I]\d{1,2}))?(?=[,)\s.;:])", text):
        for code in filter(None, m.groups()):
            if code not in rules:
                missing.append(f"{f}: rule {code}")

if missing:
    print("references that docs/protocol.md does not resolve:")
    print("\n".join(sorted(set(missing))))
    sys.exit(1)
print(f"{len(sources)} files checked; every § and rule reference resolves in docs/protocol.md "
      f"({len(anchors)} sections, {len(rules)} rules)")
