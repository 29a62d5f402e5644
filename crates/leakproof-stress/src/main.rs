//! `leakproof-stress`: torture any command from outside and report what it leaves.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use leakproof_stress::{Report, Soak, Torture};

const USAGE: &str = "\
leakproof-stress: judge a program from outside by what it leaves behind.

usage:
  leakproof-stress run [OPTIONS] -- CMD [ARGS...]
      run CMD to completion, SIGTERM it and SIGKILL it at random points; after each
      round, name the processes, zombies and TMPDIR entries it left (then remove them)
  leakproof-stress soak --load 'SHELL COMMAND' [OPTIONS] -- SERVICE [ARGS...]
      start SERVICE, run the load command against it round after round, judge the
      trend of its resident memory and open fds, then SIGTERM it and judge its stop

run options:
  --runs N          completed runs (default 3); their median time is the window the
                    random signal points are drawn from
  --terms N         rounds ended by SIGTERM at a random point (default 3)
  --kills N         rounds ended by SIGKILL at a random point (default 3)
  --timeout SECS    time a completed run may take (default 600)
  --window SECS     draw signal points from 0..SECS (default: the runs' median time)
  --seed N          the random points' seed (default 24301; printed in the report)
  --reclaim-run     after each SIGKILL, run the command once more in the same TMPDIR
                    before judging its entries (for programs that reclaim a killed
                    run's leftovers when they start)

soak options:
  --load CMD        the load, run with `sh -c` (LEAKPROOF_STRESS_SERVICE_PID is set)
  --rounds N        load runs judged (default 20, at least 3; 1 with --interval)
  --interval SECS   also sample every SECS while the load runs, and judge the trend
                    over those samples (for one long load run)
  --warmup N        load runs first, not judged (default 3)
  --ready SECS      time from the service's start to the first load run (default 1)
  --load-timeout SECS  time one load run may take (default 60)
  --rss-tolerance KIB  resident memory growth per round that is a leak (default 64)
  --fd-tolerance N  descriptor growth per round that is a leak (default 0.5)

both:
  --deadline SECS   time to exit after SIGTERM (default 10)
  --settle SECS     time for what the command started to go after it exits (default 2)
  --no-cgroup       find survivors by marker and parentage only, as on a host without
                    a writable cgroup v2 (default: a cgroup v2 per run where allowed)
  --out DIR         where report.json, junit.xml and summary.md go
                    (default leakproof-stress-report)

exit status: 0 no leak, 1 a leak (each named), 2 the torture could not run";

/// A line of the verdict on standard output. A reader that went away (`| head`) is not
/// an error here: the verdict stays in the exit status and the report files
/// (`println!` would panic instead).
macro_rules! say {
    ($($line:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($line)*);
    }};
}

/// A line on standard error: a usage error, or why the torture could not run.
macro_rules! complain {
    ($($line:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($line)*);
    }};
}

