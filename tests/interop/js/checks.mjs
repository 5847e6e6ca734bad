// The checks the interop scripts count: each passes or ends the run with FAIL.
let passed = 0;

export function check(cond, what) {
  if (!cond) {
    console.log(`FAIL: ${what}`);
    process.exit(1);
  }
  passed++;
  console.log(`ok: ${what}`);
}

export function done() {
  console.log(`${passed} passed, 0 failed`);
  process.exit(0);
}
