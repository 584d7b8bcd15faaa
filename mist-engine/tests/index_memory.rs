//! What subscriptions cost in memory, counted exactly: every allocation of
//! this test binary goes through a counting allocator, so the bytes the
//! engine holds after subscribing are the index's own.
//!
//! Issue 8 measured 120 MiB of index for 4 MiB of subscriptions (10,000 of
//! 40 tags each); the index must stay within a small factor of its input.
//! This file has one test, so that no other test allocates meanwhile.

use mist_engine::{Config, Engine};
use mist_proto::Request;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only
// the sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// 40 of 64 tags, different for every `n`.
fn tags(n: usize) -> Vec<String> {
    let mut state = n as u64 * 7_919 + 1;
    let mut all: Vec<usize> = (0..64).collect();
    for i in (1..all.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        all.swap(i, (state >> 33) as usize % (i + 1));
    }
    all.truncate(40);
    all.into_iter().map(|t| format!("tag-{t:02}")).collect()
}

#[test]
fn the_index_takes_about_what_its_subscriptions_took_to_send() {
    let config = Config {
        max_subscription_bytes: usize::MAX,
        ..Config::default()
    };
    let mut engine = Engine::new(config);
    let tenant = engine.handle_connect().expect("room for a connection");
    let input: usize = (0..10_000)
        .map(|n| Request::new("subscribe").tags(tags(n)).to_line().len())
        .sum();
    // Counted from before the requests exist: the engine frees them.
    let before = LIVE.load(Ordering::Relaxed);
    let requests: Vec<Request> = (0..10_000)
        .map(|n| Request::new("subscribe").tags(tags(n)))
        .collect();
    engine.handle_input(tenant, requests.into_iter().map(Ok));
    while engine.flow(tenant) == mist_engine::Flow::Yield {
        engine.handle_resume(tenant);
    }
    let held = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(engine.stats().subscriptions, 10_000);
    println!("{held} bytes held for {input} bytes of subscriptions");
    assert!(
        held as usize <= 2 * input,
        "the index holds {held} bytes for {input} bytes of subscriptions"
    );
    engine.handle_disconnect(tenant);
    let left = LIVE.load(Ordering::Relaxed) - before;
    assert!(
        left <= 64 * 1024,
        "{left} bytes still held once the subscriptions are gone"
    );
}
