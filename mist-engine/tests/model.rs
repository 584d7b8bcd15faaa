//! Property test: the engine against a brute-force model of the protocol
//! (see `fuzz/engine_model.rs`, shared with the `engine` fuzz target), over
//! random operation sequences, and over the fuzzer's committed regressions.

#[path = "../../fuzz/engine_model.rs"]
mod engine_model;

use engine_model::{ops_from_bytes, run, Op, TAGS};
use proptest::prelude::*;
use std::path::Path;

fn tag_list() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..TAGS.len(), 1..4)
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0usize..6;
    prop_oneof![
        2 => (0usize..3).prop_map(Op::Connect),
        3 => (who.clone(), tag_list()).prop_map(|(c, t)| Op::Subscribe(c, t)),
        1 => (who.clone(), tag_list()).prop_map(|(c, t)| Op::Unsubscribe(c, t)),
        5 => (who.clone(), tag_list(), any::<u8>()).prop_map(|(c, t, d)| Op::Publish(c, t, d)),
        1 => who.clone().prop_map(Op::List),
        1 => who.clone().prop_map(Op::Garbage),
        3 => who.clone().prop_map(Op::Drain),
        1 => who.clone().prop_map(Op::Resume),
        1 => who.clone().prop_map(Op::Expire),
        1 => who.clone().prop_map(Op::CloseInput),
        1 => who.prop_map(Op::Disconnect),
    ]
}

#[test]
fn the_fuzzers_regressions_still_match_the_model() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/engine");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("the engine corpus directory exists") {
        let path = entry.unwrap().path();
        let (secured, shards, ops) = ops_from_bytes(&std::fs::read(&path).unwrap());
        let outcome = std::panic::catch_unwind(|| run(secured, shards, ops));
        assert!(
            outcome.is_ok(),
            "the model and the engine differ on {}",
            path.display()
        );
        replayed += 1;
    }
    assert!(replayed >= 5, "only {replayed} files in {}", dir.display());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn open_engine_matches_the_model(ops in prop::collection::vec(op(), 1..80)) {
        run(false, 1, ops);
    }

    #[test]
    fn secured_engine_matches_the_model(ops in prop::collection::vec(op(), 1..80)) {
        run(true, 1, ops);
    }

    #[test]
    fn two_shards_deliver_what_the_model_does(
        secured in any::<bool>(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(secured, 2, ops);
    }

    #[test]
    fn four_shards_deliver_what_the_model_does(
        secured in any::<bool>(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(secured, 4, ops);
    }
}
