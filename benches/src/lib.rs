//! Benchmarks live in `benches/`; each runs one of our crates and its named peer on the
//! same input in the same run. `cargo xtask bench` runs them and rewrites
//! `BENCHMARKS.md`. Nothing is published from this package.

/// Whether the bench's command line selects `group`: a free argument is criterion's
/// filter, a regex matched against each benchmark's id (`group/function`), here against
/// `group/ours`. An argument that is not a valid regex selects everything.
pub fn selected(group: &str) -> bool {
    // Criterion's options that take a value as the next argument: not filters.
    const VALUED: &[&str] = &[
        "-c",
        "--color",
        "-s",
        "--save-baseline",
        "-b",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--profile-time",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
    ];
    let id = format!("{group}/ours");
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if VALUED.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            filters.push(arg);
        }
    }
    filters.is_empty()
        || filters
            .iter()
            .any(|f| regex::Regex::new(f).map_or(true, |re| re.is_match(&id)))
}

/// Times `ours` and `peer` in alternating batches (31 rounds of `batch` calls each, the
/// order swapped every round) and writes the per-round ratios' median and range to
/// `target/criterion/<group>/<peer>/paired.json`, which `cargo xtask bench` prefers to
/// the ratio of the two separately measured medians: the machine's slow drifts fall on
/// both sides of each round alike.
///
/// Each side's batch is a loop of its own ([`batch_time`], generic and never inlined),
/// with the side's call inlined into it as into a caller's loop. (The loop once called
/// each side through a `dyn FnMut`, and whether the compiler saw through that depended
/// on the side's size: on 2026-12-03 `rate-gate`'s `try_acquire`, made 40 instructions
/// shorter and inlined, became a call through a pointer per grant in that loop, and
/// measured 0.89x governor's `check` in criterion's loop but 1.18x there, against
/// 1.07 to 1.14x for the longer code before it.)
pub fn paired<A, B>(
    group: &str,
    peer: &str,
    batch: u32,
    mut ours: impl FnMut() -> A,
    mut theirs: impl FnMut() -> B,
) {
    const ROUNDS: usize = 31;
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|round| {
            if round % 2 == 0 {
                let a = batch_time(batch, &mut ours);
                a / batch_time(batch, &mut theirs)
            } else {
                let b = batch_time(batch, &mut theirs);
                batch_time(batch, &mut ours) / b
            }
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let (median, min, max) = (ratios[ROUNDS / 2], ratios[0], ratios[ROUNDS - 1]);
    println!("{group} ours/{peer} paired: median {median:.3}x, range {min:.3}-{max:.3}x");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target
        .join("criterion")
        .join(group.replace('/', "_"))
        .join(peer);
    let json = format!(
        "{{\"rounds\":{ROUNDS},\"batch\":{batch},\"median\":{median},\"min\":{min},\"max\":{max}}}\n"
    );
    if let Err(error) =
        std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join("paired.json"), json))
    {
        eprintln!("{group}: paired.json not written: {error}");
    }
}

/// Seconds for `batch` calls of `f`, each result kept from being optimised away: one
/// loop per side of [`paired`], the side's call inlined into it.
#[inline(never)]
fn batch_time<T>(batch: u32, f: &mut impl FnMut() -> T) -> f64 {
    let start = std::time::Instant::now();
    for _ in 0..batch {
        std::hint::black_box(f());
    }
    start.elapsed().as_secs_f64()
}
