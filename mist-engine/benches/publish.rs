//! Microbenchmarks of the engine's publish path: matching through the index and
//! queueing one shared frame per recipient, with the writer's drain included.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mist_engine::{Config, ConnId, Engine};
use mist_proto::Request;
use std::collections::VecDeque;

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
        let mut batch = VecDeque::new();
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

criterion_group!(benches, publish);
criterion_main!(benches);
