//! Microbenchmarks of the codec's hot paths: decoding a read full of publishes,
//! and encoding one publish frame.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mist_proto::{encode, Data, LineDecoder, Request, DEFAULT_MAX_LINE};

fn publish_line(payload: usize) -> Vec<u8> {
    Request::new("publish")
        .tags(["bench"])
        .data("x".repeat(payload))
        .to_line()
}

fn decode(c: &mut Criterion) {
    let line = publish_line(128);
    let chunk: Vec<u8> = line
        .iter()
        .copied()
        .cycle()
        .take(line.len() * 400)
        .collect();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(400));
    group.bench_function("400 publishes of 128 B in one read", |b| {
        let mut decoder = LineDecoder::new(DEFAULT_MAX_LINE);
        let mut out = Vec::with_capacity(400);
        b.iter(|| {
            decoder.decode::<Request>(black_box(&chunk), &mut out);
            out.clear();
        })
    });
    group.finish();
}

fn encode_publish(c: &mut Criterion) {
    let tags = vec!["bench".to_string(), "other".to_string()];
    let data = Data::new(&"x".repeat(128));
    c.bench_function("encode publish of 128 B", |b| {
        b.iter(|| encode::publish(black_box(&tags), black_box(Some(&data))))
    });
}

criterion_group!(benches, decode, encode_publish);
criterion_main!(benches);
