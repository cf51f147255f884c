//! Random argument vectors against a live server with the module (a short run; the long one is
//! `scripts/chaos.sh`): the server never dies, every reply is a value or an error reply, and the
//! module's IDs stay unique and increasing.

use kestrel_chaos::argv;

#[test]
fn random_argument_vectors_get_values_or_errors() {
    for seed in [1, 2] {
        let outcome = argv::scenario(2_000, seed);

        assert!(outcome.passed(), "{outcome}");
    }
}
