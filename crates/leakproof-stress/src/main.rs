//! `leakproof-stress`: torture any command from outside and report what it leaves.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use leakproof_stress::Torture;

const USAGE: &str = "\
leakproof-stress: run a command, SIGTERM it and SIGKILL it at random points, and report
the processes, zombies and temp entries it leaves behind.

usage:
  leakproof-stress run [OPTIONS] -- CMD [ARGS...]

options:
  --runs N          completed runs (default 3); their median time is the window the
                    random signal points are drawn from
  --terms N         rounds ended by SIGTERM at a random point (default 3)
  --kills N         rounds ended by SIGKILL at a random point (default 3)
  --deadline SECS   time to exit after SIGTERM (default 10)
  --timeout SECS    time a completed run may take (default 600)
  --settle SECS     time for what the command started to go after it exits (default 2)
  --window SECS     draw signal points from 0..SECS (default: the runs' median time)
  --seed N          the random points' seed (default 24301; printed in the report)
  --reclaim-run     after each SIGKILL, run the command once more in the same TMPDIR
                    before judging its entries (for programs that reclaim a killed
                    run's leftovers when they start)
  --no-cgroup       find survivors by marker and parentage only, as on a host without
                    a writable cgroup v2 (default: a cgroup v2 per run where allowed)
  --out DIR         where report.json, junit.xml and summary.md go
                    (default leakproof-stress-report)

exit status: 0 no leak, 1 a leak (each named), 2 the torture could not run";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => match parse(&args[1..]) {
            Ok((torture, out)) => run(torture, out),
            Err(message) => {
                eprintln!("leakproof-stress: {message}\n\n{USAGE}");
                ExitCode::from(2)
            }
        },
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("--version" | "-V") => {
            println!("leakproof-stress {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("leakproof-stress: expected `run`, got {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn parse(args: &[String]) -> Result<(Torture, PathBuf), String> {
    let split = args
        .iter()
        .position(|a| a == "--")
        .ok_or("no command: put it after `--`")?;
    let (options, command) = (&args[..split], &args[split + 1..]);
    let (program, rest) = command.split_first().ok_or("no command after `--`")?;
    let mut torture = Torture::new(program, rest).seed(24301);
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
        let secs = |v: &String| {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{flag} takes seconds, got {v:?}"))
        };
        torture = match flag.as_str() {
            "--runs" => torture.runs(count(value()?)?),
            "--terms" => torture.terms(count(value()?)?),
            "--kills" => torture.kills(count(value()?)?),
            "--deadline" => torture.deadline(secs(value()?)?),
            "--timeout" => torture.timeout(secs(value()?)?),
            "--settle" => torture.settle(secs(value()?)?),
            "--window" => torture.window(secs(value()?)?),
            "--seed" => {
                let v = value()?;
                torture.seed(
                    v.parse()
                        .map_err(|_| format!("--seed takes a whole number, got {v:?}"))?,
                )
            }
            "--reclaim-run" => torture.reclaim_run(true),
            "--no-cgroup" => torture.cgroups(false),
            "--out" => {
                out = PathBuf::from(value()?);
                torture
            }
            other => return Err(format!("unknown option {other:?}")),
        };
    }
    Ok((torture, out))
}

fn run(torture: Torture, out: PathBuf) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("leakproof-stress: no runtime: {e}");
            return ExitCode::from(2);
        }
    };
    println!("leakproof-stress: {}", torture.command_line());
    let report = match runtime.block_on(torture.run()) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("leakproof-stress: {e}");
            return ExitCode::from(2);
        }
    };
    for note in &report.notes {
        println!("  {note}");
    }
    for case in &report.cases {
        println!(
            "{:<5} {:<10} {}",
            if case.passed() { "pass" } else { "FAIL" },
            case.name,
            case.figures_line()
        );
        if !case.passed() {
            for note in &case.notes {
                println!("        {note}");
            }
        }
    }
    let files = match report.write(&out) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("leakproof-stress: {e}");
            return ExitCode::from(2);
        }
    };
    let failures = report.failures();
    for failure in &failures {
        println!("LEAK  {failure}");
    }
    println!(
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
