//! Clock steps and the edges of time, on the module built with `--features test-clock`
//! (`scripts/test.sh` builds it; see `kestrel_testbed::test_clock_module_path`).

use std::time::Duration;

use kestrel_chaos::clock;

#[test]
fn clock_steps_back_and_forward_never_repeat_an_id() {
    let outcome = clock::steps(&[10, 1_000, 3_600_000], Duration::from_millis(300));

    assert!(outcome.passed(), "{outcome}");
    assert_eq!(outcome.duplicates, 0);
}

#[test]
fn the_edges_of_time_refuse_cleanly() {
    let outcome = clock::edges();

    assert!(outcome.passed(), "{outcome}");
}
