//! Microbenchmarks of the engine's publish path: matching through the index and
//! copying the frame into every recipient's outbox, with the writer's drain included.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mist_engine::{Batch, Config, ConnId, Engine};
use mist_proto::Request;

/// An engine with `subscribers` connections on tag "hot" and `bystanders`
/// connections each on a tag of its own, plus one publisher.
fn setup(subscribers: usize, bystanders: usize) -> (Engine, ConnId, Vec<ConnId>) {
    let mut engine = Engine::new(Config::default());
    let mut hot = Vec::new();
    for _ in 0..subscribers {
        let c = engine.handle_connect().expect("room for a connection");
        engine.handle_message(c, Ok(Request::new("subscribe").tags(["hot"])));
        hot.push(c);
    }
    for i in 0..bystanders {
        let c = engine.handle_connect().expect("room for a connection");
        engine.handle_message(c, Ok(Request::new("subscribe").tags([format!("cold{i}")])));
    }
    let publisher = engine.handle_connect().expect("room for a connection");
    (engine, publisher, hot)
}

fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish");
    for (subscribers, bystanders) in [(1, 0), (100, 0), (100, 10_000)] {
        let (mut engine, publisher, hot) = setup(subscribers, bystanders);
        let request = Request::new("publish")
            .tags(["hot", "extra"])
            .data("x".repeat(128));
        let mut batch = Batch::new();
        group.throughput(Throughput::Elements(subscribers as u64));
        let name = format!("{subscribers} subscribers, {bystanders} others");
        group.bench_function(BenchmarkId::new("deliveries", name), |b| {
            b.iter(|| {
                engine.handle_message(publisher, Ok(request.clone()));
                while engine.poll_output().is_some() {}
                for &c in &hot {
                    engine.poll_transmit(c, &mut batch);
                    batch.clear();
                }
            })
        });
    }
    group.finish();
}

/// What a server does with a read full of publishes: decode the lines and
/// apply them, delivering each to one subscriber.
fn read_of_publishes(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    let (mut engine, publisher, hot) = setup(1, 0);
    let line = Request::new("publish")
        .tags(["hot"])
        .data("x".repeat(128))
        .to_line();
    let chunk = line.repeat(400);
    let mut decoder = mist_proto::LineDecoder::new(mist_proto::DEFAULT_MAX_LINE);
    let mut decoded = Vec::with_capacity(400);
    let mut batch = Batch::new();
    group.throughput(Throughput::Elements(400));
    group.bench_function("decode and publish 400 lines of 128 B", |b| {
        b.iter(|| {
            decoder.decode::<Request>(&chunk, &mut decoded);
            engine.handle_input(publisher, decoded.drain(..));
            while engine.poll_output().is_some() {}
            engine.poll_transmit(hot[0], &mut batch);
            batch.clear();
        })
    });
    group.finish();
}

criterion_group!(benches, publish, read_of_publishes);
criterion_main!(benches);
