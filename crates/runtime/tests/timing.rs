//! Side-by-side lifecycle timing of the two runtimes (run with `--ignored --nocapture`).

mod common;

use std::time::Instant;

use common::*;

async fn once(rt: Rt) -> f64 {
    let f = fixture(rt, "time", &["true"], |_, _| {});
    let t = Instant::now();
    let (_, c) = spawn(&f).await;
    c.start().await.unwrap();
    within(c.wait()).await.unwrap();
    t.elapsed().as_secs_f64() * 1000.0
}

#[tokio::test]
#[ignore = "timing report, not a check"]
async fn lifecycle_timing() {
    let (mut b, mut r) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        b.push(once(Rt::Builtin).await);
        r.push(once(Rt::Runc).await);
    }
    b.sort_by(f64::total_cmp);
    r.sort_by(f64::total_cmp);
    println!(
        "spawn+start+wait of `true`, median ms: builtin {:.1}, runc {:.1}",
        b[b.len() / 2],
        r[r.len() / 2]
    );
}