/// What the command line asked for.
enum Job {
    Run(Torture),
    Soak(Soak),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(mode @ ("run" | "soak")) => match parse(mode, &args[1..]) {
            Ok((Job::Run(torture), out)) => {
                say!("leakproof-stress: {}", torture.command_line());
                finish(async move { torture.run().await }, out)
            }
            Ok((Job::Soak(soak), out)) => {
                say!("leakproof-stress soak: {}", soak.command_line());
                finish(async move { soak.run().await }, out)
            }
            Err(message) => {
                complain!("leakproof-stress: {message}\n\n{USAGE}");
                ExitCode::from(2)
            }
        },
        Some("--help" | "-h" | "help") => {
            say!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("--version" | "-V") => {
            say!("leakproof-stress {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        other => {
            complain!("leakproof-stress: expected `run` or `soak`, got {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn parse(mode: &str, args: &[String]) -> Result<(Job, PathBuf), String> {
    let split = args
        .iter()
        .position(|a| a == "--")
        .ok_or("no command: put it after `--`")?;
    let (options, command) = (&args[..split], &args[split + 1..]);
    let (program, rest) = command.split_first().ok_or("no command after `--`")?;
    let mut torture = Torture::new(program, rest).seed(24301);
    let mut soak = Soak::new(program, rest, "");
    let mut load = None;
    let (mut rounds, mut interval) = (20usize, false);
    let mut out = PathBuf::from("leakproof-stress-report");
    let mut options = options.iter();
    while let Some(flag) = options.next() {
        let mut value = || {
            options
                .next()
                .ok_or_else(|| format!("{flag} takes a value"))
        };
        let count = |v: &String| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag} takes a whole number, got {v:?}"))
        };
        let number = |v: &String| {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
                .ok_or_else(|| format!("{flag} takes a number of 0 or more, got {v:?}"))
        };
        let secs = |v: &String| number(v).map(Duration::from_secs_f64);
        let both = matches!(
            flag.as_str(),
            "--deadline" | "--settle" | "--no-cgroup" | "--out"
        );
        let known = both
            || match mode {
                "run" => matches!(
                    flag.as_str(),
                    "--runs"
                        | "--terms"
                        | "--kills"
                        | "--timeout"
                        | "--window"
                        | "--seed"
                        | "--reclaim-run"
                ),
                _ => matches!(
                    flag.as_str(),
                    "--load"
                        | "--rounds"
                        | "--warmup"
                        | "--ready"
                        | "--load-timeout"
                        | "--rss-tolerance"
                        | "--fd-tolerance"
                        | "--interval"
                ),
            };
        if !known {
            return Err(format!("unknown option {flag:?} for `{mode}`"));
        }
        match flag.as_str() {
            "--deadline" => {
                let d = secs(value()?)?;
                torture = torture.deadline(d);
                soak = soak.deadline(d);
            }
            "--settle" => {
                let d = secs(value()?)?;
                torture = torture.settle(d);
                soak = soak.settle(d);
            }
            "--no-cgroup" => {
                torture = torture.cgroups(false);
                soak = soak.cgroups(false);
            }
            "--out" => out = PathBuf::from(value()?),
            "--runs" => torture = torture.runs(count(value()?)?),
            "--terms" => torture = torture.terms(count(value()?)?),
            "--kills" => torture = torture.kills(count(value()?)?),
            "--timeout" => torture = torture.timeout(secs(value()?)?),
            "--window" => torture = torture.window(secs(value()?)?),
            "--seed" => {
                let v = value()?;
                torture = torture.seed(
                    v.parse()
                        .map_err(|_| format!("--seed takes a whole number, got {v:?}"))?,
                );
            }
            "--reclaim-run" => torture = torture.reclaim_run(true),
            "--load" => load = Some(value()?.clone()),
            "--rounds" => {
                let n = count(value()?)?;
                if n == 0 {
                    return Err("--rounds takes at least 1".to_string());
                }
                rounds = n;
                soak = soak.rounds(n);
            }
            "--interval" => {
                let d = secs(value()?)?;
                if d.is_zero() {
                    return Err("--interval takes more than 0 seconds".to_string());
                }
                interval = true;
                soak = soak.interval(d);
            }
            "--warmup" => soak = soak.warmup(count(value()?)?),
            "--ready" => soak = soak.ready(secs(value()?)?),
            "--load-timeout" => soak = soak.load_timeout(secs(value()?)?),
            "--rss-tolerance" => soak = soak.rss_tolerance(number(value()?)? * 1024.0),
            "--fd-tolerance" => soak = soak.fd_tolerance(number(value()?)?),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if mode == "run" {
        return Ok((Job::Run(torture), out));
    }
    let load = load.ok_or("soak needs --load 'SHELL COMMAND'")?;
    if rounds < 3 && !interval {
        return Err(format!(
            "--rounds takes at least 3 (a trend) without --interval, got {rounds}"
        ));
    }
    Ok((Job::Soak(soak.load(load)), out))
}

/// Runs the job on a current-thread runtime, prints the verdict, writes the reports.
fn finish(job: impl Future<Output = leakproof_stress::Result<Report>>, out: PathBuf) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            complain!("leakproof-stress: no runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match runtime.block_on(job) {
        Ok(report) => report,
        Err(e) => {
            complain!("leakproof-stress: {e}");
            return ExitCode::from(2);
        }
    };
    for note in &report.notes {
        say!("  {note}");
    }
    for case in &report.cases {
        say!(
            "{:<5} {:<11} {}",
            if case.passed() { "pass" } else { "FAIL" },
            case.name,
            case.figures_line()
        );
        if !case.passed() {
            for note in &case.notes {
                say!("        {note}");
            }
        }
    }
    let files = match report.write(&out) {
        Ok(files) => files,
        Err(e) => {
            complain!("leakproof-stress: {e}");
            return ExitCode::from(2);
        }
    };
    let failures = report.failures();
    for failure in &failures {
        say!("LEAK  {failure}");
    }
    say!(
        "result: {} checks, {} failed ({:.1} s); report: {}, {}",
        report.checks(),
        failures.len(),
        report.took.as_secs_f64(),
        files.json.display(),
        files.junit.display()
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
