//! The decoder's invariants on arbitrary bytes. Shared, by `#[path]`, between
//! the `decode` fuzz target and mist-proto's regression test, so that every
//! input the fuzzer ever kept is re-checked by the ordinary test suite.

use mist_proto::{encode, LineDecoder, Message, ProtoError, Request};

/// A small line limit, so that fuzzing reaches the over-long-line paths.
pub const MAX_LINE: usize = 4096;

/// The first byte chooses how the rest is cut into reads.
pub fn check(input: &[u8]) {
    let Some((&cut, stream)) = input.split_first() else {
        return;
    };
    let whole = decode(stream, stream.len().max(1));
    let pieces = decode(stream, usize::from(cut % 32) + 1);
    assert_eq!(
        whole, pieces,
        "the result must not depend on how reads split the stream"
    );
    let lines = stream.iter().filter(|&&b| b == b'\n').count();
    assert!(whole.len() <= lines + 1, "at most one item per line");
    for request in whole.iter().flatten() {
        round_trip(request);
    }
}

fn decode(stream: &[u8], chunk: usize) -> Vec<Result<Request, ProtoError>> {
    let mut decoder = LineDecoder::new(MAX_LINE);
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        decoder.decode(piece, &mut out);
        assert!(
            decoder.buffered() <= MAX_LINE,
            "never buffers past the limit"
        );
    }
    out
}

/// A decoded request re-encodes to one line that decodes to the same request,
/// and its publish frame, built from the raw data literal, is one valid line.
fn round_trip(request: &Request) {
    if let Some(frame) = request.frame() {
        // Taken by the fast path: serde alone must agree, and the line must
        // be exactly the frame the encoder writes.
        let line = &frame[..frame.len() - 1];
        let slow = mist_proto::decode_document::<Request>(line);
        assert_eq!(slow.as_ref(), Ok(request), "the fast path and serde differ");
        let tags = request.tags.clone().unwrap_or_default();
        assert_eq!(frame, &encode::publish(&tags, request.data.as_ref()));
    }
    let line = request.to_line();
    let mut decoder = LineDecoder::new(usize::MAX);
    let mut again: Vec<Result<Request, ProtoError>> = Vec::new();
    decoder.decode(&line, &mut again);
    assert_eq!(again, [Ok(request.clone())]);

    let tags = request.tags.clone().unwrap_or_default();
    let frame = encode::publish(&tags, request.data.as_ref());
    assert_eq!(frame.iter().filter(|&&b| b == b'\n').count(), 1);
    assert_eq!(frame.last(), Some(&b'\n'));
    let delivered: Message = serde_json::from_slice(&frame).expect("a publish frame is JSON");
    assert_eq!(delivered.tags, Some(tags));
    let data = request
        .data
        .as_ref()
        .map(|d| d.to_text())
        .unwrap_or_default();
    assert_eq!(delivered.data, Some(data));
}
