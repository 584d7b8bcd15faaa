//! Replays the fuzzer's committed regression corpus (`fuzz/regressions/decode`)
//! through the same invariant check the fuzz target runs, plus random inputs.

#[path = "../../fuzz/check.rs"]
mod check;

use proptest::prelude::*;
use std::path::Path;

#[test]
fn the_regression_corpus_upholds_the_decoder_invariants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/decode");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus directory exists") {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check::check(&input));
        assert!(outcome.is_ok(), "invariant broken by {}", path.display());
        checked += 1;
    }
    assert!(
        checked >= 10,
        "only {checked} corpus files found in {}",
        dir.display()
    );
}

proptest! {
    #[test]
    fn random_bytes_uphold_the_decoder_invariants(input in prop::collection::vec(any::<u8>(), 0..600)) {
        check::check(&input);
    }

    #[test]
    fn random_requests_uphold_the_decoder_invariants(
        cut in any::<u8>(),
        lines in prop::collection::vec("[ -~\\n\\u{80}-\\u{10ffff}]{0,40}", 0..8),
    ) {
        let mut input = vec![cut];
        for data in lines {
            let request = mist_proto::Request::new("publish").tags(["t", &data]).data(&data);
            input.extend(request.to_line());
        }
        check::check(&input);
    }
}
