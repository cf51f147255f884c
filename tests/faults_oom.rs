//! `maxmemory` reached: Redis's own OOM error, and no state half-written.

use kestrel_chaos::oom;

#[test]
fn out_of_memory_refuses_and_writes_nothing() {
    let outcome = oom::run();

    assert!(outcome.passed(), "{outcome}");
}
